"""The ipywidgets panel: controls generated from the request's fields, a worker thread, a gallery."""

from .panel import CellControls, Panel

__all__ = ["CellControls", "Panel"]
