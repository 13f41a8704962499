"""What training tells the outside while it runs, and how the outside asks it to stop.

The protocol lives below every module that speaks it (training reports, the rich views
draw), so neither imports the other: this module imports nothing of the package.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class StepStats:
    """What the observer hears after every step."""

    step: int
    loss: float
    lr: float
    grad_norm: float
    chars_per_sec: float
    elapsed: float
    progress: float  # fraction of the step or time budget done


class Observer:
    """Hooks for progress reporting; the CLI draws them, a notebook may ignore them."""

    def on_start(self, info: dict) -> None: ...

    def on_step(self, stats: StepStats) -> None: ...

    def on_eval(self, record: dict, sample: str) -> None: ...

    def on_checkpoint(self, path: Path) -> None: ...

    def on_encode(self, what: str, done: int, total: int) -> None:
        """Progress of reading ("reading", then "encoding") a corpus file: bytes done of total."""


class StopRequest:
    """A flag that training polls between steps (calling it) and anyone may raise: a signal
    handler, a log that can no longer be written, a notebook's interrupt."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> bool:
        return self.requested
