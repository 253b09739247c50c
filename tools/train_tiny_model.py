"""Train the bundled tiny text-to-image model (``jupyter_sd/models/tiny``) from scratch on a CPU.

Everything is generated here, nothing is downloaded: 64x64 pictures of one flat-colour shape on a flat
background, captioned ``"a {colour} {shape} on a {colour} background"``. The result is an ordinary diffusers
``StableDiffusionPipeline`` folder (VAE, UNet, CLIP text encoder + tokenizer, scheduler) of a few MB.

Stages (each one prints what it measured):

1. tokenizer -- a CLIP BPE vocabulary trained on the caption words (whole words are single tokens; any other
   lower-case word still tokenizes, letter by letter);
2. VAE -- a small ``AutoencoderKL`` (64x64x3 <-> 16x16x4), trained until flat colours survive a round trip;
   its latents are then standardised per channel *inside* the weights (quant convs), so the latents the
   UNet sees have mean 0 and std 1 and ``scaling_factor`` is 1;
3. UNet + text encoder -- trained together on cached latents (epsilon prediction, SD's scaled-linear
   schedule, min-SNR weighting, offset noise, caption dropout for classifier-free guidance, EMA). Every
   ``--eval-every`` steps the EMA weights draw the held-out validation prompts with the real sampler
   (DPM++ 2M Karras, 20 steps) and the colour accuracy is measured; the best weights are kept;
4. export -- the pipeline folder, ``latent_rgb.json`` (least-squares latent -> RGB preview factors),
   ``loss_curve.png``, ``samples.png``, ``train_metrics.json`` and the model card ``README.md``.

Usage::

    python tools/train_tiny_model.py                       # full run (about an hour on 2 cores)
    python tools/train_tiny_model.py --quick --out /tmp/t  # a few minutes, to check the plumbing

The palette, the caption grammar, the held-out split and :func:`classify_image` are imported by
``tests/test_tiny_model.py``, so the test measures exactly what training measured.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# --------------------------------------------------------------------------------------------------------------
# The task: palette, shapes, captions, held-out split, colour classification (no torch needed)
# --------------------------------------------------------------------------------------------------------------

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 70, 220),
    "yellow": (245, 220, 30),
    "orange": (245, 135, 20),
    "purple": (135, 45, 175),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
COLOURS = list(PALETTE)
SHAPES = ["circle", "square", "triangle"]
SIZE = 64  # native image size; latents are SIZE // 4


def caption(fg: str, shape: str, bg: str) -> str:
    """Return the training caption for one picture."""
    return f"a {fg} {shape} on a {bg} background"


def all_combos() -> list[tuple[str, str, str]]:
    """Every (shape colour, shape, background colour) with different colours: 8 * 7 * 3 = 168."""
    return [(fg, s, bg) for fg in COLOURS for bg in COLOURS if bg != fg for s in SHAPES]


def heldout_combos() -> list[tuple[str, str, str]]:
    """The 24 combos never shown in training (validation and test prompts).

    Chosen so that every (colour, colour) pair, every (colour, shape) and every (shape, background) still
    appears in training with other partners: the model must compose, not recall.
    """
    out = []
    for fg, s, bg in all_combos():
        if (COLOURS.index(fg) + 2 * COLOURS.index(bg) + SHAPES.index(s)) % 7 == 0:
            out.append((fg, s, bg))
    return out[:24]


def train_combos() -> list[tuple[str, str, str]]:
    held = set(heldout_combos())
    return [c for c in all_combos() if c not in held]


def render(fg_rgb, shape: str, bg_rgb, rng: random.Random, size: int = SIZE) -> Image.Image:
    """Draw one anti-aliased flat shape (random small jitter of position and size) on a flat background."""
    ss = 4  # supersampling
    big = size * ss
    img = Image.new("RGB", (big, big), tuple(int(v) for v in bg_rgb))
    draw = ImageDraw.Draw(img)
    k = size / 64.0
    cx = (size / 2 + rng.uniform(-2, 2) * k) * ss
    cy = (size / 2 + rng.uniform(-2, 2) * k) * ss
    fill = tuple(int(v) for v in fg_rgb)
    if shape == "circle":
        r = rng.uniform(15, 20) * k * ss
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        h = rng.uniform(13, 18) * k * ss
        draw.rectangle([cx - h, cy - h, cx + h, cy + h], fill=fill)
    elif shape == "triangle":
        r = rng.uniform(10, 12.5) * k * ss  # inradius; the incentre sits at (cx, cy)
        pts = [(cx, cy - 2 * r), (cx - math.sqrt(3) * r, cy + r), (cx + math.sqrt(3) * r, cy + r)]
        draw.polygon(pts, fill=fill)
    else:
        raise ValueError(f"shape: unknown {shape!r} (allowed: {', '.join(SHAPES)})")
    return img.resize((size, size), Image.BOX)


def _nearest(rgb: np.ndarray) -> str:
    names = list(PALETTE)
    pal = np.array([PALETTE[n] for n in names], dtype=np.float32)
    return names[int(np.argmin(((pal - rgb[None]) ** 2).sum(1)))]


def classify_image(image) -> tuple[str, str]:
    """Return (centre colour, border colour) of a picture as palette names.

    The centre is the middle eighth of the picture (always inside the shape in the training data), the border
    the outer sixteenth on each side (always background); each region's colour is its per-channel median,
    snapped to the nearest palette colour.
    """
    a = np.asarray(image.convert("RGB"), dtype=np.float32)
    h, w = a.shape[:2]
    centre = a[h * 7 // 16 : h * 9 // 16, w * 7 // 16 : w * 9 // 16].reshape(-1, 3)
    b = max(1, h // 16)
    mask = np.ones((h, w), dtype=bool)
    mask[b:-b, b:-b] = False
    border = a[mask].reshape(-1, 3)
    return _nearest(np.median(centre, 0)), _nearest(np.median(border, 0))


def colour_accuracy(images, combos) -> tuple[float, list[bool]]:
    """Fraction of pictures whose centre has the shape's colour and whose border the background's."""
    ok = []
    for img, (fg, _s, bg) in zip(images, combos):
        c, b = classify_image(img)
        ok.append(c == fg and b == bg)
    return sum(ok) / max(1, len(ok)), ok


# --------------------------------------------------------------------------------------------------------------
# Tokenizer: a tiny CLIP BPE vocabulary
# --------------------------------------------------------------------------------------------------------------

WORDS = ["a", "on", "background"] + COLOURS + SHAPES
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def build_tokenizer(folder: Path, max_length: int):
    """Train BPE merges on the caption words, write vocab.json/merges.txt and load a CLIPTokenizer."""
    from transformers import CLIPTokenizer

    words = [list(w[:-1]) + [w[-1] + "</w>"] for w in WORDS]
    merges: list[tuple[str, str]] = []
    while any(len(w) > 1 for w in words):  # classic BPE: merge the most frequent pair, ties by first seen
        counts: dict[tuple[str, str], int] = {}
        for w in words:
            for p in zip(w, w[1:]):
                counts[p] = counts.get(p, 0) + 1
        best = max(counts, key=lambda p: counts[p])  # dicts keep insertion order: deterministic ties
        merges.append(best)
        new_words = []
        for w in words:
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new_words.append(out)
        words = new_words
    vocab_list = list(LETTERS) + [c + "</w>" for c in LETTERS]
    for a, b in merges:
        if a + b not in vocab_list:
            vocab_list.append(a + b)
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(vocab_list)}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, indent=1))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    tok = CLIPTokenizer(
        str(folder / "vocab.json"),
        str(folder / "merges.txt"),
        model_max_length=max_length,
        pad_token="<|endoftext|>",
    )
    for w in WORDS:  # every caption word must be exactly one token
        ids = tok(w, add_special_tokens=False).input_ids
        assert len(ids) == 1 and tok.convert_ids_to_tokens(ids)[0] == w + "</w>", (w, ids)
    return tok


# --------------------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------------------


def make_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=SIZE,
        scaling_factor=1.0,
        mid_block_add_attention=False,
    )


def make_text_encoder(vocab_size: int, max_length: int, bos: int, eos: int, width: int, layers: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=width,
        intermediate_size=width * 4,
        projection_dim=width,
        num_hidden_layers=layers,
        num_attention_heads=4,
        max_position_embeddings=max_length,
        hidden_act="quick_gelu",
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    return CLIPTextModel(cfg)


def make_unet(channels: tuple[int, ...], layers: int, cross_dim: int):
    from diffusers import UNet2DConditionModel

    n = len(channels)
    return UNet2DConditionModel(
        sample_size=SIZE // 4,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D",) * n,
        up_block_types=("CrossAttnUpBlock2D",) * n,
        block_out_channels=channels,
        layers_per_block=layers,
        cross_attention_dim=cross_dim,
        attention_head_dim=4,  # diffusers' legacy name: the number of heads
        norm_num_groups=8,
        # the pooled caption also steers every ResNet block (FiLM through the time embedding), as in
        # Kandinsky/IF: the UNet sees "which colours" globally and "where" through cross-attention
        addition_embed_type="text",
        addition_embed_type_num_heads=4,
        resnet_time_scale_shift="scale_shift",
    )


def make_scheduler():
    from diffusers import PNDMScheduler

    return PNDMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        skip_prk_steps=True,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def prefix_text_encoder_keys(path: Path) -> None:
    """Write the text encoder's weights under ``text_model.``, as SD checkpoints on the hub have them.

    transformers 5 saves CLIPTextModel without that level; transformers 4.x (Colab's) then finds none of its weights
    and quietly starts from random ones. Both versions load the prefixed names.
    """
    from safetensors.torch import load_file, save_file

    weights = load_file(str(path))
    weights = {key if key.startswith("text_model.") else f"text_model.{key}": value for key, value in weights.items()}
    save_file(weights, str(path), metadata={"format": "pt"})


def make_pipeline(vae, text_encoder, tokenizer, unet):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=make_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


# --------------------------------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------------------------------


def to_tensor(imgs):
    import torch

    a = np.stack([np.asarray(i, dtype=np.float32) for i in imgs]) / 127.5 - 1.0
    return torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()


def vae_batch(rng: random.Random, n: int):
    """Pictures for the VAE: half palette colours, half arbitrary colours, all three shapes."""
    imgs = []
    for _ in range(n):
        if rng.random() < 0.5:
            fg, bg = rng.sample(COLOURS, 2)
            fg, bg = PALETTE[fg], PALETTE[bg]
        else:
            fg = tuple(rng.randrange(256) for _ in range(3))
            bg = tuple(rng.randrange(256) for _ in range(3))
        imgs.append(render(fg, rng.choice(SHAPES), bg, rng))
    return to_tensor(imgs)


def vae_round_trip(vae, seed: int = 123) -> dict:
    """Encode/decode every ordered palette pair with every shape; report classification accuracy and error."""
    import torch

    rng = random.Random(seed)
    combos = all_combos()
    imgs = [render(PALETTE[fg], s, PALETTE[bg], rng) for fg, s, bg in combos]
    x = to_tensor(imgs)
    with torch.no_grad():
        rec = torch.cat([vae.decode(vae.encode(x[i : i + 56]).latent_dist.mode()).sample for i in range(0, len(x), 56)])
    rec_imgs = tensor_to_pil(rec)
    acc, _ = colour_accuracy(rec_imgs, combos)
    err = (rec.clamp(-1, 1) - x).abs().mean().item() * 127.5
    # worst flat-region colour error, in 0..255 units
    a = (rec.clamp(-1, 1) + 1) * 127.5
    b = (x + 1) * 127.5
    centre = (a[:, :, 28:36, 28:36].mean((2, 3)) - b[:, :, 28:36, 28:36].mean((2, 3))).abs().max().item()
    border = (a[:, :, :4, :].mean((2, 3)) - b[:, :, :4, :].mean((2, 3))).abs().max().item()
    return {"accuracy": acc, "mean_abs_error": err, "worst_centre_error": centre, "worst_border_error": border}


def tensor_to_pil(x):
    a = ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(i) for i in a]


def train_vae(args, log):
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    vae = make_vae()
    opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
    # constant learning rate in chunks until flat colours survive a round trip (or --vae-max-steps), then a
    # short low-learning-rate polish
    losses = []
    step = 0
    rt = {}
    bar = tqdm(total=args.vae_max_steps + args.vae_polish, desc="vae", mininterval=5)

    def run(n, lr_fn):
        nonlocal step
        vae.train()
        for _ in range(n):
            for g in opt.param_groups:
                g["lr"] = lr_fn(step)
            x = vae_batch(rng, args.vae_batch)
            if rng.random() < 0.8:  # 32x32 crops: 3x cheaper, and the VAE is convolutional
                i, j = rng.randrange(0, 33, 4), rng.randrange(0, 33, 4)
                x = x[:, :, i : i + 32, j : j + 32]
            post = vae.encode(x).latent_dist
            z = post.sample()
            rec = vae.decode(z).sample
            mse = F.mse_loss(rec, x)
            l1 = (rec - x).abs().mean()
            low = F.mse_loss(F.avg_pool2d(rec, 8), F.avg_pool2d(x, 8))  # flat colours must be exact
            kl = post.kl().mean() / (z[0].numel())
            loss = mse + 0.5 * l1 + 4.0 * low + args.vae_kl * kl
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
            step += 1
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", mse=f"{mse.item():.4f}")
        vae.eval()

    while step < args.vae_max_steps:
        run(min(args.vae_steps, args.vae_max_steps - step), lambda k: args.vae_lr * min(1.0, (k + 1) / 100))
        rt = vae_round_trip(vae)
        log(f"VAE round trip after {step} steps (loss {np.mean(losses[-100:]):.4f}): {rt}")
        if rt["accuracy"] == 1.0 and max(rt["worst_centre_error"], rt["worst_border_error"]) < 12:
            break
    run(args.vae_polish, lambda k: args.vae_lr * 0.2)
    rt = vae_round_trip(vae)
    rt["steps"] = step
    log(f"VAE round trip after {step} steps incl. polish (loss {np.mean(losses[-100:]):.4f}): {rt}")
    return vae, losses, rt


def standardise_vae(vae, latents):
    """Fold a per-channel affine map into quant_conv/post_quant_conv so the latents have mean 0, std 1."""
    import torch

    mu = latents.mean((0, 2, 3))
    sd = latents.std((0, 2, 3))
    with torch.no_grad():
        qc, pqc = vae.quant_conv, vae.post_quant_conv
        c = mu.numel()
        # mean channels: (m - mu) / sd ; logvar channels: logvar - 2 log sd
        qc.weight[:c] /= sd[:, None, None, None]
        qc.bias[:c] = (qc.bias[:c] - mu) / sd
        qc.bias[c:] -= 2 * torch.log(sd)
        # post_quant_conv must undo it: W (z * sd + mu) + b
        b_new = pqc.bias + (pqc.weight[:, :, 0, 0] @ mu)
        pqc.weight.mul_(sd[None, :, None, None])
        pqc.bias.copy_(b_new)
    return mu, sd


def encode_dataset(vae, combos, per_combo: int, seed: int):
    import torch

    rng = random.Random(seed)
    imgs, caps = [], []
    for fg, s, bg in combos:
        for _ in range(per_combo):
            imgs.append(render(PALETTE[fg], s, PALETTE[bg], rng))
            caps.append(caption(fg, s, bg))
    lat = []
    with torch.no_grad():
        for i in range(0, len(imgs), 64):
            lat.append(vae.encode(to_tensor(imgs[i : i + 64])).latent_dist.mode())
    return torch.cat(lat), caps, imgs


def fit_latent_rgb(latents, imgs) -> dict:
    """Least squares from scaled latents (C x 16 x 16) to 4x4-average-pooled pixels in [-1, 1]."""
    import torch
    import torch.nn.functional as F

    x = to_tensor(imgs)
    y = F.avg_pool2d(x, 4).permute(0, 2, 3, 1).reshape(-1, 3).double()
    z = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1]).double()
    a = torch.cat([z, torch.ones(len(z), 1, dtype=torch.float64)], 1)
    sol = torch.linalg.lstsq(a, y).solution
    pred = a @ sol
    rmse = ((pred - y) ** 2).mean().sqrt().item()
    return {
        "factors": [[round(v, 6) for v in row] for row in sol[:-1].tolist()],
        "bias": [round(v, 6) for v in sol[-1].tolist()],
        "_rmse": rmse,
    }


def generate(pipe, prompts, seeds, guidance: float, steps: int = 20, size: int = SIZE):
    """Draw with our default sampler (DPM++ 2M Karras), one seed per prompt."""
    import torch
    from diffusers import DPMSolverMultistepScheduler

    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, use_karras_sigmas=True)
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    with torch.no_grad():
        out = pipe(
            prompts,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=gens,
            height=size,
            width=size,
        ).images
    return out


def evaluate(pipe, combos, guidance: float, seed0: int = 1000, detail: bool = False):
    """Colour accuracy of the combos drawn at 20 steps; with ``detail`` also centre-only and border-only."""
    prompts = [caption(*c) for c in combos]
    imgs = generate(pipe, prompts, [seed0 + i for i in range(len(prompts))], guidance)
    acc = colour_accuracy(imgs, combos)[0]
    if not detail:
        return acc
    cls = [classify_image(i) for i in imgs]
    fg = np.mean([c[0] == k[0] for c, k in zip(cls, combos)])
    bg = np.mean([c[1] == k[2] for c, k in zip(cls, combos)])
    return acc, float(fg), float(bg)


def train_unet(args, vae, tok, log, outdir: Path):
    import torch
    from diffusers import DDPMScheduler
    from tqdm import tqdm

    torch.manual_seed(args.seed + 1)
    combos = train_combos()
    t0 = time.time()
    latents, caps, imgs = encode_dataset(vae, combos, args.per_combo, args.seed + 2)
    with torch.no_grad():
        before = vae.decode(latents[:8]).sample
    mu, sd = standardise_vae(vae, latents)
    latents = (latents - mu[None, :, None, None]) / sd[None, :, None, None]
    log(
        f"encoded {len(latents)} training pictures in {time.time() - t0:.0f}s; "
        f"latent mean {mu.tolist()} std {sd.tolist()}"
    )
    with torch.no_grad():  # check the folding: the standardised latents must decode to the same pictures
        after = vae.decode(latents[:8]).sample
        again = vae.encode(to_tensor(imgs[:8])).latent_dist.mode()
    log(
        f"standardisation check: decode change {(after - before).abs().max().item():.2e}, "
        f"encode change {(again - latents[:8]).abs().max().item():.2e}"
    )

    ids_all = tok(
        caps, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    empty_ids = tok([""], padding="max_length", max_length=tok.model_max_length, return_tensors="pt").input_ids

    text_encoder = make_text_encoder(
        len(tok), tok.model_max_length, tok.bos_token_id, tok.eos_token_id, args.text_width, args.text_layers
    )
    unet = make_unet(tuple(args.unet_channels), args.unet_layers, args.text_width)
    n_unet = sum(p.numel() for p in unet.parameters())
    n_te = sum(p.numel() for p in text_encoder.parameters())
    n_vae = sum(p.numel() for p in vae.parameters())
    log(f"parameters: unet {n_unet / 1e6:.2f}M, text encoder {n_te / 1e6:.2f}M, vae {n_vae / 1e6:.2f}M")

    sched = DDPMScheduler.from_config(make_scheduler().config)
    ac = sched.alphas_cumprod
    snr = ac / (1 - ac)
    weight = torch.clamp(snr, max=args.min_snr) / snr  # min-SNR-gamma for epsilon prediction

    opt = torch.optim.AdamW(
        [
            {"params": unet.parameters(), "lr": args.lr, "base": args.lr},
            {"params": text_encoder.parameters(), "lr": args.text_lr, "base": args.text_lr},
        ],
        weight_decay=1e-2,
    )
    ema_unet, ema_te = copy.deepcopy(unet).eval(), copy.deepcopy(text_encoder).eval()
    for p in list(ema_unet.parameters()) + list(ema_te.parameters()):
        p.requires_grad_(False)
    pairs = list(
        zip(
            list(unet.parameters()) + list(text_encoder.parameters()),
            list(ema_unet.parameters()) + list(ema_te.parameters()),
        )
    )

    held = heldout_combos()
    val_pipe = make_pipeline(vae, ema_te, tok, ema_unet)
    history = {"step": [], "loss": [], "eval_step": [], "eval_acc": [], "eval_time": []}
    best = (-1.0, -1)
    steps = args.unet_steps
    bar = tqdm(range(1, steps + 1), desc="unet", mininterval=10)
    run_loss = []
    t_start = time.time()
    gen = torch.Generator().manual_seed(args.seed + 3)
    deadline = None
    if args.deadline:
        hh, mm = map(int, args.deadline.split(":"))
        now = time.gmtime()
        deadline = time.time() + ((hh * 60 + mm) - (now.tm_hour * 60 + now.tm_min)) * 60 - now.tm_sec
    for step in bar:
        if args.stop_after is not None and step > args.stop_after:
            log(f"--stop-after {args.stop_after} reached")
            history["stopped_early_at"] = step
            break
        if deadline is not None and time.time() > deadline and best[1] > 0:
            log(f"deadline {args.deadline} UTC reached at step {step}: stopping early")
            history["stopped_early_at"] = step
            break
        warm = min(1.0, step / args.warmup)
        decay = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps))
        for g in opt.param_groups:
            g["lr"] = g["base"] * warm * decay
        idx = torch.randint(0, len(latents), (args.batch,), generator=gen)
        x0 = latents[idx]
        ids = ids_all[idx].clone()
        drop = torch.rand(args.batch, generator=gen) < args.cond_drop
        ids[drop] = empty_ids[0]
        noise = torch.randn(x0.shape, generator=gen)
        noise = noise + args.offset_noise * torch.randn(x0.shape[0], x0.shape[1], 1, 1, generator=gen)
        t = torch.randint(0, 1000, (args.batch,), generator=gen)
        xt = sched.add_noise(x0, noise, t)
        enc = text_encoder(ids)[0]
        pred = unet(xt, t, encoder_hidden_states=enc).sample
        loss = ((pred - noise) ** 2).mean((1, 2, 3))
        loss = (loss * weight[t]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(unet.parameters()) + list(text_encoder.parameters()), 1.0)
        opt.step()
        d = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for p, e in pairs:
                e.lerp_(p, 1 - d)
        run_loss.append(loss.item())
        if step % 50 == 0:
            history["step"].append(step)
            history["loss"].append(float(np.mean(run_loss[-50:])))
            bar.set_postfix(loss=f"{history['loss'][-1]:.4f}", best=f"{best[0]:.2f}@{best[1]}")
        if step % args.eval_every == 0 or step == steps:
            te = time.time()
            acc, fg_acc, bg_acc = evaluate(val_pipe, held, args.guidance, detail=True)
            history["eval_step"].append(step)
            history["eval_acc"].append(acc)
            history["eval_time"].append(time.time() - t_start)
            log(
                f"step {step}: loss {np.mean(run_loss[-200:]):.4f}, held-out colour accuracy {acc:.3f} "
                f"(shape colour {fg_acc:.2f}, background {bg_acc:.2f}) "
                f"(guidance {args.guidance}, eval {time.time() - te:.1f}s, "
                f"elapsed {(time.time() - t_start) / 60:.1f} min)"
            )
            if acc >= best[0]:
                best = (acc, step)
                torch.save(
                    {"unet": ema_unet.state_dict(), "te": ema_te.state_dict(), "step": step, "acc": acc},
                    outdir / "best.pt",
                )
            json.dump(history, open(outdir / "history.json", "w"))
    best_state = torch.load(outdir / "best.pt")
    ema_unet.load_state_dict(best_state["unet"])
    ema_te.load_state_dict(best_state["te"])
    log(f"best held-out accuracy {best[0]:.3f} at step {best[1]}; training took {(time.time() - t_start) / 60:.1f} min")
    history["train_minutes"] = (time.time() - t_start) / 60
    history["best_step"] = best[1]
    return ema_unet, ema_te, history, latents, imgs


def plot_loss(history, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(history["step"], history["loss"], label="training loss (min-SNR weighted, 50-step mean)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax2 = ax.twinx()
    ax2.plot(history["eval_step"], history["eval_acc"], "o-", color="C1", label="held-out colour accuracy")
    ax2.set_ylim(0, 1.05)
    ax2.set_ylabel("accuracy (guidance {:g})".format(history.get("guidance", 7)))
    fig.legend(loc="upper center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def sample_grid(pipe, guidance: float, path: Path):
    """Held-out prompts, three seeds each, labelled rows."""
    held = heldout_combos()[:8]
    rows = []
    for i, c in enumerate(held):
        imgs = generate(pipe, [caption(*c)] * 3, [7 + i * 10 + k for k in range(3)], guidance)
        rows.append(imgs)
    label_w = 260
    grid = Image.new("RGB", (label_w + 3 * SIZE, len(rows) * SIZE), "white")
    draw = ImageDraw.Draw(grid)
    for r, (c, imgs) in enumerate(zip(held, rows)):
        draw.text((4, r * SIZE + SIZE // 2 - 6), caption(*c), fill="black")
        for k, im in enumerate(imgs):
            grid.paste(im, (label_w + k * SIZE, r * SIZE))
    grid.save(path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="jupyter_sd/models/tiny", help="pipeline folder to write")
    p.add_argument("--work", default="/tmp/tiny_work", help="scratch folder (checkpoints, history)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--vae-steps", type=int, default=1000, help="VAE steps between round-trip checks")
    p.add_argument("--vae-max-steps", type=int, default=4000)
    p.add_argument("--vae-polish", type=int, default=300, help="final VAE steps at a fifth of the lr")
    p.add_argument("--vae-batch", type=int, default=16)
    p.add_argument("--vae-lr", type=float, default=1e-3)
    p.add_argument("--vae-kl", type=float, default=1e-6)
    p.add_argument("--per-combo", type=int, default=48, help="cached training pictures per caption")
    p.add_argument("--unet-steps", type=int, default=8000)
    p.add_argument("--unet-channels", type=int, nargs="+", default=[32, 64])
    p.add_argument("--unet-layers", type=int, default=1)
    p.add_argument("--text-width", type=int, default=64)
    p.add_argument("--text-layers", type=int, default=2)
    p.add_argument("--max-length", type=int, default=32, help="tokenizer model_max_length")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--text-lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--cond-drop", type=float, default=0.1, help="caption dropout (for classifier-free guidance)")
    p.add_argument("--offset-noise", type=float, default=0.1)
    p.add_argument("--min-snr", type=float, default=5.0)
    p.add_argument("--guidance", type=float, default=7.0, help="guidance used for validation")
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--quick", action="store_true", help="tiny run to check the plumbing")
    p.add_argument(
        "--stop-after",
        type=int,
        default=None,
        help="stop UNet training after this many steps (the learning-rate schedule still spans "
        "--unet-steps): reproduces a run that a --deadline cut short",
    )
    p.add_argument(
        "--deadline",
        default=None,
        help="UTC wall-clock time HH:MM after which UNet training stops early and exports the best "
        "checkpoint (a safety net for shared machines; the run is then not reproducible)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.vae_steps, args.vae_max_steps, args.vae_polish = 20, 40, 10
        args.unet_steps, args.eval_every, args.per_combo = 60, 30, 2

    import torch

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    out, work = Path(args.out), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    logf = open(work / "train.log", "a")
    t_all = time.time()

    def log(msg):
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    log(f"args: {vars(args)}")
    log(f"train combos {len(train_combos())}, held-out combos {len(heldout_combos())}")
    # 1. tokenizer
    tok = build_tokenizer(work / "tokenizer", args.max_length)
    log(
        f"tokenizer: {len(tok)} tokens; {caption('red', 'circle', 'blue')!r} -> "
        f"{tok.convert_ids_to_tokens(tok(caption('red', 'circle', 'blue')).input_ids)}"
    )
    # 2. VAE
    t0 = time.time()
    vae, vae_losses, vae_rt = train_vae(args, log)
    vae_minutes = (time.time() - t0) / 60
    # 3. UNet + text encoder
    unet, te, history, latents, imgs = train_unet(args, vae, tok, log, work)
    history["guidance"] = args.guidance
    pipe = make_pipeline(vae, te, tok, unet)
    # 4. pick guidance on the validation set, export
    by_guidance = {}
    for g in (3.0, 5.0, 7.0, 9.0):
        by_guidance[g] = evaluate(pipe, heldout_combos(), g)
        log(f"held-out colour accuracy at guidance {g}: {by_guidance[g]:.3f}")
    train_check = train_combos()[::6][:24]
    train_acc = evaluate(pipe, train_check, args.guidance, seed0=5000)
    log(f"colour accuracy on 24 training captions (new seeds): {train_acc:.3f}")

    out.mkdir(parents=True, exist_ok=True)
    pipe.scheduler = make_scheduler()  # generate() swapped in DPM++: ship the SD-style training schedule
    pipe.save_pretrained(out, safe_serialization=True)
    for name in ("vocab.json", "merges.txt"):  # the slow CLIPTokenizer (and older transformers) read these
        (out / "tokenizer" / name).write_bytes((work / "tokenizer" / name).read_bytes())
    prefix_text_encoder_keys(out / "text_encoder" / "model.safetensors")
    rgb = fit_latent_rgb(latents, imgs)
    log(f"latent_rgb fit RMSE {rgb.pop('_rmse'):.4f} (in [-1, 1] units)")
    (out / "latent_rgb.json").write_text(json.dumps(rgb) + "\n")
    plot_loss(history, out / "loss_curve.png")
    best_g = max(by_guidance, key=lambda g: (by_guidance[g], g == 7.0))
    sample_grid(pipe, best_g, out / "samples.png")
    metrics = {
        "seed": args.seed,
        "vae_steps": vae_rt["steps"],
        "vae_minutes": vae_minutes,
        "vae_round_trip": vae_rt,
        "vae_final_loss": float(np.mean(vae_losses[-100:])),
        "unet_steps": args.unet_steps,
        "best_step": history["best_step"],
        "unet_minutes": history["train_minutes"],
        "final_loss": history["loss"][-1] if history["loss"] else None,
        "heldout_accuracy_by_guidance": by_guidance,
        "train_caption_accuracy": train_acc,
        "eval_history": list(zip(history["eval_step"], history["eval_acc"])),
        "total_minutes": (time.time() - t_all) / 60,
        "args": vars(args),
    }
    (work / "train_metrics.json").write_text(json.dumps(metrics, indent=1))
    log(f"done in {(time.time() - t_all) / 60:.1f} min: {json.dumps(metrics)}")


if __name__ == "__main__":
    main()
