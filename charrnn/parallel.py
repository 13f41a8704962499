"""Data parallelism over the B streams of a chunk: each worker runs the forward and backward of
its slice of the streams on one core, the gradients are summed in a fixed order, and the caller
makes one optimizer step with them.

Workers are threads: NumPy and OpenBLAS release the GIL inside their loops, so the workers
share the weights and the ids without copying, and each runs its products on one BLAS thread
(several BLAS threads per product lose to one worker per core: their elementwise passes between
products run on one core). With one worker every call is the model's own, the reference the
tests compare the others with.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from charrnn import blas
from charrnn.model import CharRNN


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worker_count(asked: int | None, streams: int) -> int:
    """The workers to run: as asked, else the usable cores; never more than the streams."""
    return max(1, min(asked or usable_cores(), streams))


def stream_slices(batch: int, workers: int) -> list[slice]:
    """`workers` contiguous slices of `batch` streams (fewer when there are fewer streams),
    their sizes differing by at most one."""
    n = max(1, min(workers, batch))
    bounds = [batch * i // n for i in range(n + 1)]
    return [slice(bounds[i], bounds[i + 1]) for i in range(n)]


class DataParallel:
    """`model`'s loss and gradients over a batch of streams, each slice on a worker thread.

    The calls are the model's own (`zero_state`, `loss`, `loss_and_grads`), so training and
    evaluation take either. The workers read `model.params` at every call, so weights replaced
    or updated in place are the ones they use. Close it (or use it in a `with`) to end its
    threads.
    """

    def __init__(self, model: CharRNN, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.model, self.workers = model, workers
        self.replicas = [model] + [model.replica() for _ in range(workers - 1)]
        self.pool = (
            ThreadPoolExecutor(workers - 1, thread_name_prefix="charrnn-worker")
            if workers > 1
            else None
        )

    def __enter__(self) -> DataParallel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the worker threads (after the work they hold)."""
        if self.pool is not None:
            self.pool.shutdown(wait=True)

    def zero_state(self, batch: int) -> np.ndarray:
        return self.model.zero_state(batch)

    def _map(self, work: Callable[[CharRNN, slice], Any], batch: int) -> list[Any]:
        """work(replica, streams) for every slice of the batch, slice 0 on this thread; the
        results in slice order. Every worker has finished when this returns or raises."""
        slices = stream_slices(batch, self.workers)
        for replica in self.replicas:
            replica.params = self.model.params
        errors = np.geterr()  # NumPy's floating-point error handling is per thread: the caller's

        def in_worker(replica: CharRNN, s: slice) -> Any:
            with np.errstate(**errors):
                return work(replica, s)

        with blas.pinned_one_thread():
            futures = [
                self.pool.submit(in_worker, self.replicas[i], s)
                for i, s in enumerate(slices[1:], 1)
            ]
            try:
                first = work(self.replicas[0], slices[0])
            finally:
                for future in futures:  # their buffers are theirs until they end
                    future.exception()
            return [first, *(future.result() for future in futures)]

    def loss(
        self, inputs: np.ndarray, targets: np.ndarray, state0: np.ndarray
    ) -> tuple[float, np.ndarray]:
        """Forward only, as `CharRNN.loss`: (mean nats per symbol, state_T (L, S, B, H))."""
        batch = len(inputs)
        if self.workers == 1 or batch == 1:
            return self.model.loss(inputs, targets, state0)

        def work(replica: CharRNN, s: slice) -> tuple[float, np.ndarray]:
            loss, state = replica.loss(inputs[s], targets[s], state0[:, :, s])
            return loss * inputs[s].size, state

        results = self._map(work, batch)
        nats = sum(nats for nats, _ in results)
        return nats / inputs.size, np.concatenate([state for _, state in results], axis=2)

    def loss_and_grads(
        self,
        inputs: np.ndarray,
        targets: np.ndarray,
        state0: np.ndarray,
        with_dh0: bool = False,
        keep: np.ndarray | None = None,
        hh_keep: np.ndarray | None = None,
    ) -> tuple[float, dict[str, np.ndarray], np.ndarray]:
        """As `CharRNN.loss_and_grads` over the whole batch: each worker's share of the mean
        (divided by all T*B positions), summed worker by worker in slice order."""
        batch, T = inputs.shape
        if self.workers == 1 or batch == 1:
            return self.model.loss_and_grads(
                inputs, targets, state0, with_dh0=with_dh0, keep=keep, hh_keep=hh_keep
            )
        L, H = self.model.layers, self.model.hidden_size
        # Dropout scales are drawn for the whole batch, time-major: (L, T, B, H) by stream.
        keep_by_stream = None if keep is None else np.reshape(keep, (L, T, batch, H))

        def work(replica: CharRNN, s: slice) -> tuple[float, dict, np.ndarray]:
            keep_slice = None
            if keep_by_stream is not None:
                keep_slice = np.ascontiguousarray(keep_by_stream[:, :, s]).reshape(L, -1, H)
            return replica.loss_and_grads(
                inputs[s],
                targets[s],
                state0[:, :, s],
                with_dh0=with_dh0,
                keep=keep_slice,
                hh_keep=hh_keep,
                positions=inputs.size,
            )

        results = self._map(work, batch)
        loss, grads, _ = results[0]
        for more_loss, more_grads, _ in results[1:]:
            loss += more_loss
            for name, grad in grads.items():
                if name != "h0":
                    grad += more_grads[name]
        if with_dh0:  # dL/dstate0 is per stream: side by side, not summed
            grads["h0"] = np.concatenate([g["h0"] for _, g, _ in results], axis=2)
        return loss, grads, np.concatenate([state for *_, state in results], axis=2)
