"""One BLAS thread for a stretch of small products: waking a second thread for each costs more
than it gives (H 128, B 64: a recurrence product takes ~22 us on one thread, ~30 us on two).

threadpoolctl finds and sets NumPy's BLAS (OpenBLAS, MKL, BLIS, ...) whichever wheel or
distribution it came from; the controller is made once, so a block costs ~11 us to enter and
leave. The count is process-wide while the block runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np  # noqa: F401  (loads the BLAS the controller must see)
from threadpoolctl import ThreadpoolController

_BLAS = ThreadpoolController().select(user_api="blas")


def available() -> bool:
    """Whether `one_thread` can change the thread count of NumPy's BLAS here."""
    return len(_BLAS.lib_controllers) > 0


def num_threads() -> int | None:
    """NumPy's BLAS thread count now (the largest, if several BLAS are loaded), or None."""
    counts = [lib.get_num_threads() for lib in _BLAS.lib_controllers]
    return max(counts, default=None)


_pinned = 0  # how many `pinned_one_thread` blocks are open


@contextlib.contextmanager
def one_thread(enabled: bool = True) -> Iterator[None]:
    """Run the block with one BLAS thread (when `enabled`); the count is restored after."""
    if not enabled or _pinned or not _BLAS.lib_controllers:
        yield
        return
    with _BLAS.limit(limits=1):
        yield


@contextlib.contextmanager
def pinned_one_thread() -> Iterator[None]:
    """One BLAS thread for a block in which several Python threads run products at once (the
    workers of `parallel`): `one_thread` inside it leaves the count alone, since setting a
    process-wide count while other threads multiply would race."""
    global _pinned
    with one_thread():
        _pinned += 1
        try:
            yield
        finally:
            _pinned -= 1
