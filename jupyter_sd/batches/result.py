"""What a batch made: `BatchItem` (one request and its fate) and `BatchResult` (counts, files, failures, a table)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..painting.templates import picture_count
from ..recipe.request import PaintRequest
from ..recipe.result import Outcome


@dataclass
class BatchItem:
    """One request of a batch and what became of it."""

    where: str
    """Its source: ``file:line``, a PNG's name or ``item N``."""
    request: PaintRequest | None
    key: str = ""
    status: str = "pending"
    """``painted``, ``skipped`` (already saved), ``failed``, ``invalid`` (not run), ``stopped`` or ``pending``."""
    paths: list[Path] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    reason: str = ""
    worker: str = ""
    """The Ray actor that painted it (empty locally)."""
    seconds: float = 0.0
    """Time spent painting it (on its Ray worker, or here), without waiting or saving."""
    times: dict[str, float] = field(default_factory=dict)
    """Wall-clock moments (``time.time()``) on Ray: ``start``/``end`` of painting on the worker, ``saved`` here."""

    @property
    def images(self) -> int:
        """How many pictures the request makes."""
        return picture_count(self.request) if self.request else 0


@dataclass
class BatchResult(Outcome):
    """What a batch made: counts, files, failures with their reasons, and a table of every request."""

    items: list[BatchItem]
    elapsed: float = 0.0
    first_image_s: float | None = None
    """Seconds from the start until the first picture was on disk."""
    stopped_by: str | None = None
    """``"stop"`` or ``"interrupt"`` when the batch ended before every request was painted."""
    cluster: str = "local"
    save_seconds: float = 0.0
    """Time the notebook spent saving pictures sent back by Ray workers (the part all workers share)."""

    def _with(self, status: str) -> list[BatchItem]:
        return [item for item in self.items if item.status == status]

    @property
    def painted(self) -> int:
        """Requests painted by this run."""
        return len(self._with("painted"))

    @property
    def skipped(self) -> int:
        """Requests already saved by an earlier run, not painted again."""
        return len(self._with("skipped"))

    @property
    def failures(self) -> list[tuple[str, str]]:
        """``(where, reason)`` of every request that failed or was invalid."""
        return [(item.where, item.reason) for item in self.items if item.status in ("failed", "invalid")]

    @property
    def paths(self) -> list[Path]:
        """Files saved by this run, in request order."""
        return [path for item in self._with("painted") for path in item.paths]

    @property
    def images(self) -> list[Any]:
        """The pictures saved by this run, read back from their files (a batch keeps none in memory)."""
        from PIL import Image

        pictures = []
        for path in self.paths:
            with Image.open(path) as image:
                pictures.append(image.copy())
        return pictures

    def rows(self) -> list[dict[str, Any]]:
        """One row per request: where, prompt, status, seeds, files, reason, worker."""
        return [
            {
                "where": item.where,
                "prompt": item.request.prompt if item.request else "",
                "status": item.status,
                "seeds": list(item.seeds),
                "files": [path.name for path in item.paths],
                "reason": item.reason,
                "worker": item.worker,
            }
            for item in self.items
        ]

    def summary(self) -> str:
        """One line: how many painted, skipped, failed, in how long."""
        images = len(self.paths)
        parts = [f"{self.painted} painted ({images} image{'s' if images != 1 else ''}) in {self.elapsed:.1f} s"]
        if self.skipped:
            parts.append(f"{self.skipped} already saved")
        if self._with("failed"):
            parts.append(f"{len(self._with('failed'))} failed")
        if self._with("invalid"):
            parts.append(f"{len(self._with('invalid'))} invalid (not run)")
        if self.interrupted:
            parts.append(f"stopped ({len(self._with('pending')) + len(self._with('stopped'))} not finished)")
        if self.paths:
            parts.append(f"in {self.paths[0].parent}")
        return f"batch ({self.cluster}): " + " · ".join(parts)

    def __repr__(self) -> str:
        lines = [self.summary()] + [f"  {where}: {reason}" for where, reason in self.failures]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        import html

        rows = "".join(
            "<tr>"
            + "".join(f"<td>{html.escape(str(value))}</td>" for value in (r["where"], r["status"], r["prompt"][:60]))
            + f"<td>{html.escape(', '.join(r['files'][:4]))}</td><td>{html.escape(r['reason'])}</td></tr>"
            for r in self.rows()[:200]
        )
        head = "<tr><th>where</th><th>status</th><th>prompt</th><th>files</th><th>reason</th></tr>"
        return f"<p><code>{html.escape(self.summary())}</code></p><table>{head}{rows}</table>"
