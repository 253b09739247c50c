"""The engine room: loading, conditioning, the passes of each mode, previews.

Everything here knows nothing of widgets, displays or files. `Engine` and the `Progress` protocol are the public
face; the modules beside them are what only the engine uses.
"""

from .engine import BUNDLED_NOTICE, Engine
from .progress import Fanout, Progress

__all__ = ["BUNDLED_NOTICE", "Engine", "Fanout", "Progress"]
