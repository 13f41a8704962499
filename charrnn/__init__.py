"""charrnn: character-level text generation with a recurrent network in NumPy."""

__version__ = "0.1.0"

from charrnn.checkpoint import Run, load
from charrnn.corpus import TextFile, TextFiles
from charrnn.errors import (
    CharRNNError,
    CheckpointError,
    ConfigError,
    CorpusError,
    DivergenceError,
    DownloadError,
    RunInUseError,
    VocabError,
)
from charrnn.inspect import Trace, trace
from charrnn.model import CharRNN
from charrnn.sample import Sampler, generate, generate_many
from charrnn.training import TrainConfig, TrainResult, evaluate, train
from charrnn.vocab import Vocab

__all__ = [
    "CharRNN",
    "CharRNNError",
    "CheckpointError",
    "ConfigError",
    "CorpusError",
    "DivergenceError",
    "DownloadError",
    "Run",
    "RunInUseError",
    "Sampler",
    "TextFile",
    "TextFiles",
    "Trace",
    "TrainConfig",
    "TrainResult",
    "Vocab",
    "VocabError",
    "__version__",
    "evaluate",
    "generate",
    "generate_many",
    "load",
    "trace",
    "train",
]
