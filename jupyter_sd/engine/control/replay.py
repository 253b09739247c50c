"""ControlNet units with ``AND`` prompts (and unequal lengths, NGMS): the ControlNet run again per UNet call.

conditioning.py's wrapper replaces the UNet's call with one call per embedding length (the negative and each ``AND``
part). sd-webui-controlnet's hook runs the ControlNet on each UNet call's own batch and text, so every part's rows get
residuals made with that part's prompt. Here the pipeline's own ControlNet call of the step is recorded (its map,
scale after the guidance window, SDXL or union arguments) and run again on each of the wrapper's calls, with the
call's latents, text and SDXL conditions; the map's rows are tiled to the call's.
"""

from __future__ import annotations

from typing import Any

_OWN = ("encoder_hidden_states", "added_cond_kwargs", "return_dict")
"""The recorded call's arguments each replay gives its own."""


class Replay:
    """The pipeline's last ControlNet call of the step, run again for a UNet call of other rows."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.last: tuple[tuple, dict] | None = None
        self.replaying = False

    def record(self, module: Any, args: tuple, kwargs: dict) -> None:
        """The ControlNet's forward pre-hook: keep the pipeline's call (not the replays')."""
        if not self.replaying:
            self.last = (args, kwargs)

    def __call__(self, sample: Any, timestep: Any, hidden: Any, added: Any, images: int) -> dict[str, Any]:
        """The residual arguments of a UNet call of `sample` (whole images of `images` rows) with text `hidden`."""
        if self.last is None:
            return {}
        args, kwargs = self.last
        recorded = args[0].shape[0] if args else kwargs["sample"].shape[0]
        tiles = sample.shape[0] // images
        call = {k: _tiled(v, recorded, images, tiles) for k, v in kwargs.items() if k not in _OWN}
        call.pop("sample", None)
        call.pop("timestep", None)
        if added is not None:
            call["added_cond_kwargs"] = added
        self.replaying = True
        try:
            down, mid = self.model(sample, timestep, encoder_hidden_states=hidden, return_dict=False, **call)
        finally:
            self.replaying = False
        return {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}


def _tiled(value: Any, recorded: int, images: int, tiles: int) -> Any:
    """A recorded argument for `tiles` × `images` rows: a batch-wide tensor's last images (the positive's) tiled."""
    import torch

    if isinstance(value, (list, tuple)):
        return type(value)(_tiled(item, recorded, images, tiles) for item in value)
    if torch.is_tensor(value) and value.ndim > 0 and value.shape[0] == recorded:
        return value[-images:].repeat(tiles, *([1] * (value.ndim - 1)))
    return value


def replay_for(pipe: Any) -> Replay:
    """The recorder of `pipe`'s ControlNet (installed once per model: it only keeps the last call's arguments)."""
    model = pipe.controlnet
    replay = model.__dict__.get("_jupyter_sd_replay")
    if replay is None:
        replay = Replay(model)
        model.register_forward_pre_hook(replay.record, with_kwargs=True)
        model.__dict__["_jupyter_sd_replay"] = replay
    replay.last = None
    return replay
