"""A `Progress` that records what the engine reports, and can ask for a stop at a given step."""

from __future__ import annotations

from jupyter_sd.engine import Progress


class Recorder(Progress):
    def __init__(self, stop_at=None, event=None):
        self.steps, self.frames, self.notices = [], [], []
        self.stop_at, self.event = stop_at, event

    def notice(self, text):
        self.notices.append(text)

    def step(self, step, total, previews):
        self.steps.append((step, total))
        if previews:
            self.frames.append(previews)
        if self.stop_at == step:
            self.event.set()
