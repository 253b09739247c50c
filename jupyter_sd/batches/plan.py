"""A batch's plan: read the source, overlay the batch's options, validate every request and key it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..painting import session as painter
from ..recipe.options import one_line
from ..recipe.values import coerce_options
from .result import BatchItem
from .saved import request_key
from .sources import read_entries


class InvalidBatch(ValueError):
    """Some requests of a batch are invalid: `invalid` lists every ``(where, reason)``; the message the first few."""

    SHOWN = 3

    def __init__(self, invalid: list[tuple[str, str]], total: int) -> None:
        self.invalid = [(where, one_line(reason)) for where, reason in invalid]
        listed = "; ".join(f"{where}: {reason}" for where, reason in self.invalid[: self.SHOWN])
        more = f"; and {len(invalid) - self.SHOWN} more" if len(invalid) > self.SHOWN else ""
        super().__init__(
            f"batch: {len(invalid)} of {total} requests are invalid, nothing was painted (--skip-bad paints the "
            f"rest): {listed}{more}"
        )

    def lines(self) -> list[str]:
        """Every invalid request as ``file:line: reason``, one per line."""
        return [f"{where}: {reason}" for where, reason in self.invalid]


def plan(source: Any, options: Mapping[str, Any], skip_bad: bool = False) -> list[BatchItem]:
    """Read `source`, overlay `options` on each entry (over the kernel's defaults) and validate every request.

    Returns
    -------
    list of BatchItem
        Valid requests as ``pending`` with their keys; with `skip_bad`, invalid ones as ``invalid``.

    Raises
    ------
    ValueError
        For a bad batch option; `InvalidBatch` (without `skip_bad`) listing every invalid entry as ``file:line:
        reason``.
    """
    options = coerce_options(options)  # a batch-wide ``size`` becomes width and height before it overlays entries
    painter.new_request(**options).validate()  # a bad option for the whole batch is one message, not one per line
    items: list[BatchItem] = []
    seen: dict[str, int] = {}
    for entry in read_entries(source):
        if entry.error is not None:
            items.append(BatchItem(entry.where, None, status="invalid", reason=entry.error))
            continue
        try:
            request = painter.new_request(**{**entry.options, **options}).validate()
        except ValueError as error:
            items.append(BatchItem(entry.where, None, status="invalid", reason=str(error)))
            continue
        base = request_key(request)
        occurrence = seen[base] = seen.get(base, -1) + 1
        items.append(BatchItem(entry.where, request, key=request_key(request, occurrence)))
    bad = [(item.where, item.reason) for item in items if item.status == "invalid"]
    if bad and not skip_bad:
        raise InvalidBatch(bad, len(items))
    if not any(item.status == "pending" for item in items):
        raise ValueError("batch: nothing to paint (no valid request in the input)")
    return items
