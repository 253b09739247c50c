"""The built-in preprocessors (no weights): an input picture → the control map a ControlNet is given.

Each follows sd-webui-controlnet's module of the same name: the same sliders (see ``modules``), the same scaling to
the processor resolution (``resolution.scale_with_pad``) and the same arithmetic, on OpenCV and numpy. Maps are
H×W×3 uint8 at the processor resolution; ``inpaint``/``inpaint_only`` give H×W×4, the mask in the alpha channel
(``inpaint_only+lama`` too, LaMa's fill in the mask, at the picture's size).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .lineart_standard import lineart_standard
from .modules import Module, find_module, module_params
from .resolution import pixel_perfect_resolution, scale_with_pad


def as_rgb(picture: object) -> np.ndarray:
    """A PIL image or array as H×W×3 uint8; alpha is composited over white, as sd-webui-controlnet's ``HWC3``."""
    array = np.asarray(picture)
    if array.dtype != np.uint8:
        raise ValueError(f"controlnet: an input picture must be 8-bit, not {array.dtype}")
    if array.ndim == 2:
        array = array[:, :, None]
    channels = array.shape[2] if array.ndim == 3 else 0
    if channels == 1:
        return np.ascontiguousarray(np.repeat(array, 3, axis=2))
    if channels == 3:
        return np.ascontiguousarray(array)
    if channels == 4:
        alpha = array[:, :, 3:4].astype(np.float32) / 255.0
        over_white = array[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        return over_white.clip(0, 255).astype(np.uint8)
    raise ValueError(f"controlnet: an input picture must be grey, RGB or RGBA, not shape {array.shape}")


def _on_scaled(work: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray, int], np.ndarray]:
    """Run `work` on the picture scaled and padded to the processor resolution, then crop the padding off."""

    def run(image: np.ndarray, res: int) -> np.ndarray:
        padded, (height, width) = scale_with_pad(image, res)
        return np.ascontiguousarray(work(padded)[:height, :width])

    return run


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))


def _canny(low: float, high: float) -> Callable[[np.ndarray], np.ndarray]:
    import cv2

    return lambda image: _grey_to_rgb(cv2.Canny(image, int(low), int(high)))


def _xdog(threshold: float) -> Callable[[np.ndarray], np.ndarray]:
    """Difference of Gaussians (σ 0.5 and 5): white where twice the darkening passes the threshold."""
    import cv2

    def work(image: np.ndarray) -> np.ndarray:
        fine = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 0.5)
        coarse = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 5.0)
        dog = np.clip(255 - np.min(coarse - fine, axis=2), 0, 255).astype(np.uint8)
        # sd-webui-controlnet doubles (255 - dog) in uint8, so strengths of 128 and more wrap around
        strength = (2 * (255 - dog.astype(np.int32))) % 256
        return np.where((strength > threshold)[:, :, None], 255, 0).astype(np.uint8).repeat(3, axis=2)

    return work


def _threshold(level: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda image: _grey_to_rgb(np.where(np.min(image, axis=2) > level, 255, 0).astype(np.uint8))


def _blur(image: np.ndarray, res: int, sigma: float) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(_on_scaled(lambda x: x)(image, res), (0, 0), float(sigma))


def _tile_resample(image: np.ndarray, rate: float) -> np.ndarray:
    """Shrunk by the down-sampling rate (area); unchanged below 1.1."""
    import cv2

    if rate < 1.1:
        return image
    height, width = int(image.shape[0] / rate), int(image.shape[1] / rate)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def _noise_disk(rng: np.random.RandomState, height: int, width: int, cell: int = 256) -> np.ndarray:
    """Smooth noise in 0..1: uniform noise on a coarse grid, bicubic-upscaled, cropped and stretched to 0..1."""
    import cv2

    coarse = rng.uniform(low=0, high=1, size=(height // cell + 2, width // cell + 2, 1))
    noise = cv2.resize(coarse, (width + 2 * cell, height + 2 * cell), interpolation=cv2.INTER_CUBIC)
    noise = noise[cell : cell + height, cell : cell + width]
    noise = noise - np.min(noise)
    return noise / np.max(noise)


def _shuffle(image: np.ndarray, res: int, seed: int) -> np.ndarray:
    """The picture's content moved around by a smooth random flow (numpy's legacy generator seeded by `seed`)."""
    import cv2

    scaled = _on_scaled(lambda x: x)(image, res)
    height, width = scaled.shape[:2]
    rng = np.random.RandomState(seed & 0xFFFFFFFF)
    flow_x = _noise_disk(rng, height, width) * float(width - 1)
    flow_y = _noise_disk(rng, height, width) * float(height - 1)
    flow = np.stack([flow_x, flow_y], axis=2).astype(np.float32)
    return cv2.remap(scaled, flow, None, cv2.INTER_LINEAR)


def _marigold(image: np.ndarray, res: int, steps: float, seed: int) -> np.ndarray:
    """Marigold's depth (``marigold.py``) of the picture scaled and padded to `res`, the padding cropped off."""
    from .annotator_nets import loaded_net
    from .marigold import marigold_map

    padded, (height, width) = scale_with_pad(image, res)
    return _grey_to_rgb(marigold_map(loaded_net("marigold", "depth_marigold"), padded, steps, seed)[:height, :width])


def _with_mask(image: np.ndarray, mask: object | None) -> np.ndarray:
    """The picture with the inpaint mask as its alpha channel (no mask: nothing to repaint, alpha 0)."""
    if mask is None:
        alpha = np.zeros(image.shape[:2], dtype=np.uint8)
    else:
        alpha = as_rgb(mask)[:, :, 0]
        if alpha.shape != image.shape[:2]:
            raise ValueError(
                f"controlnet: the inpaint mask is {alpha.shape[1]}x{alpha.shape[0]} but its picture "
                f"{image.shape[1]}x{image.shape[0]}; give them one size"
            )
    return np.concatenate([image, alpha[:, :, None]], axis=2)


def shuffle_seed(seed: int, subseed: int) -> int:
    """The numpy seed sd-webui-controlnet gives shuffle: the picture's seed plus its variation seed, 32 bits."""
    return (max(int(seed), 0) + max(int(subseed), 0)) & 0xFFFFFFFF


def _run(
    module: Module,
    image: np.ndarray,
    res: int | None,
    a: float | None,
    b: float | None,
    seed: int,
    on_pose: Callable[[dict], None] | None,
):
    name = module.name
    if name == "depth_marigold":  # an annotator whose noise comes from `seed`, as shuffle's does
        return _marigold(image, res, a, seed)
    if module.annotator:
        from .annotators import annotate

        return annotate(name, image, res, a, b, on_pose)
    if name == "canny":
        return _on_scaled(_canny(a, b))(image, res)
    if name == "scribble_xdog":
        return _on_scaled(_xdog(a))(image, res)
    if name == "lineart_standard":
        return _on_scaled(lambda x: _grey_to_rgb(lineart_standard(x)))(image, res)
    if name == "threshold":
        return _on_scaled(_threshold(a))(image, res)
    if name == "blur_gaussian":
        return _blur(image, res, a)
    if name == "shuffle":
        return _shuffle(image, res, seed)
    if name == "invert":
        return 255 - image
    if name == "tile_resample":
        return _tile_resample(image, a)
    return image  # none, tile_colorfix(+sharp): the picture itself (colorfix works while sampling)


def preprocess(
    module: str,
    image: object,
    processor_res: float | None = -1,
    threshold_a: float | None = -1,
    threshold_b: float | None = -1,
    *,
    mask: object | None = None,
    seed: int = 0,
    pixel_perfect: tuple[int, int, object] | None = None,
    fill_to: tuple[int, int] | None = None,
    on_pose: Callable[[dict], None] | None = None,
) -> np.ndarray:
    """The control map of `image` through built-in preprocessor `module`, with sd-webui-controlnet's parameters.

    -1 takes a slider's default. ``pixel_perfect=(width, height, resize_mode)`` sets the processor resolution from
    the picture painted instead. `mask` is the inpaint mask (inpaint modules only); `seed` drives shuffle and
    Marigold's noise.
    ``fill_to=(width, height)``: the unit resizes by "Resize and Fill", so LaMa fills the added border as well.
    `on_pose` is given a pose module's poses as the extension's JSON (``pose_json``).
    """
    spec = find_module(module)
    res, a, b = module_params(spec, processor_res, threshold_a, threshold_b)
    picture = as_rgb(image)
    if spec.takes_mask:
        with_mask = _with_mask(picture, mask)
        if spec.annotator:  # inpaint_only+lama: LaMa's fill in the mask (annotators.py)
            from .annotators import inpaint_lama, outpaint_lama

            return outpaint_lama(with_mask, *fill_to) if fill_to else inpaint_lama(with_mask)
        return with_mask
    if mask is not None:
        modules = "inpaint_only, inpaint, inpaint_only+lama"
        raise ValueError(f"controlnet: {spec.name} takes no mask; the inpaint modules do ({modules})")
    if pixel_perfect is not None and res is not None:
        width, height, resize_mode = pixel_perfect
        res = pixel_perfect_resolution((picture.shape[1], picture.shape[0]), width, height, resize_mode)
    return np.ascontiguousarray(_run(spec, picture, res, a, b, seed, on_pose))


def inpaint_hint(control_map: np.ndarray) -> np.ndarray:
    """What an inpaint ControlNet is given: colours in 0..1, and -1 where the mask (alpha > half) is to be painted."""
    colour = control_map[:, :, :3].astype(np.float32) / 255.0
    masked = (control_map[:, :, 3:4].astype(np.float32) / 255.0 > 0.5).astype(np.float32)
    return colour * (1.0 - masked) - masked
