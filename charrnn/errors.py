"""Typed errors: the library raises these, the CLI turns each into one line and exit code 2."""


class CharRNNError(Exception):
    """A problem the user can fix (bad input, bad file, bad option); never a bug."""


class CorpusError(CharRNNError):
    """The training or evaluation text cannot be used: missing, empty, binary or too short."""


class VocabError(CharRNNError):
    """Text holds symbols the vocabulary does not know."""


class CheckpointError(CharRNNError):
    """A run directory or checkpoint is missing, corrupt, foreign or of another format version."""


class ConfigError(CharRNNError):
    """An option or hyperparameter is out of its allowed range."""


class DivergenceError(CharRNNError):
    """Training produced a non-finite loss or gradient."""


class RunInUseError(CheckpointError):
    """Another charrnn process is training in the run directory: one writer at a time."""


class DownloadError(CharRNNError):
    """A corpus could not be downloaded: offline, an HTTP error, a hash mismatch, a full disk."""


class ExportError(CharRNNError):
    """A model cannot be exported: an unknown format, a missing package, an unwritable output."""
