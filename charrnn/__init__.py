"""charrnn: character-level text generation with a recurrent network in NumPy.

The public names load on first use (PEP 562), so that `charrnn --help` answers before NumPy is
imported; `import charrnn` alone imports nothing heavy."""

from __future__ import annotations

import importlib
from typing import Any

from charrnn.version import __version__ as __version__

# Each public name and the module that defines it.
_PUBLIC = {
    "Run": "charrnn.checkpoint",
    "load": "charrnn.checkpoint",
    "TextFile": "charrnn.corpus",
    "TextFiles": "charrnn.corpus",
    "CharRNNError": "charrnn.errors",
    "CheckpointError": "charrnn.errors",
    "ConfigError": "charrnn.errors",
    "CorpusError": "charrnn.errors",
    "DivergenceError": "charrnn.errors",
    "DownloadError": "charrnn.errors",
    "ExportError": "charrnn.errors",
    "RunInUseError": "charrnn.errors",
    "VocabError": "charrnn.errors",
    "export": "charrnn.exporters",
    "Trace": "charrnn.inspect",
    "trace": "charrnn.inspect",
    "CharRNN": "charrnn.model",
    "train": "charrnn.notebook",
    "Observer": "charrnn.observe",
    "StepStats": "charrnn.observe",
    "Sample": "charrnn.sample",
    "Sampler": "charrnn.sample",
    "generate": "charrnn.sample",
    "generate_many": "charrnn.sample",
    "generate_samples": "charrnn.sample",
    "TrainConfig": "charrnn.training",
    "TrainResult": "charrnn.training",
    "evaluate": "charrnn.training",
    "Vocab": "charrnn.vocab",
}

__all__ = sorted([*_PUBLIC, "__version__"])


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use."""
    if name not in _PUBLIC:
        raise AttributeError(f"module 'charrnn' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
