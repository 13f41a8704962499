"""`charrnn.train`: training as `training.train` does it, and in a Jupyter notebook with
rich's progress bar and evaluation lines in the cell, as the CLI shows them on a terminal.

The choice sits above training, so training never reaches up to the rich views.
"""

from __future__ import annotations

import functools

from charrnn import training


@functools.wraps(training.train)
def train(*args, **kwargs) -> training.TrainResult:
    if kwargs.get("observer") is not None or not _in_jupyter():
        return training.train(*args, **kwargs)
    from charrnn.progress import RichObserver, console

    config = kwargs["config"] if "config" in kwargs else args[1]
    shown = RichObserver(console(), config.steps, config.minutes, config.eval_every)
    try:
        return training.train(*args, **{**kwargs, "observer": shown})
    finally:
        shown.stop()


def _in_jupyter() -> bool:
    """A notebook's kernel (rich's own test), read without importing rich elsewhere."""
    from rich.console import Console

    return Console().is_jupyter
