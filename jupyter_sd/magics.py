"""``%%paint`` and ``%paint``: the notebook front end, and the only place errors become one-line `UsageError`s."""

from __future__ import annotations

import shlex
import string
from collections.abc import Mapping
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from traitlets import Unicode, observe

from . import library, painter
from .infotext import parse_infotext
from .options import build_parser, one_line, parse_options
from .request import coerce_options, option_fields, parse_body, pasted_notes

_SUBCOMMANDS = ("config", "info", "unload", "panel", "models")
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

"""
_CELL_PARSER = build_parser("%%paint", prompt_words=False)
_CELL_PARSER.add_argument(
    "--ui", action="store_true", help="Put steps/guidance/seed controls and an 'again' button under the result."
)
_LINE_PARSER = build_parser("%paint", prompt_words=True)
HELP = _USAGE + _CELL_PARSER.format_help()

_KERNEL_TRAITS = ("model", "outdir", "device", "dtype")


class _Variables(string.Formatter):
    """``str.format`` over the notebook's variables, with a clear message for a name that isn't there."""

    def get_value(self, key: Any, args: Any, kwargs: Mapping[str, Any]) -> Any:
        if isinstance(key, str) and key not in kwargs:
            msg = f"prompt: {{{one_line(key)}}} is not a notebook variable (write {{{{ and }}}} for literal braces)"
            raise ValueError(msg)
        return super().get_value(key, args, kwargs)


def expand_variables(body: str, namespace: Mapping[str, Any]) -> str:
    """Replace ``{name}`` in a cell body with notebook variables (``{{`` escapes a brace).

    Raises
    ------
    ValueError
        For an unknown name or an unbalanced brace.
    """
    if "{" not in body and "}" not in body:
        return body
    try:
        return _Variables().vformat(body, (), namespace)
    except (IndexError, AttributeError, KeyError) as error:
        msg = f"prompt: could not fill in {error} from the notebook's variables"
        raise ValueError(msg) from None
    except ValueError as error:
        if str(error).startswith("prompt:"):
            raise
        msg = f"prompt: {error} (write {{{{ and }}}} for literal braces)"
        raise ValueError(msg) from None


@magics_class
class PaintMagics(Magics):
    """The ``%%paint`` magics. Kernel-wide settings are traitlets: ``%config PaintMagics.model = '...'`` works."""

    model = Unicode("", help="Default model: a hub id, a diffusers folder or a .safetensors file.").tag(config=True)
    outdir = Unicode("", help="Default output folder (default: beside the notebook).").tag(config=True)
    device = Unicode("auto", help="Default device: auto, cuda, cuda:N, mps or cpu.").tag(config=True)
    dtype = Unicode("auto", help="Default dtype: auto, float16, bfloat16 or float32.").tag(config=True)
    taesd = Unicode("", help="TAESD model (hub id or folder) for fast, sharp previews.").tag(config=True)

    @observe(*_KERNEL_TRAITS)
    def _sync_setting(self, change: dict[str, Any]) -> None:
        default = {"device": "auto", "dtype": "auto"}.get(change["name"], "")
        if change["new"] == default:
            painter.settings.pop(change["name"], None)
        else:
            painter.settings[change["name"]] = change["new"]

    @observe("taesd")
    def _sync_taesd(self, change: dict[str, Any]) -> None:
        painter.get_engine().taesd = change["new"]

    @line_cell_magic
    def paint(self, line: str = "", cell: str | None = None) -> Any:  # noqa: D102 (help is HELP, set below)
        try:
            return self._paint(line, cell)
        except (ValueError, MemoryError) as error:
            raise UsageError(one_line(str(error))) from None

    def _paint(self, line: str, cell: str | None) -> Any:
        first = line.strip().split(maxsplit=1)
        if cell is None and first and first[0] in _SUBCOMMANDS:
            rest = first[1] if len(first) > 1 else ""
            return getattr(self, f"_{first[0]}")(rest)
        options = parse_options(_LINE_PARSER if cell is None else _CELL_PARSER, line)
        if options.pop("help", False):
            print(HELP)
            return None
        with_controls = options.pop("ui", False)
        pasted: dict[str, str] = {}
        model_given = "model" in options
        if cell is not None:
            body = expand_variables(cell, self.shell.user_ns)
            pasted = parse_infotext(body)[2]
            options = {**parse_body(body), **options}
        if not options.get("prompt", "").strip():
            msg = "prompt: empty; write what to paint in the cell body (or after %paint on the line)"
            raise ValueError(msg)
        request = painter.new_request(**options).validate()
        from .views import InlineView

        result = painter.render(request, InlineView(), user_ns=self.shell.user_ns, reraise_interrupt=False)
        for note in pasted_notes(pasted, result.model_name, model_given):
            print(note)
        if with_controls:
            from IPython.display import display

            from .panel import CellControls

            display(result)
            display(CellControls(result, user_ns=self.shell.user_ns))
            return None
        return result

    # -- subcommands ------------------------------------------------------------------------------------------

    def _config(self, rest: str) -> None:
        changes: dict[str, Any] = {}
        for word in shlex.split(rest):
            key, sep, value = word.partition("=")
            if not sep:
                msg = f"config: expected key=value (got '{word}'); keys: {', '.join(_config_keys())}"
                raise ValueError(msg)
            changes[key.strip().replace("-", "_")] = value
        taesd = changes.pop("taesd", None)
        models = changes.pop("models", None)
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
        if not changes and taesd is None and models is None:
            defaults = painter.new_request()
            for key in _config_keys():
                if key == "models":
                    value, mark = str(library.models_dir()), " (set)" if library.is_models_dir_set() else ""
                else:
                    value = self.taesd if key == "taesd" else getattr(defaults, key)
                    mark = " (set)" if key in painter.settings or (key == "taesd" and value) else ""
                print(f"{key} = {value!r}{mark}")

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
    return [f.name for f in option_fields() if f.name not in ("prompt", "negative_prompt")] + ["taesd", "models"]


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics (``%load_ext jupyter_sd``) without importing torch."""
    magics = PaintMagics(shell=ipython)
    if magics not in ipython.configurables:
        ipython.configurables.append(magics)
    ipython.register_magics(magics)
