"""ControlNet units with ``AND`` prompts (and unequal lengths, NGMS): the ControlNet run again per UNet call.

conditioning.py's wrapper replaces the UNet's call with one call per embedding length (the negative and each ``AND``
part). sd-webui-controlnet's hook runs the ControlNet on each UNet call's own batch and text, so every part's rows get
residuals made with that part's prompt. Here the pipeline's own ControlNet call of the step is recorded (its map,
scale after the guidance window, SDXL or union arguments) and run again on each of the wrapper's calls, with the
call's latents, text and SDXL conditions; the map's rows are tiled to the call's. SD3's ``AND`` (one batched transformer
call of the negative and every part, families/prompt_steps.py) gets its block samples the same way from
`TransformerReplay`: the SD3 ControlNet run once on the call's rows, each with its own text.
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
        self.hook: Any = None

    def record(self, module: Any, args: tuple, kwargs: dict) -> None:
        """The ControlNet's forward pre-hook: keep the pipeline's call (not the replays')."""
        if not self.replaying:
            self.last = (args, kwargs)

    def __call__(
        self, sample: Any, timestep: Any, hidden: Any, added: Any, images: int, negative: int = 0
    ) -> dict[str, Any]:
        """The residual arguments of a UNet call of `sample` (whole images of `images` rows) with text `hidden`.

        `negative`: how many of its first rows are the negative prompt's ("ControlNet is more important" leaves them
        without control, as sd-webui-controlnet's cond/uncond mark does).
        """
        from .injection import negative_rows

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
            with negative_rows(self.model, negative):
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


class TransformerReplay(Replay):
    """SD3: the pipeline's ControlNet call of the step, run again on the rows of the ``AND`` call."""

    def __call__(self, call: dict[str, Any], images: int) -> Any:  # type: ignore[override]
        """The block samples for the transformer call `call` (the negative's and each part's rows of `images`).

        Each row gets the ControlNet of its own latents, timestep and text (its pooled text unless the recorded
        call's was zeros, InstantX's ``force_zeros_for_pooled_projection``); the maps and scales are the recorded
        call's positive rows, tiled.
        """
        import torch

        if self.last is None:
            return None
        _, kwargs = self.last
        rows = call["hidden_states"].shape[0]
        replay = {k: _tiled(v, kwargs["hidden_states"].shape[0], images, rows // images) for k, v in kwargs.items()}
        replay.update(hidden_states=call["hidden_states"], timestep=call["timestep"], return_dict=False)
        replay["joint_attention_kwargs"] = call.get("joint_attention_kwargs")
        if kwargs.get("encoder_hidden_states") is not None:  # (SD3.5's own ControlNets take no text)
            replay["encoder_hidden_states"] = call["encoder_hidden_states"]
        pooled = kwargs.get("pooled_projections")
        if pooled is not None:
            replay["pooled_projections"] = call["pooled_projections"] * bool(pooled.any())
        self.replaying = True
        try:
            with torch.no_grad():
                return self.model(**replay)[0]
        finally:
            self.replaying = False


def replay_for(pipe: Any, kind: type[Replay] = Replay) -> Replay:
    """The recorder of `pipe`'s ControlNet (installed once per model: it only keeps the last call's arguments)."""
    model = pipe.controlnet
    replay = model.__dict__.get("_jupyter_sd_replay")
    if type(replay) is not kind:
        if replay is not None:
            replay.hook.remove()
        replay = kind(model)
        replay.hook = model.register_forward_pre_hook(replay.record, with_kwargs=True)
        model.__dict__["_jupyter_sd_replay"] = replay
    replay.last = None
    return replay
