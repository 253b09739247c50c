"""A `Progress` that records what the engine reports, and can ask for a stop at a given step."""

from __future__ import annotations

from jupyter_sd.engine import Progress


class Recorder(Progress):
    """Record steps, frames, notices and passes; set `event` at step `stop_at`.

    With ``total=True`` the stop step counts over all passes (a hires run's step 9 is its second pass's 3rd).
    """

    def __init__(self, stop_at=None, event=None, total=False):
        self.steps, self.frames, self.notices, self.phases = [], [], [], []
        self.stop_at, self.event, self.total = stop_at, event, total
        self._offset = self._pass_steps = 0

    def notice(self, text):
        self.notices.append(text)

    def phase(self, label, index, count, steps):
        self.phases.append((label, index, count, steps))
        self._offset += self._pass_steps
        self._pass_steps = steps

    def step(self, step, total, previews):
        self.steps.append((step, total))
        if previews:
            self.frames.append(previews)
        if self.stop_at == (self._offset + step if self.total else step):
            self.event.set()
