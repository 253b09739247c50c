"""Tiled SD upscale, as the Ultimate SD upscale extension does it: enlarge, then repaint tile by tile.

The picture (the init, or each one painted first) is enlarged to ``ceil(side × scale / 64) × 64`` with the chosen
upscaler, then every tile of ``tile_width`` × ``tile_height`` is repainted in turn (row by row, or a checkerboard's
two passes with ``--tile-redraw Chess``) as an "only masked" inpaint (`modes`: the tile plus `tile_padding` of
context, painted at ``ceil((tile + padding) / 64) × 64``, pasted back through the mask blurred by
`tile_mask_blur`), each on the picture the tiles before it left. Only one tile is ever on the device, so a 4096²
result needs the memory of one 576² picture. The seams fix then repaints across the tile borders: ``Band pass`` (a
band of `seams_fix_width` over each border, faded by a gradient) or ``Half tile offset pass`` (tiles shifted by half
a tile over each border, faded by a gradient), at `seams_fix_denoise`.

Every tile uses the picture's seed, as the extension's tiles do (A1111 repaints each with the same seed).
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from typing import Any

from PIL import Image, ImageDraw

from ..recipe.fields import MAX_SEED
from ..recipe.request import PaintRequest
from ..recipe.result import PaintResult
from .pictures import Pictures
from .progress import Progress

OBJECT = "<object>"
"""The init and mask text of the tiles' requests: the pictures are handed to the engine as objects."""


def target_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The extension's size for "Scale from image size": each side × scale, rounded up to a multiple of 64."""
    return math.ceil(width * scale / 64) * 64, math.ceil(height * scale / 64) * 64


def tile_boxes(
    width: int, height: int, tile_width: int, tile_height: int, order: str = "Linear"
) -> list[tuple[int, int, int, int]]:
    """The tiles in the order they are repainted; the last row and column may reach past the edge.

    ``Linear`` goes row by row; ``Chess`` takes the checkerboard's squares with an even ``row + column`` first, row by
    row, then the others (the extension's two passes); ``None`` repaints no tile.
    """
    rows, cols = math.ceil(height / tile_height), math.ceil(width / tile_width)
    cells = [(x, y) for y in range(rows) for x in range(cols)]
    if order == "Chess":
        cells = [cell for cell in cells if sum(cell) % 2 == 0] + [cell for cell in cells if sum(cell) % 2 == 1]
    elif order == "None":
        cells = []
    return [(x * tile_width, y * tile_height, (x + 1) * tile_width, (y + 1) * tile_height) for x, y in cells]


def paint_size(tile_width: int, tile_height: int, padding: int) -> tuple[int, int]:
    """The size each tile is painted at: tile plus padding, rounded up to a multiple of 64 (the extension's)."""
    return math.ceil((tile_width + padding) / 64) * 64, math.ceil((tile_height + padding) / 64) * 64


def _fade(width: int, height: int, across: str) -> Image.Image:
    """A mask white in the middle fading to black at two edges (``across`` ``"rows"``: top and bottom)."""
    gradient = Image.linear_gradient("L")  # 256×256, black at the top, white at the bottom
    if across == "rows":
        half = (width, height // 2)
        first, second = gradient.resize(half, Image.BICUBIC), gradient.rotate(180).resize(half, Image.BICUBIC)
        offset = (0, height // 2)
    else:
        half = (width // 2, height)
        first = gradient.rotate(90).resize(half, Image.BICUBIC)
        second = gradient.rotate(270).resize(half, Image.BICUBIC)
        offset = (width // 2, 0)
    mask = Image.new("L", (width, height), "black")
    mask.paste(first, (0, 0))
    mask.paste(second, offset)
    return mask


def seam_masks(request: PaintRequest, width: int, height: int) -> list[tuple[Image.Image, tuple[int, int]]]:
    """The seams fix's masks over a ``width`` × ``height`` picture, each with the size its area is painted at."""
    tw, th = request.tile_width, request.tile_height
    rows, cols = math.ceil(height / th), math.ceil(width / tw)
    masks: list[tuple[Image.Image, tuple[int, int]]] = []
    if request.seams_fix == "Band pass":
        band, pad = request.seams_fix_width, request.seams_fix_padding
        for x in range(1, cols):  # a vertical band over each border between columns, then horizontal ones
            mask = Image.new("L", (width, height), "black")
            mask.paste(_fade(band, height, "cols"), (x * tw - band // 2, 0))
            masks.append((mask, (_round8(band + 2 * pad), _round8(height))))
        for y in range(1, rows):
            mask = Image.new("L", (width, height), "black")
            mask.paste(_fade(width, band, "rows"), (0, y * th - band // 2))
            masks.append((mask, (_round8(width), _round8(band + 2 * pad))))
    elif request.seams_fix == "Half tile offset pass":
        size = paint_size(tw, th, request.seams_fix_padding)
        for y in range(rows - 1):  # tiles shifted half a tile down, over the borders between rows
            for x in range(cols):
                mask = Image.new("L", (width, height), "black")
                mask.paste(_fade(tw, th, "rows"), (x * tw, y * th + th // 2))
                masks.append((mask, size))
        for y in range(rows):
            for x in range(cols - 1):
                mask = Image.new("L", (width, height), "black")
                mask.paste(_fade(tw, th, "cols"), (x * tw + tw // 2, y * th))
                masks.append((mask, size))
    return masks


def _round8(side: int) -> int:
    return max(8, math.ceil(side / 8) * 8)


class _Tiles(Progress):
    """The events of the tiles' paintings as one job: notices and steps pass on, each tile a phase of its own."""

    def __init__(self, outer: Progress, count: int) -> None:
        self.outer, self.count, self.index, self.steps = outer, count, 0, 0

    def notice(self, text: str) -> None:  # noqa: D102
        self.outer.notice(text)

    def phase(self, label: str, index: int, count: int, steps: int) -> None:  # noqa: D102
        self.steps += steps
        self.outer.phase(f"tile {self.index + 1}/{self.count}", self.index, self.count, steps)

    def step(self, step: int, total: int, previews: list[Image.Image] | None) -> None:  # noqa: D102
        self.outer.step(step, total, None)


class _FirstPass(Progress):
    """The first painting's events for the view, but not its pictures: only the upscaled ones are saved."""

    def __init__(self, outer: Progress) -> None:
        self.outer = outer

    def notice(self, text: str) -> None:  # noqa: D102
        self.outer.notice(text)

    def start(self, request: PaintRequest, batch: int, batches: int) -> None:  # noqa: D102
        self.outer.start(request, batch, batches)

    def phase(self, label: str, index: int, count: int, steps: int) -> None:  # noqa: D102
        self.outer.phase(label, index, count, steps)

    def step(self, step: int, total: int, previews: list[Image.Image] | None) -> None:  # noqa: D102
        self.outer.step(step, total, previews)


def run(
    engine: Any,
    request: PaintRequest,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    pictures: Pictures | None = None,
) -> PaintResult:
    """Paint `request` (or take its init), then SD-upscale each picture; the result holds the upscaled ones.

    Raises
    ------
    ValueError
        One line, before any tile is painted: an upscaler that is not there, a request the engine refuses.
    """
    progress = progress or Progress()
    stop = stop or threading.Event()
    started = time.perf_counter()
    sources, base = _sources(engine, request, progress, stop, pictures)
    result = PaintResult(request=base, model_name=engine.last_result.model_name if engine.last_result else "")
    for image, seed in sources:
        units = _unit_pictures(pictures)  # ControlNet units' pictures (and region masks), cropped per tile
        picture, last, steps = _upscale_one(engine, request, image, seed, progress, stop, units)
        result.steps_total += steps
        result.images.append(picture)
        result.seeds.append(seed)
        result.model_name, result.params = last.model_name, {**last.params, "Size": f"{picture.width}x{picture.height}"}
        if last.stopped_by:
            result.stopped_by, result.interrupted_at = last.stopped_by, result.steps_total
            break
    result.complete = len(result.images) - (1 if result.stopped_by else 0)
    result.elapsed = time.perf_counter() - started
    if result.images:
        progress.batch(result.images, result.seeds, result)
    engine.last_result = result
    progress.finish(result)
    return result


def _unit_pictures(pictures: Pictures | None) -> dict[str, tuple]:
    """The units' pictures and IP-Adapter region masks of `pictures`, for each tile's (or first pass's) Pictures."""
    if pictures is None:
        return {}
    return {"control": pictures.control, "control_masks": pictures.control_masks}


def _sources(
    engine: Any, request: PaintRequest, progress: Progress, stop: threading.Event, pictures: Pictures | None
) -> tuple[list[tuple[Image.Image, int]], PaintRequest]:
    """The pictures to upscale with their seeds, and the recipe the result records."""
    from .pictures import flatten

    if pictures is not None and pictures.init is not None:
        seed = request.seed if request.seed >= 0 else secrets.randbelow(MAX_SEED)
        return [(flatten(pictures.init), seed)], request.replace(seed=seed)
    control = Pictures(**_unit_pictures(pictures)) if pictures is not None else None  # the units' own pictures
    first = engine.generate(request.replace(sd_upscale=0.0), _FirstPass(progress), stop, control)
    base = first.request.replace(sd_upscale=request.sd_upscale)
    if first.stopped_by:
        return [], base
    return list(zip(first.images, first.seeds)), base


def _enlarge(image: Image.Image, request: PaintRequest, width: int, height: int, notice: Any) -> Image.Image:
    """The picture at the target size, by the extension's upscaler (``None``: Lanczos straight to the size)."""
    from .extras import enlarge, load_upscaler

    name = request.sd_upscaler
    if name == "None":
        return image.resize((width, height), Image.LANCZOS)
    model = name if name in ("Lanczos", "Nearest") else load_upscaler(name, "sd_upscaler", request.allow_pickle, notice)
    return enlarge(image, model, request.sd_upscale, width, height)


def _upscale_one(
    engine: Any,
    request: PaintRequest,
    image: Image.Image,
    seed: int,
    progress: Progress,
    stop: threading.Event,
    units: tuple = (),
) -> tuple[Image.Image, PaintResult, int]:
    """One picture enlarged, its tiles repainted, then its seams; the last tile's result (model, stop), the steps."""
    width, height = target_size(image.width, image.height, request.sd_upscale)
    picture = _enlarge(image, request, width, height, progress.notice)
    boxes = tile_boxes(width, height, request.tile_width, request.tile_height, request.tile_redraw)
    seams = seam_masks(request, width, height)
    tiles = _Tiles(progress, len(boxes) + len(seams))
    size = paint_size(request.tile_width, request.tile_height, request.tile_padding)
    last = PaintResult(request=request)
    for box in boxes:
        mask = Image.new("L", (width, height), "black")
        ImageDraw.Draw(mask).rectangle(box, fill="white")
        picture, last = _repaint(engine, request, picture, mask, size, seed, tiles, stop, units)
        if last.stopped_by:
            return picture, last, tiles.steps
    blur = 0 if request.seams_fix == "Band pass" else request.seams_fix_mask_blur  # the extension's band is sharp
    for mask, seam_size in seams:
        changes = {"strength": request.seams_fix_denoise, "tile_mask_blur": blur}
        changes["tile_padding"] = request.seams_fix_padding
        picture, last = _repaint(engine, request.replace(**changes), picture, mask, seam_size, seed, tiles, stop, units)
        if last.stopped_by:
            break
    return picture, last, tiles.steps


def _repaint(
    engine: Any,
    request: PaintRequest,
    picture: Image.Image,
    mask: Image.Image,
    size: tuple[int, int],
    seed: int,
    tiles: _Tiles,
    stop: threading.Event,
    units: tuple = (),
) -> tuple[Image.Image, PaintResult]:
    """One area of the picture repainted as an "only masked" inpaint at `size`; the picture with it pasted back.

    ControlNet units go with it as with any "only masked" inpaint: each unit's picture (the picture itself for a unit
    without one) cut to the tile's region, as sd-webui-controlnet does with Ultimate SD upscale's tiles.
    """
    tile = request.replace(
        sd_upscale=0.0,
        init=OBJECT,
        mask=OBJECT,
        inpaint_area="masked",
        padding=request.tile_padding,
        mask_blur=request.tile_mask_blur,
        masked_content="original",
        invert_mask=False,
        width=size[0],
        height=size[1],
        seed=seed,
        n=1,
        repeat=1,
        preview="none",
    )
    result = engine.generate(tile, tiles, stop, Pictures(init=picture, mask=mask, **dict(units)))
    tiles.index += 1
    return (result.images[0] if result.images else picture), result
