"""What a model family is: one declared `Family` per file of this package, read by the rest of the engine.

Everything the engine used to decide by testing names (``"SDXL"``, a second text encoder) is a field here, so a
new family is one file: how it is detected, its pipeline classes, latent format, native size, defaults, guidance,
preview factors and what it cannot do yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FEATURES = ("hires", "lora", "embeddings", "vae", "refiner", "img2img", "inpaint", "prompt syntax", "single file")
"""What a family may lack (`Family.lacks`), each refused in one line when a request asks for it."""
PLAIN_TEXT = "(A1111 emphasis, editing, alternation, AND and BREAK are not applied)"
"""The end of a language-model family's `Family.prompt_note`."""


@dataclass(frozen=True)
class Family:
    """One model family: everything the engine needs to know about its models, declared in one place."""

    name: str
    """Short name in the load line, ``%paint info`` and presets: ``SD1``, ``SD2``, ``SDXL``, ``Flux``, ``SD3``."""
    title: str
    """In words, for messages: ``Stable Diffusion 1.x``."""
    pipelines: dict[str, str]
    """Mode (``txt2img``, ``img2img``, ``inpaint``) → diffusers pipeline class name; a missing mode is refused."""
    classes: tuple[str, ...] = ()
    """Other ``model_index.json`` ``_class_name`` values of this family (beyond `pipelines`)."""
    checkpoint_keys: tuple[str, ...] = ()
    """A single file whose tensor names start with one of these belongs to this family."""
    checkpoint_also: tuple[str, ...] = ()
    """A file must also hold a tensor name starting with one of these (Flux.2 [dev]: klein's names and a guidance
    embedder); () : `checkpoint_keys` alone decide."""
    relatives: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Models we do not paint whose files carry `checkpoint_keys` too → the tensor names telling them apart."""
    text_encoders: tuple[str, ...] = ("clip",)
    """Its text encoders in the pipeline's order (``clip_l``, ``clip_g``, ``t5`` …): how a prompt reaches them."""
    text_width: int = 0
    """The UNet's cross-attention width that tells this family from one sharing its classes (0: any)."""
    latent_channels: int = 4
    vae_scale: int = 8
    native_size: int = 512
    """The size the family's models are trained at, when the model's own config does not say."""
    defaults: dict[str, Any] = field(default_factory=dict)
    """Request fields this family paints with when the user left them at the option's default (sampler, steps…)."""
    guidance: str = "cfg"
    """``cfg`` (classifier-free guidance; `guidance_kwargs` says how it reaches the pipeline), ``cfg+distilled``
    (Flux: CFG and the distilled guidance scale) or ``distilled`` (Flux.2 [dev]: the distilled scale alone)."""
    samplers: tuple[str, ...] = ()
    """The A1111 sampler names it can run; () = all of them (the UNet families)."""
    schedules: tuple[str, ...] = ()
    """The schedule types it can run; () = all of them."""
    flow: bool = False
    """Flow matching (x0 = x_t − σ·v; the model's own scheduler) rather than A1111's k-diffusion samplers."""
    packed_latents: bool = False
    """Latents reach the step callback as 2×2 patches in a sequence (Flux): unpack before previews and decodes."""
    latent_rgb: dict[str, Any] | None = None
    """The linear latent→RGB map of ``latent2rgb`` previews (ComfyUI's factors), or None."""
    taesd: str = ""
    """The engine setting naming this family's tiny autoencoder for previews (``taesd``, ``taesdxl``), or ''."""
    half_dtype: str = "float16"
    """The half precision ``--dtype auto`` picks on CUDA and MPS (Flux overflows in float16: bfloat16)."""
    patch: int = 1
    """Latent pixels per transformer patch side the pipeline itself checks (Z-Image: 2; packed families: 2)."""
    prompt_note: str = ""
    """The one line said when a prompt has A1111 syntax this family's text encoder ignores ('' : the generic one)."""
    activations_gb: float = 2.0
    """Working memory on top of the weights for one native-size picture in fp16 (auto offload's margin)."""
    lacks: tuple[str, ...] = ()
    """Features of `FEATURES` not implemented for this family yet: a request using one is refused in one line."""
    controlnet: str = ""
    """The diffusers ControlNet class of a transformer family's units (``FluxControlNetModel``); '' : the UNet's."""
    controlnet_pipelines: dict[str, str] = field(default_factory=dict)
    """Mode → the diffusers ControlNet pipeline painting it with units (transformer families; a missing mode is
    refused; one without ``strength`` paints an init composed: control/flow_init.py). The UNet families' come from
    diffusers' auto mapping."""
    controlnet_inpaint: str = ""
    """The diffusers pipeline of the family's inpaint ControlNets (the masked picture beside the latents), or ''."""
    controlnet_units: int = 0
    """The most units its ControlNet pipelines paint at once (0: any, through its Multi model)."""
    controlnet_shared: bool = False
    """Its Multi model holds one ControlNet (a Union model) that several units share, each with its own map, weight
    and window (Qwen-Image's); units naming two models are refused."""
    controlnet_tokens: bool = False
    """Its ControlNets' residuals are the image's tokens in rows (Z-Image's: then the caption's), so a unit's region
    mask can weigh them."""

    def infotext_params(self, request: Any) -> dict[str, str]:
        """Infotext keys only this family writes (Forge's ``Distilled CFG Scale`` on Flux, ``Shift`` when set)."""
        from ...recipe.values import format_number

        params = {}
        if self.guidance in ("cfg+distilled", "distilled"):
            params["Distilled CFG Scale"] = format_number(request.distilled_cfg)
        if self.flow and getattr(request, "shift", 0.0):
            params["Shift"] = format_number(request.shift)
        return params

    def defaults_for(self, pipe: Any) -> dict[str, Any]:
        """The request defaults for this loaded model (a distilled and a base model of one family may differ)."""
        return self.defaults

    def refit(self, pipe: Any, request: Any) -> tuple[Any, list[str]]:
        """The request as this loaded model really paints it, and one line per change (most change nothing)."""
        return request, []

    def adapt_call(self, pipe: Any, call: dict[str, Any]) -> dict[str, Any]:
        """The pipeline call's arguments as this family's pipeline takes them (most take ours as they are)."""
        return call

    def decode(self, pipe: Any, latents: Any) -> Any:
        """(B, C, H, W) latents → (B, 3, H, W) pixels in [-1, 1] where the VAE is not AutoencoderKL-like, else None."""
        return None

    def encode(self, pipe: Any, pixels: Any, generator: Any) -> Any:
        """(1, 3, H, W) pixels in [-1, 1] → sampler-space (1, C, H, W) latents, sampled as its Img2Img pipeline does."""
        from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import retrieve_latents

        latents = retrieve_latents(pipe.vae.encode(pixels), generator=generator)
        shift = getattr(pipe.vae.config, "shift_factor", None) or 0.0  # the flow families' VAEs shift as well
        return (latents - shift) * pipe.vae.config.scaling_factor

    def enlarge(self, pipe: Any, latents: Any, size: tuple[int, int], mode: str, antialias: bool) -> Any:
        """(B, C, H, W) sampler-space latents interpolated to `size` (height, width): the hires fix's latent upscale."""
        import torch

        return torch.nn.functional.interpolate(latents, size=size, mode=mode, antialias=antialias)

    def to_pipeline_latents(self, pipe: Any, latents: Any) -> Any:
        """(B, C, H, W) starting noise → what the pipeline's ``latents=`` takes (Flux: packed patches)."""
        if not self.packed_latents:
            return latents
        from .flow import pack

        return pack(pipe, latents)

    def to_spatial(self, pipe: Any, latents: Any, size: tuple[int, int]) -> Any:
        """Latents as the step callback sees them → (B, C, H, W) for previews and decodes (`size`: the picture's)."""
        if not self.packed_latents or latents.dim() == 4:
            return latents
        from .flow import unpack

        return unpack(pipe, latents, size)

    def refuse(self, feature: str, detail: str = "") -> None:
        """Raise the one-line refusal for a `feature` this family lacks (nothing when it has it).

        Raises
        ------
        ValueError
            ``model: hires fix is not supported for Flux models yet (…)``.
        """
        if feature in self.lacks:
            modes = ", ".join(self.pipelines)
            msg = f"model: {feature}{detail} is not supported for {self.name} models yet (they paint {modes})"
            raise ValueError(msg)

    def pipeline_class(self, mode: str) -> str:
        """The diffusers class painting `mode`; one line when the family has none for it."""
        self.refuse(mode)  # (a declared class whose mode is not wired up yet is in `lacks`)
        if mode not in self.pipelines:
            msg = f"model: {self.name} models have no {mode} pipeline (they paint {', '.join(self.pipelines)})"
            raise ValueError(msg)
        return self.pipelines[mode]

    def pipeline_type(self, class_name: str) -> type:
        """The pipeline class a `pipelines` entry names: diffusers' (a family may paint a mode with one of ours)."""
        import diffusers

        return getattr(diffusers, class_name)

    def owns_class(self, class_name: str) -> bool:
        """Whether a pipeline class (a loaded pipeline's, or a folder's ``_class_name``) is this family's."""
        names = (self.pipelines.values(), self.classes, self.controlnet_pipelines.values())
        return any(class_name in each for each in names) or bool(class_name and class_name == self.controlnet_inpaint)

    def guidance_kwargs(self, guidance: float, distilled: float) -> dict[str, Any]:
        """The pipeline-call arguments for CFG `guidance` (and the distilled guidance scale, where it applies).

        Flux's pipelines call the distilled scale ``guidance_scale`` and real CFG ``true_cfg_scale``; Flux.2 [dev]'s
        takes the distilled scale alone, as ``guidance_scale``.
        """
        if self.guidance == "cfg+distilled":
            return {"true_cfg_scale": guidance, "guidance_scale": distilled}
        if self.guidance == "distilled":
            return {"guidance_scale": distilled}
        return {"guidance_scale": guidance}
