"""Picture and mask handling for img2img and inpainting, as A1111 does it (PIL and numpy only, no torch).

Resizing an init to the size painted (A1111's three resize modes), turning a mask into the repaint mask (binary,
inverted, Gaussian-blurred like ``cv2.GaussianBlur``), the "Only masked" crop region, the "fill" masked content and
the paste-back of the original pixels outside the mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter, ImageOps

RESIZE_MODE_INDEX = {"Just resize": 0, "Crop and resize": 1, "Resize and fill": 2}


@dataclass
class Pictures:
    """The pictures a request starts from, loaded by the front end (paths, URLs, ``_`` and ``{name}`` resolved).

    ``init_record`` / ``mask_record`` say where each came from (``{"path": ..., "sha256": ...}``) for the PNG's
    JSON chunk; None for a picture that lives only in memory (the store saves a copy then).
    """

    init: Image.Image | None = None
    mask: Image.Image | None = None
    init_record: dict | None = None
    mask_record: dict | None = None
    control: tuple = ()
    """Each ControlNet unit's picture, in unit order (None: the unit has none; img2img's init stands in)."""
    control_records: tuple = ()
    control_masks: tuple = ()
    """Each unit's effective region mask (IP-Adapter units: where the adapter acts), in unit order; None: none."""
    control_mask_records: tuple = ()


def resize_image(mode: str | int, image: Image.Image, width: int, height: int) -> Image.Image:
    """Fit `image` to ``width×height`` the A1111 way (``modules/images.py: resize_image``, Lanczos).

    ``Just resize`` stretches; ``Crop and resize`` scales to cover and crops the middle; ``Resize and fill`` scales
    to fit and fills the borders by stretching the picture's edge rows or columns.
    """
    mode = RESIZE_MODE_INDEX.get(mode, mode) if isinstance(mode, str) else mode
    if image.size == (width, height):
        return image.copy()

    def resize(picture: Image.Image, w: int, h: int) -> Image.Image:
        return picture.resize((w, h), resample=Image.LANCZOS)

    if mode == 0:
        return resize(image, width, height)
    ratio, src_ratio = width / height, image.width / image.height
    canvas = Image.new(image.mode, (width, height))
    if mode == 1:
        src_w = width if ratio > src_ratio else image.width * height // image.height
        src_h = height if ratio <= src_ratio else image.height * width // image.width
        resized = resize(image, src_w, src_h)
        canvas.paste(resized, box=(width // 2 - src_w // 2, height // 2 - src_h // 2))
        return canvas
    src_w = width if ratio < src_ratio else image.width * height // image.height
    src_h = height if ratio >= src_ratio else image.height * width // image.width
    resized = resize(image, src_w, src_h)
    canvas.paste(resized, box=(width // 2 - src_w // 2, height // 2 - src_h // 2))
    if ratio < src_ratio:
        fill = height // 2 - src_h // 2
        if fill > 0:
            canvas.paste(resized.resize((width, fill), box=(0, 0, width, 0)), box=(0, 0))
            canvas.paste(
                resized.resize((width, fill), box=(0, resized.height, width, resized.height)), box=(0, fill + src_h)
            )
    elif ratio > src_ratio:
        fill = width // 2 - src_w // 2
        if fill > 0:
            canvas.paste(resized.resize((fill, height), box=(0, 0, 0, height)), box=(0, 0))
            canvas.paste(
                resized.resize((fill, height), box=(resized.width, 0, resized.width, height)), box=(fill + src_w, 0)
            )
    return canvas


def flatten(image: Image.Image, background: str = "#ffffff") -> Image.Image:
    """An RGB picture: transparency composited onto white, as A1111 flattens an init."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, background)
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return image.convert("RGB")


def alpha_mask(image: Image.Image) -> Image.Image | None:
    """The repaint mask of an init's transparency (transparent = repaint), or None when it is opaque."""
    if image.mode not in ("RGBA", "LA", "PA") and not (image.mode == "P" and "transparency" in image.info):
        return None
    alpha = image.convert("RGBA").getchannel("A")
    if alpha.getextrema() == (255, 255):
        return None
    return ImageOps.invert(alpha)


def binary_mask(mask: Image.Image) -> Image.Image:
    """A1111's ``create_binary_mask``: an RGBA mask's alpha thresholded at 128, any other mask as grey."""
    if mask.mode == "RGBA" and mask.getextrema()[-1] != (255, 255):
        return mask.getchannel("A").point(lambda x: 255 if x > 128 else 0)
    return mask.convert("L")


def gaussian_blur(mask: Image.Image, sigma: float) -> Image.Image:
    """Blur like A1111's ``cv2.GaussianBlur(mask, (k, 1), σ)`` then ``(1, k)``, k = 2·int(2.5σ + 0.5) + 1.

    Separable float kernel, edges reflected without repeating the edge pixel (OpenCV's default border).
    """
    if sigma <= 0:
        return mask.copy()
    radius = int(2.5 * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-(x**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    array = np.asarray(mask, dtype=np.float64)
    for axis in (1, 0):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        padded = np.pad(array, pad, mode="reflect") if array.shape[axis] > radius else np.pad(array, pad, "edge")
        array = np.apply_along_axis(lambda line: np.convolve(line, kernel, mode="valid"), axis, padded)
        array = np.clip(np.round(array), 0, 255)
    return Image.fromarray(array.astype(np.uint8), mode="L")


def repaint_mask(mask: Image.Image, invert: bool) -> Image.Image:
    """The sharp repaint mask (L, white = repaint): binary as A1111 reads it, inverted when asked."""
    sharp = binary_mask(mask)
    return ImageOps.invert(sharp) if invert else sharp


def crop_region(mask: Image.Image, padding: int) -> tuple[int, int, int, int] | None:
    """A1111's ``get_crop_region_v2``: the mask's bounding box grown by `padding`, or None for an empty mask."""
    box = mask.getbbox()
    if box is None:
        return None
    if not padding:
        return box
    x1, y1, x2, y2 = box
    return max(x1 - padding, 0), max(y1 - padding, 0), min(x2 + padding, mask.width), min(y2 + padding, mask.height)


def expand_crop_region(
    region: tuple[int, int, int, int], width: int, height: int, image_width: int, image_height: int
) -> tuple[int, int, int, int]:
    """A1111's ``expand_crop_region``: grow the region to the painted size's aspect ratio, inside the picture."""
    x1, y1, x2, y2 = region
    if (x2 - x1) / (y2 - y1) > width / height:
        diff = int((x2 - x1) / (width / height) - (y2 - y1))
        y1, y2 = y1 - diff // 2, y2 + diff - diff // 2
        if y2 >= image_height:
            y1, y2 = y1 - (y2 - image_height), image_height
        if y1 < 0:
            y1, y2 = 0, y2 - y1
        y2 = min(y2, image_height)
    else:
        diff = int((y2 - y1) * (width / height) - (x2 - x1))
        x1, x2 = x1 - diff // 2, x2 + diff - diff // 2
        if x2 >= image_width:
            x1, x2 = x1 - (x2 - image_width), image_width
        if x1 < 0:
            x1, x2 = 0, x2 - x1
        x2 = min(x2, image_width)
    return x1, y1, x2, y2


def fill_masked(image: Image.Image, mask: Image.Image) -> Image.Image:
    """A1111's "fill" masked content: the masked area painted with ever-finer blurs of what surrounds it."""
    result = Image.new("RGBA", image.size)
    masked = Image.new("RGBa", image.size)
    masked.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask.convert("L")))
    for radius, repeats in [(256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)]:
        blurred = masked.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(repeats):
            result.alpha_composite(blurred)
    return result.convert("RGB")


def whole_overlay(blurred: Image.Image) -> Image.Image:
    """The paste-back mask of a whole-picture inpaint: the blurred mask doubled (A1111's ``mask_for_overlay``)."""
    array = np.clip(np.asarray(blurred, dtype=np.float32) * 2, 0, 255).astype(np.uint8)
    return Image.fromarray(array, mode="L")


def paste_back(
    painted: Image.Image,
    original: Image.Image,
    overlay: Image.Image,
    region: tuple[int, int, int, int] | None = None,
) -> Image.Image:
    """Keep `original`'s pixels outside `overlay` (white = painted), as A1111's ``apply_overlay``.

    With a `region` ("Only masked"), the painted crop is first fitted back into that box of the original.
    """
    if region is not None:
        x1, y1, x2, y2 = region
        canvas = original.convert("RGB").copy()
        canvas.paste(resize_image(1, painted.convert("RGB"), x2 - x1, y2 - y1), (x1, y1))
        painted = canvas
    base = original.convert("RGBA").copy()
    base.putalpha(ImageOps.invert(overlay.convert("L")))
    result = painted.convert("RGBA")
    result.alpha_composite(base)
    return result.convert("RGB")
