"""``%%paint`` and ``%paint``: the notebook front end, and the only place errors become one-line `UsageError`s."""

from __future__ import annotations

import shlex
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from traitlets import Bool, Unicode

from . import library
from .painting import session as painter
from .painting.variables import expand_line, expand_variables
from .recipe.options import build_parser, one_line, parse_options
from .recipe.paste import NOTHING_PASTED, read_pasted
from .recipe.plot_options import split_plot_options
from .recipe.values import coerce_options, option_fields

_SUBCOMMANDS = ("config", "info", "unload", "panel", "models", "download", "drive", "zip", "batch", "upscale")
_USAGE = """\
Paint a picture from the cell body, showing it form live and saving it beside the notebook.

    %%paint --steps 25 --guidance 7 --seed 42 --size 512x512 --sampler "DPM++ 2M" --schedule Karras -n 2
    a watercolor fox in a snowy forest, soft light
    Negative prompt: blurry, lowres

The cell body is the prompt; a line starting "Negative prompt:" starts the negative prompt; a last line of A1111
generation data ("Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, ...") applies its values,
with options on the magic line winning. {name} in the body is replaced by that notebook variable ({{ and }} for
literal braces). The cell's value is a PaintResult (images, seeds, paths, request).

Line magic:
    %paint [options] PROMPT     paint a one-line prompt
    %paint config [key=value …] show or set this kernel's defaults (model, outdir, device, dtype, steps, …)
    %paint info                 what is loaded, on which device, memory
    %paint unload               free the pipeline and its GPU memory
    %paint panel                open the widget panel
    %paint models [KIND] [NAME] the models folder: checkpoints, LoRA, embeddings, VAEs (kind, name, size, hash)
    %paint batch FILE [options] paint every prompt/recipe of a file or folder, here or on Ray (--ray auto)
    %paint upscale IMAGE [--upscaler N] [--scale S]  enlarge pictures as A1111's Extras tab (--help)
    %paint download URL [--kind K]  a civitai / Hugging Face / http(s) model into the models folder
    %paint drive                (Colab) keep models and pictures on Google Drive, in MyDrive/jupyter_sd/
    %paint zip [FOLDER]         zip the pictures (metadata intact) and offer the zip for download

X/Y/Z plot: --x/--y/--z 'Name: values' paint one picture per value (or pair, or triple) and a labelled grid:
    %%paint --x "Steps: 10, 20, 30" --y "CFG scale: 3-9 [4]" --z "Sampler: Euler a, DPM++ 2M" --seed 1

"""
_CELL_PARSER = build_parser("%%paint", prompt_words=False)
_CELL_PARSER.add_argument(
    "--ui", action="store_true", help="Put steps/guidance/seed controls and an 'again' button under the result."
)
_LINE_PARSER = build_parser("%paint", prompt_words=True)
HELP = _USAGE + _CELL_PARSER.format_help()

_KERNEL_TRAITS = ("model", "outdir", "device", "dtype")


class _KernelDefault(Unicode):
    """A ``%config PaintMagics.NAME`` trait kept in the kernel's one store of defaults, not on the magics object.

    Request options live in `painting.session.settings` (what ``%paint config`` and the panel set too); the TAESD
    names live on the engine. Reading the trait reads the store, setting it writes there: no second copy to sync.
    """

    def get(self, obj: Any, cls: Any = None) -> Any:  # noqa: D102
        if self.name in ("taesd", "taesdxl"):
            return getattr(painter.get_engine(), self.name)
        return painter.settings.get(self.name, self.default_value)

    def set(self, obj: Any, value: Any) -> None:  # noqa: D102
        value = self._validate(obj, value)
        old = self.get(obj)
        if self.name in ("taesd", "taesdxl"):
            setattr(painter.get_engine(), self.name, value)
        elif value == self.default_value:
            painter.settings.pop(self.name, None)
        else:
            painter.settings[self.name] = value
        if old != value:
            obj._notify_trait(self.name, old, value)


@magics_class
class PaintMagics(Magics):
    """The ``%%paint`` magics. Kernel-wide settings are traitlets: ``%config PaintMagics.model = '...'`` works."""

    model = _KernelDefault("", help="Default model: a hub id, a diffusers folder or a .safetensors file.").tag(
        config=True
    )
    outdir = _KernelDefault("", help="Default output folder (default: beside the notebook).").tag(config=True)
    device = _KernelDefault("auto", help="Default device: auto, cuda, cuda:N, mps or cpu.").tag(config=True)
    dtype = _KernelDefault("auto", help="Default dtype: auto, float16, bfloat16 or float32.").tag(config=True)
    taesd = _KernelDefault("", help="TAESD model (hub id or folder) for fast, sharp previews.").tag(config=True)
    taesdxl = _KernelDefault("", help="TAESDXL model (e.g. madebyollin/taesdxl) for SDXL previews.").tag(config=True)
    warm_imports = Bool(
        True,
        help="Import torch and diffusers in the background once %load_ext's cell is done, so the first picture "
        "is quicker (set it to False in that cell, or in the IPython config, to keep the kernel idle).",
    ).tag(config=True)

    @no_var_expand  # we expand the line ourselves: --init {name} / --mask {name} must reach us as names
    @line_cell_magic
    def paint(self, line: str = "", cell: str | None = None) -> Any:  # noqa: D102 (help is HELP, set below)
        try:
            return self._paint(expand_line(line, self.shell.user_ns), cell)
        except (ValueError, MemoryError) as error:
            raise UsageError(one_line(str(error))) from None

    def _paint(self, line: str, cell: str | None) -> Any:
        first = line.strip().split(maxsplit=1)
        if cell is None and first and first[0] in _SUBCOMMANDS:
            rest = first[1] if len(first) > 1 else ""
            return getattr(self, f"_{first[0]}")(rest)
        options = parse_options(_LINE_PARSER if cell is None else _CELL_PARSER, line)
        if options.pop("help", False) or (cell is None and not line.strip()):  # %paint alone: the help
            print(HELP)
            return None
        with_controls = options.pop("ui", False)
        plot = split_plot_options(options)
        pasted = NOTHING_PASTED
        model_given = "model" in options
        if cell is not None:
            body, kept = expand_variables(cell, self.shell.user_ns)
            for line in kept:
                print(line)
            pasted = read_pasted(body, options)
            options = {**pasted.options, **options}
            if not plot and pasted.plot:  # a pasted X/Y/Z grid's generation data paints it again
                from .plots.plan import pasted_plot

                plot, lacking = pasted_plot(painter.new_request(**options), pasted.plot)
                print(lacking) if lacking else None
        if with_controls and plot:
            msg = "ui: --ui puts controls under one picture; it does not apply to X/Y/Z plots"
            raise ValueError(msg)
        from .api import dispatch
        from .painting.views import InlineView

        view = None if plot else InlineView()  # a plot's view: inline in a notebook, lines in a terminal
        painted = dispatch(options, plot_axes=plot, view=view, user_ns=self.shell.user_ns, reraise_interrupt=False)
        for note in pasted.after_painting(painted.model_name, model_given):
            print(note)
        if with_controls:
            from IPython.display import display

            from .panel import CellControls

            display(painted)
            display(CellControls(painted, user_ns=self.shell.user_ns))
            return None
        return painted

    # -- subcommands ------------------------------------------------------------------------------------------

    def _config(self, rest: str) -> None:
        changes: dict[str, Any] = {}
        for word in shlex.split(rest):
            key, sep, value = word.partition("=")
            if not sep:
                msg = f"config: expected key=value (got '{word}'), e.g. steps=30 (%paint config alone lists every key)"
                raise ValueError(msg)
            changes[key.strip().replace("-", "_")] = value
        taesd = changes.pop("taesd", None)
        taesdxl = changes.pop("taesdxl", None)
        if taesdxl is not None:
            self.taesdxl = taesdxl
        models = changes.pop("models", None)
        token = changes.pop("civitai_token", None)
        units = changes.pop("controlnet_units", None)
        if units is not None:  # a kernel setting, as sd-webui-controlnet's unit number is a UI setting
            from .engine.control.apply import set_max_units

            set_max_units(units)
        if changes:
            typed = coerce_options(changes)
            painter.new_request(**typed).validate()  # refuse a bad default before keeping any of them
            for key, value in typed.items():
                if key in _KERNEL_TRAITS:
                    setattr(self, key, value)
                else:
                    painter.settings[key] = value
        if taesd is not None:
            self.taesd = taesd
        if models is not None:
            library.set_models_dir(models)
        if token is not None:
            from .downloads import download as downloads

            downloads.set_civitai_token(token)
        if not changes and taesd is None and models is None and token is None and taesdxl is None and units is None:
            defaults = painter.new_request()
            for key in _config_keys():
                if key == "models":
                    value, mark = str(library.models_dir()), " (set)" if library.is_models_dir_set() else ""
                else:
                    value = getattr(self, key) if key in ("taesd", "taesdxl") else getattr(defaults, key)
                    mark = " (set)" if key in painter.settings or (key in ("taesd", "taesdxl") and value) else ""
                print(f"{key} = {value!r}{mark}")
            from .downloads import download as downloads

            print(f"civitai_token = {'(set)' if downloads.civitai_token() else '(none: $CIVITAI_TOKEN)'}")
            from .engine.control.apply import DEFAULT_MAX_UNITS, max_units

            print(f"controlnet_units = {max_units()}{' (set)' if max_units() != DEFAULT_MAX_UNITS else ''}")

    def _info(self, rest: str) -> dict[str, Any]:
        from IPython.display import JSON, display

        info = painter.get_engine().info()
        info["defaults"] = dict(painter.settings)
        if not info["loaded"]:
            print("no model loaded yet (the next %%paint loads it)")
        display(JSON(info)) if rest == "--json" else None
        for key, value in info.items():
            print(f"{key}: {value}")
        return None

    def _unload(self, rest: str) -> None:
        engine = painter.get_engine()
        if engine.busy:
            msg = "unload: a picture is being painted; stop it first"
            raise ValueError(msg)
        engine.unload()
        print("unloaded: the next %%paint loads the model again")

    def _panel(self, rest: str) -> Any:
        try:
            from .panel import Panel
        except ImportError as error:  # pragma: no cover - the panel ships with the package
            msg = f"panel: not available ({error})"
            raise ValueError(msg) from None
        return Panel(**parse_options(_CELL_PARSER, rest)) if rest.strip() else Panel()

    def _batch(self, rest: str) -> Any:
        from .batches.command import COMMAND_HELP, parse_command
        from .batches.plan import InvalidBatch
        from .batches.run import batch

        source, runner, options = parse_command(rest)
        if options.pop("help", False):
            print(COMMAND_HELP)
            return None
        try:
            return batch(source, **runner, **options)
        except InvalidBatch as error:
            print("\n".join(one_line(line) for line in error.lines()))  # all of them; the error names the first few
            raise

    def _upscale(self, rest: str) -> Any:
        from .extras.command import COMMAND_HELP, parse_command
        from .extras.run import upscale

        options = parse_command(rest)
        if options.pop("help", False):
            print(COMMAND_HELP)
            return None
        return upscale(options.pop("image"), **options, user_ns=self.shell.user_ns)

    def _download(self, rest: str) -> None:
        from .downloads.download import download

        words = shlex.split(rest)
        kind = None
        if "--kind" in words[:-1]:
            at = words.index("--kind")
            kind = words.pop(at + 1)
            words.pop(at)
        if len(words) != 1:
            msg = "download: expected one link (%paint download URL [--kind checkpoint|lora|embedding|vae])"
            raise ValueError(msg)
        try:
            print(download(words[0], kind=kind).summary())
        except KeyboardInterrupt:
            print("download: interrupted; run the same line again to resume where it stopped")

    def _drive(self, rest: str) -> None:
        from .library.drive import use_drive
        from .painting.store import notebook_path

        notebook = notebook_path(self.shell.user_ns)
        models, outputs = use_drive(notebook.name if notebook else None)
        self.outdir = str(outputs)
        print(f"Google Drive: models in {models} (A1111's subfolders), pictures in {outputs}")

    def _zip(self, rest: str) -> None:
        from .library.drive import offer_download, zip_pictures

        words = shlex.split(rest)
        if len(words) > 1:
            msg = f"zip: expected at most one folder (got {len(words)}: {rest})"
            raise ValueError(msg)
        folder = words[0] if words else painter.output_folder(painter.new_request(), self.shell.user_ns)
        offer_download(zip_pictures(folder))

    def _models(self, rest: str) -> None:
        words = shlex.split(rest)
        if len(words) > 2:
            msg = f"models: expected %paint models [KIND] [NAME] (got '{rest}')"
            raise ValueError(msg)
        kind, name = None, None
        if words:
            try:
                kind = library.kind_named(words[0])
            except ValueError:
                if len(words) == 2:
                    raise
                name = words[0]  # %paint models NAME: look in every subfolder
            if len(words) == 2:
                name = words[1]
        if name is not None:
            rows = [library.model_row(m) for m in library.find_models(name, kind)]
            if not rows:
                raise ValueError(library.not_found_message(kind, name))
        else:
            waiting = [
                m for m in library.list_models(kind) if m.path.is_file() and not library.has_cached_hash(m.kind, m.path)
            ]
            total = sum(m.size for m in waiting)
            if total > library.BIG_FILE:
                print(
                    f"hashing {len(waiting)} file(s) not seen before ({library.format_size(total)}), once…", flush=True
                )
            rows = library.models_table(kind)
        if not rows:
            where = library.subfolder(kind) if kind else library.models_dir()
            folders = ", ".join(f"{folder}/" for folder in library.SUBFOLDERS.values())
            print(f"no models in {where} (A1111's layout: {folders}; %paint config models=DIR points at another)")
            return
        print(f"models in {library.models_dir()}")
        print(library.format_table(rows))


PaintMagics.paint.__doc__ = HELP


def _config_keys() -> list[str]:
    options = [f.name for f in option_fields() if f.name not in ("prompt", "negative_prompt")]
    return options + ["taesd", "taesdxl", "models"]


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics (``%load_ext jupyter_sd``) without importing torch."""
    magics = PaintMagics(shell=ipython)
    if magics not in ipython.configurables:
        ipython.configurables.append(magics)
    ipython.register_magics(magics)
    _warm_after_cell(ipython, magics)


def _warm_after_cell(ipython: Any, magics: PaintMagics) -> None:
    """Start the background imports when the cell that loaded the extension is done (unless turned off there)."""

    def start(*args: Any) -> None:
        try:
            ipython.events.unregister("post_run_cell", start)
        except ValueError:  # pragma: no cover - already gone
            pass
        if magics.warm_imports:
            from .engine import warmup

            warmup.start(then=lambda: painter.get_engine().preload(painter.new_request()))

    events = getattr(ipython, "events", None)
    if events is None:  # pragma: no cover - every IPython shell has events
        return
    events.register("post_run_cell", start)
