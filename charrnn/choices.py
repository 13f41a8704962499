"""The names and bounds that settings choose among: cells, optimizers, export formats, symbol
units and the model's size limits. Defined here once and importable without NumPy, so that the
command line can build its options (and answer --help) before the heavy modules load."""

CELL_NAMES = ("rnn", "lstm", "gru")  # the order of charrnn.cells.CELLS
OPTIMIZER_NAMES = ("adam", "adagrad", "rmsprop", "sgd")  # the order of charrnn.optim.OPTIMIZERS
EXPORT_FORMATS = ("onnx", "safetensors", "html")  # what `charrnn export` writes
UNITS = ("grapheme", "codepoint")  # a symbol: a user-perceived character, or a code point
MAX_LAYERS = 8
MAX_HIDDEN = 16384
