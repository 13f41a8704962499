"""One BLAS thread for a stretch of small products: waking a second thread for each costs more
than it gives (H 128, B 64: a recurrence product takes ~22 us on one thread, ~30 us on two).

Works on the OpenBLAS that NumPy's wheels bundle, found beside NumPy; with any other BLAS,
or none found, it does nothing. The count is process-wide while the block runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
from collections.abc import Callable, Iterator

import numpy as np


def _openblas_thread_functions() -> tuple[Callable[[], int], Callable[[int], None]] | None:
    """(get, set) of the bundled OpenBLAS's thread count, or None."""
    numpy_dir = os.path.dirname(np.__file__)
    candidates = glob.glob(os.path.join(numpy_dir + ".libs", "*openblas*"))  # Linux, Windows
    candidates += glob.glob(os.path.join(numpy_dir, ".dylibs", "*openblas*"))  # macOS
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", ""):
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                set_ = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and set_ is not None:
                    get.argtypes, get.restype = [], ctypes.c_int
                    set_.argtypes, set_.restype = [ctypes.c_int], None
                    return get, set_
    return None


_THREAD_FUNCTIONS = _openblas_thread_functions()


def available() -> bool:
    """Whether `one_thread` can change the thread count of NumPy's BLAS here."""
    return _THREAD_FUNCTIONS is not None


def num_threads() -> int | None:
    """NumPy's BLAS thread count now, or None when it cannot be read."""
    return None if _THREAD_FUNCTIONS is None else _THREAD_FUNCTIONS[0]()


@contextlib.contextmanager
def one_thread(enabled: bool = True) -> Iterator[None]:
    """Run the block with one BLAS thread (when `enabled`); the count is restored after."""
    if not enabled or _THREAD_FUNCTIONS is None:
        yield
        return
    get, set_ = _THREAD_FUNCTIONS
    previous = get()
    set_(1)
    try:
        yield
    finally:
        set_(previous)
