"""charrnn: character-level text generation with a recurrent network in NumPy."""

from charrnn.checkpoint import Run, load
from charrnn.corpus import TextFile, TextFiles
from charrnn.errors import (
    CharRNNError,
    CheckpointError,
    ConfigError,
    CorpusError,
    DivergenceError,
    DownloadError,
    ExportError,
    RunInUseError,
    VocabError,
)
from charrnn.exporters import export
from charrnn.inspect import Trace, trace
from charrnn.model import CharRNN
from charrnn.notebook import train
from charrnn.observe import Observer, StepStats
from charrnn.sample import Sample, Sampler, generate, generate_many, generate_samples
from charrnn.training import TrainConfig, TrainResult, evaluate
from charrnn.version import __version__
from charrnn.vocab import Vocab

__all__ = [
    "CharRNN",
    "CharRNNError",
    "CheckpointError",
    "ConfigError",
    "CorpusError",
    "DivergenceError",
    "DownloadError",
    "ExportError",
    "Observer",
    "Run",
    "RunInUseError",
    "Sample",
    "Sampler",
    "StepStats",
    "TextFile",
    "TextFiles",
    "Trace",
    "TrainConfig",
    "TrainResult",
    "Vocab",
    "VocabError",
    "__version__",
    "evaluate",
    "export",
    "generate",
    "generate_many",
    "generate_samples",
    "load",
    "trace",
    "train",
]
