"""A prompt template (sd-dynamic-prompts' ``{a|b}`` and ``__wildcards__``) painted as one picture per prompt.

`render` sends a request whose prompt is a template here: it becomes one request per picture, each with its own
expanded prompt and seed (image k of the request uses seed+k, as A1111 counts seeds), painted in order on the engine
and gathered into one `TemplateResult`, so the cell shows the n images it asked for. The syntax itself is text only
(``recipe/dynamic_prompts.py``); this module decides the pictures and paints them.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from ..engine import Progress
from ..engine.pictures import Pictures
from ..engine.seeds import batch_seeds
from ..recipe.dynamic_prompts import Expansion, expand_combinatorial, expand_random, has_dynamic_syntax, template_lines
from ..recipe.fields import MAX_SEED
from ..recipe.request import PaintRequest
from ..recipe.result import PaintResult


def is_template(request: PaintRequest) -> bool:
    """Whether the request's prompt or negative prompt has dynamic-prompts syntax (a variant or a wildcard)."""
    return has_dynamic_syntax(request.prompt) or has_dynamic_syntax(request.negative_prompt)


@dataclass
class TemplateResult(PaintResult):
    """What a template painted: each picture's own prompt, and the templates it came from.

    ``request`` keeps the templates and the first seed, so painting it again repaints the same prompts; `recipe`
    and `infotext` give each picture the prompt that ran, plus sd-dynamic-prompts' ``Template:`` lines.
    """

    prompts: list[str] = field(default_factory=list)
    negative_prompts: list[str] = field(default_factory=list)
    template: str = ""
    negative_template: str = ""

    def recipe(self, index: int = 0) -> PaintRequest:
        """The request that paints image `index` alone: the prompt that ran, its seed, one image."""
        ran = {"prompt": self.prompts[index], "negative_prompt": self.negative_prompts[index], "combinatorial": False}
        return super().recipe(index).replace(**ran)

    def infotext(self, index: int = 0) -> str:
        """Image `index`'s generation data: the prompt that ran, then the templates as sd-dynamic-prompts writes."""
        return super().infotext(index) + template_lines(self.template, self.negative_template)


def picture_count(request: PaintRequest) -> int:
    """How many pictures `request` paints: n × repeat, or, for a combinatorial template, its combinations × repeat."""
    if not (request.combinatorial and is_template(request)):
        return request.n * request.repeat
    found = expand_combinatorial(request.prompt, request.negative_prompt, request.max_combinations)
    return len(found.prompts) * request.repeat


def plan_pictures(request: PaintRequest) -> tuple[PaintRequest, list[PaintRequest], list[str]]:
    """The request with its seeds drawn, one request per picture (its prompt expanded, its seed), and notes.

    Random mode paints n × repeat pictures, picture k's prompt drawn with picture k's seed; combinatorial mode one
    per combination (at most ``max_combinations``), the set again for each ``--repeat``.
    """
    changes: dict[str, Any] = {}
    count = request.n * request.repeat
    if request.seed == -1:
        changes["seed"] = secrets.randbelow(MAX_SEED - max(count, request.max_combinations * request.repeat))
    if request.variation_seed == -1 and request.variation_strength > 0:
        changes["variation_seed"] = secrets.randbelow(MAX_SEED - max(count, request.max_combinations * request.repeat))
    request = request.replace(**changes) if changes else request
    if request.combinatorial:
        found = expand_combinatorial(request.prompt, request.negative_prompt, request.max_combinations)
        found = Expansion(found.prompts * request.repeat, found.negative_prompts * request.repeat, found.notes)
        count = len(found.prompts)
    seeds, subseeds = batch_seeds(request.seed, request.variation_seed, request.variation_strength, 0, count)
    if not request.combinatorial:
        found = expand_random(request.prompt, request.negative_prompt, seeds)
    pictures = [
        request.replace(
            prompt=prompt, negative_prompt=negative, seed=seed, variation_seed=subseed, n=1, repeat=1
        ).validate()
        for prompt, negative, seed, subseed in zip(found.prompts, found.negative_prompts, seeds, subseeds)
    ]
    return request, pictures, found.notes


class _Gather(Progress):
    """Passes one picture's events on as events of the whole template request, gathering its pictures.

    The store and the view see picture k's batch as batch k of `count`, with the gathered result (so the store
    writes picture k's own recipe), and hear ``finish`` once, at the end.
    """

    def __init__(self, target: Progress, asked: PaintRequest, pictures: list[PaintRequest]) -> None:
        self.target = target
        self.asked = asked
        self.pictures = pictures
        self.index = 0
        self.result: TemplateResult | None = None
        self._said: set[str] = set()

    def notice(self, text: str) -> None:  # noqa: D102 (one line per message, not one per picture)
        if text not in self._said:
            self._said.add(text)
            self.target.notice(text)

    def start(self, request: PaintRequest, batch: int, batches: int) -> None:  # noqa: D102
        self.target.start(request, self.index, len(self.pictures))

    def phase(self, label: str, index: int, count: int, steps: int) -> None:  # noqa: D102
        self.target.phase(label, index, count, steps)

    def step(self, step: int, total: int, previews: list[Any] | None) -> None:  # noqa: D102
        self.target.step(step, total, previews)

    def batch(self, images: list[Any], seeds: list[int], result: PaintResult) -> None:  # noqa: D102
        gathered = self._gathered(result)
        gathered.images += images
        gathered.seeds += seeds
        gathered.variation_seeds += result.variation_seeds[len(result.variation_seeds) - len(images) :]
        if not result.interrupted:
            gathered.complete += len(images)
        gathered.interrupted_at, gathered.stopped_by = result.interrupted_at, result.stopped_by
        self.target.batch(images, seeds, gathered)

    def _gathered(self, first: PaintResult) -> TemplateResult:
        """The one result of the request, made from the first picture's (its model, size and hashes resolved)."""
        if self.result is None:
            asked = self.asked
            keep = ("prompt", "negative_prompt", "seed", "variation_seed", "n", "repeat")
            request = first.request.replace(**{name: getattr(asked, name) for name in keep})
            self.result = TemplateResult(
                request=request,
                model_name=first.model_name,
                steps_total=first.steps_total,
                params=dict(first.params),
                prompts=[picture.prompt for picture in self.pictures],
                negative_prompts=[picture.negative_prompt for picture in self.pictures],
                template=asked.prompt,
                negative_template=asked.negative_prompt,
            )
        return self.result


def render_template(
    engine: Any,
    request: PaintRequest,
    progress: Progress,
    stop: threading.Event | None,
    pictures: Pictures | None,
) -> PaintResult:
    """Paint a template request picture by picture on `engine`, reporting to `progress` as one request.

    Returns the gathered `TemplateResult` (also the engine's ``last_result``); a stop or interrupt ends it after the
    picture it stopped, keeping the pictures made.
    """
    asked, planned, notes = plan_pictures(request)
    for note in notes:
        progress.notice(note)
    stop = stop or threading.Event()
    gather = _Gather(progress, asked, planned)
    elapsed = 0.0
    for index, picture in enumerate(planned):
        gather.index = index
        try:
            made = engine.generate(picture, gather, stop, pictures)
        except KeyboardInterrupt:  # outside the denoising loop (loading): keep the pictures already made
            if gather.result is None:
                raise
            gather.result.stopped_by, gather.result.interrupted_at = "interrupt", 0
            break
        elapsed += made.elapsed
        if made.interrupted:
            break
        if stop.is_set() and index + 1 < len(planned):  # stopped between two pictures: the next is not begun
            gather.result.stopped_by, gather.result.interrupted_at = "stop", made.steps_total  # type: ignore[union-attr]
            break
    result = gather.result
    assert result is not None  # the first picture's batch made it
    result.elapsed = elapsed
    engine.last_result = result
    progress.finish(result)
    return result
