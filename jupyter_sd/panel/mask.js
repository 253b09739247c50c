// The mask painter's front end (anywidget ESM): paint white-means-repaint strokes over the init picture.
//
// The kernel holds the mask (the `mask` trait, a greyscale PNG at the picture's size) and its undo history;
// this view draws strokes on a canvas as big as the picture and sends the whole mask back after each
// stroke. Undo, clear and invert are asked of the kernel (`model.send`), which answers with a new `mask`.
// Only anywidget's model API is used, so the same file runs in JupyterLab, Notebook 7, VS Code and Colab.

const TINT = [255, 40, 90]; // the colour a painted area shows in over the picture

function button(label, css, title) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.title = title;
  b.className = `jupyter-sd-mask-button ${css}`;
  return b;
}

function bytesOf(value) {
  // A binary trait arrives as a DataView (ipywidgets 8) or an ArrayBuffer (7); empty means "nothing".
  if (!value) return null;
  const buffer = value.buffer ? value.buffer.slice(value.byteOffset, value.byteOffset + value.byteLength) : value;
  return buffer.byteLength ? buffer : null;
}

async function decode(buffer) {
  const url = URL.createObjectURL(new Blob([buffer], { type: "image/png" }));
  try {
    const img = new Image();
    img.src = url;
    await img.decode();
    return img;
  } finally {
    URL.revokeObjectURL(url);
  }
}

function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "jupyter-sd-mask";

  const bar = document.createElement("div");
  bar.className = "jupyter-sd-mask-toolbar";
  const size = document.createElement("input");
  size.type = "range";
  size.min = "1";
  size.className = "jupyter-sd-mask-brush";
  size.title = "Brush size in picture pixels";
  const sizeLabel = document.createElement("span");
  sizeLabel.className = "jupyter-sd-mask-brush-label";
  const paint = button("brush", "jupyter-sd-mask-paint", "Paint the area to repaint (white in the mask)");
  const erase = button("eraser", "jupyter-sd-mask-erase", "Erase painted areas (keep them as they are)");
  const undo = button("undo", "jupyter-sd-mask-undo", "Undo the last stroke or change");
  const clear = button("clear", "jupyter-sd-mask-clear", "Clear the whole mask");
  const invert = button("invert", "jupyter-sd-mask-invert", "Swap painted and unpainted areas");
  bar.append(paint, erase, size, sizeLabel, undo, clear, invert);

  const stage = document.createElement("div");
  stage.className = "jupyter-sd-mask-stage";
  const picture = document.createElement("img");
  picture.className = "jupyter-sd-mask-picture";
  picture.draggable = false;
  const canvas = document.createElement("canvas");
  canvas.className = "jupyter-sd-mask-canvas";
  const empty = document.createElement("div");
  empty.className = "jupyter-sd-mask-empty";
  empty.textContent = "Choose a picture first (upload, use last picture, or send one from the gallery).";
  stage.append(picture, canvas);
  root.append(bar, stage, empty);
  el.append(root);

  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  let pictureUrl = null;
  let sent = null; // the last mask value this view set, so its own change is not drawn again
  let stroke = null;
  let edits = 0; // strokes begun here; a mask that arrives while one is drawn must not overwrite it

  function showTools() {
    const erasing = model.get("erase");
    paint.classList.toggle("jupyter-sd-mask-active", !erasing);
    erase.classList.toggle("jupyter-sd-mask-active", erasing);
    size.value = String(model.get("brush"));
    sizeLabel.textContent = `${model.get("brush")} px`;
  }

  function showPicture() {
    const width = model.get("width");
    const height = model.get("height");
    const buffer = bytesOf(model.get("image"));
    const has = Boolean(buffer && width && height);
    stage.style.display = has ? "" : "none";
    bar.style.display = has ? "" : "none";
    empty.style.display = has ? "none" : "";
    if (pictureUrl) URL.revokeObjectURL(pictureUrl);
    pictureUrl = has ? URL.createObjectURL(new Blob([buffer], { type: "image/png" })) : null;
    if (!has) return;
    picture.src = pictureUrl;
    const shown = Math.min(model.get("display_width"), Math.max(width, 192) * 4);
    stage.style.width = `${shown}px`;
    stage.style.height = `${Math.round((shown * height) / width)}px`;
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    size.max = String(Math.max(2, Math.round(Math.max(width, height) / 2)));
  }

  async function showMask() {
    const value = model.get("mask");
    if (value === sent) return;
    const buffer = bytesOf(value);
    ctx.globalCompositeOperation = "source-over";
    if (!buffer) {
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      return;
    }
    const before = edits;
    const img = await decode(buffer);
    if (before !== edits || stroke) return; // a newer stroke here supersedes it (e.g. the echo of our own)
    const scratch = document.createElement("canvas");
    scratch.width = canvas.width;
    scratch.height = canvas.height;
    const sctx = scratch.getContext("2d", { willReadFrequently: true });
    sctx.drawImage(img, 0, 0, canvas.width, canvas.height);
    const grey = sctx.getImageData(0, 0, canvas.width, canvas.height);
    const tinted = ctx.createImageData(canvas.width, canvas.height);
    for (let i = 0; i < grey.data.length; i += 4) {
      tinted.data[i] = TINT[0];
      tinted.data[i + 1] = TINT[1];
      tinted.data[i + 2] = TINT[2];
      tinted.data[i + 3] = grey.data[i]; // white = painted
    }
    ctx.putImageData(tinted, 0, 0);
  }

  async function sendMask() {
    // The mask as the kernel keeps it: greyscale, white where painted (the canvas's alpha), black elsewhere.
    const drawn = ctx.getImageData(0, 0, canvas.width, canvas.height);
    const out = document.createElement("canvas");
    out.width = canvas.width;
    out.height = canvas.height;
    const octx = out.getContext("2d");
    const grey = octx.createImageData(canvas.width, canvas.height);
    for (let i = 0; i < drawn.data.length; i += 4) {
      const a = drawn.data[i + 3];
      grey.data[i] = grey.data[i + 1] = grey.data[i + 2] = a;
      grey.data[i + 3] = 255;
    }
    octx.putImageData(grey, 0, 0);
    const blob = await new Promise((resolve) => out.toBlob(resolve, "image/png"));
    sent = new DataView(await blob.arrayBuffer());
    model.set("mask", sent);
    model.save_changes();
  }

  function at(event) {
    const rect = canvas.getBoundingClientRect();
    return [
      ((event.clientX - rect.left) * canvas.width) / rect.width,
      ((event.clientY - rect.top) * canvas.height) / rect.height,
    ];
  }

  function dab(from, to) {
    ctx.globalCompositeOperation = model.get("erase") ? "destination-out" : "source-over";
    ctx.strokeStyle = ctx.fillStyle = `rgb(${TINT.join(",")})`;
    ctx.lineWidth = model.get("brush");
    ctx.lineCap = ctx.lineJoin = "round";
    ctx.beginPath();
    if (from[0] === to[0] && from[1] === to[1]) {
      ctx.arc(to[0], to[1], model.get("brush") / 2, 0, 2 * Math.PI);
      ctx.fill();
    } else {
      ctx.moveTo(from[0], from[1]);
      ctx.lineTo(to[0], to[1]);
      ctx.stroke();
    }
  }

  canvas.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    edits += 1;
    stroke = at(event);
    dab(stroke, stroke);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!stroke) return;
    const point = at(event);
    dab(stroke, point);
    stroke = point;
  });
  const end = (event) => {
    if (!stroke) return;
    stroke = null;
    if (canvas.hasPointerCapture(event.pointerId)) canvas.releasePointerCapture(event.pointerId);
    sendMask();
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);

  size.addEventListener("input", () => {
    model.set("brush", Number(size.value));
    model.save_changes();
    showTools();
  });
  paint.addEventListener("click", () => {
    model.set("erase", false);
    model.save_changes();
    showTools();
  });
  erase.addEventListener("click", () => {
    model.set("erase", true);
    model.save_changes();
    showTools();
  });
  for (const [b, action] of [
    [undo, "undo"],
    [clear, "clear"],
    [invert, "invert"],
  ]) {
    b.addEventListener("click", () => model.send({ action }));
  }

  const onPicture = () => {
    showPicture();
    sent = null;
    showMask();
  };
  model.on("change:image", onPicture);
  model.on("change:width", onPicture);
  model.on("change:height", onPicture);
  model.on("change:display_width", showPicture);
  model.on("change:mask", showMask);
  model.on("change:brush", showTools);
  model.on("change:erase", showTools);
  showTools();
  onPicture();
  return () => {
    if (pictureUrl) URL.revokeObjectURL(pictureUrl);
    model.off("change:image", onPicture);
    model.off("change:width", onPicture);
    model.off("change:height", onPicture);
    model.off("change:display_width", showPicture);
    model.off("change:mask", showMask);
    model.off("change:brush", showTools);
    model.off("change:erase", showTools);
  };
}

export default { render };
