"""The package imports and exposes its public API."""

import charrnn


def test_public_api():
    for name in ("CharRNN", "Vocab", "generate", "load", "train", "TrainConfig"):
        assert hasattr(charrnn, name), name
    assert charrnn.__version__.count(".") == 2
