"""What a batch has saved already: each picture's JSON chunk carries the key of the request that painted it.

A rerun finds saved pictures by that key and skips their requests; Ray workers stamp the same key.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..painting import session as painter
from ..recipe.request import PaintRequest
from .result import BatchItem

BATCH_KEY = "batch_key"
"""The JSON-chunk key holding the hash of the request that painted a picture (how a rerun knows what is done)."""
_NOT_PICTURE = {"outdir", "save", "save_incomplete", "preview", "preview_interval", "device"}
"""Options that change where and how a picture is kept or watched, not the picture: left out of its key."""


def request_key(request: PaintRequest, occurrence: int = 0) -> str:
    """A hash of everything in a request that shapes its pictures: the key a rerun finds saved pictures by.

    Options left at their defaults are left out, so a field added to `PaintRequest` later does not change the keys
    of pictures saved before. `occurrence` tells apart identical requests of one batch (a prompt listed twice
    paints twice).
    """
    defaults = PaintRequest()
    shape = {
        name: value
        for name, value in request.to_dict().items()
        if name not in _NOT_PICTURE and value != getattr(defaults, name)
    }
    text = json.dumps([shape, occurrence], sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


class SavedIndex:
    """Which batch keys a folder's PNGs carry (read from their JSON chunks), refreshed cheaply by new names only.

    Interrupted pictures (saved with ``--save-incomplete``) don't count as done.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self._read: set[str] = set()
        self._keys: dict[str, list[Path]] = {}

    def refresh(self) -> SavedIndex:
        """Read the JSON chunk of every PNG not seen yet."""
        if not self.folder.is_dir():
            return self
        from PIL import Image

        from ..painting.store import REQUEST_KEY

        for entry in os.scandir(self.folder):
            if entry.name in self._read or entry.name.startswith(".") or not entry.name.endswith(".png"):
                continue
            self._read.add(entry.name)
            try:
                with Image.open(entry.path) as image:
                    payload = json.loads(image.info.get(REQUEST_KEY, "{}"))
            except (OSError, ValueError):
                continue
            key = payload.get(BATCH_KEY) if isinstance(payload, dict) else None
            if key and payload.get("interrupted_at") is None:
                self._keys.setdefault(key, []).append(Path(entry.path))
        return self

    def saved(self, key: str) -> list[Path]:
        """The files already saved for `key`, in name order."""
        return sorted(self._keys.get(key, []))


def skip_saved(items: list[BatchItem], user_ns: Mapping[str, Any] | None) -> None:
    """Mark ``skipped`` every pending request whose pictures are all in its output folder already."""
    indexes: dict[Path, SavedIndex] = {}
    for item in items:
        if item.status != "pending" or not item.request.save:
            continue
        folder = painter.output_folder(item.request, user_ns)
        index = indexes.get(folder) or indexes.setdefault(folder, SavedIndex(folder).refresh())
        saved = index.saved(item.key)
        if len(saved) >= item.images:
            item.status, item.paths = "skipped", saved
