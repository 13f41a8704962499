"""Shared benchmark plumbing: worker processes, thread settings, GEMM peak, peak memory.

Each framework runs in its own worker process, so thread pools do not fight and
`ru_maxrss` is that framework's own peak; the parent alternates rounds between workers
so both see the same machine conditions, and reports medians and ratios from one run.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHAKESPEARE = REPO.parent / "shared" / "corpora" / "tinyshakespeare.txt"


def set_threads(n: int) -> None:
    """Pin BLAS/OpenMP thread pools; must run before numpy or torch is imported."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def blas_info() -> str:
    """Which BLAS NumPy runs in this process and with which kernels, from threadpoolctl's
    `threadpool_info()` when it imports (`pip install threadpoolctl`, for benchmarks only),
    else from `numpy.show_runtime()` (which prints the same table when threadpoolctl exists
    and otherwise only NumPy's SIMD extensions)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        import contextlib
        import io

        import numpy as np

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            np.show_runtime()
        simd = re.search(r"'simd_extensions': (\{.*?\})", out.getvalue(), re.S)
        config = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return (
            f"numpy {np.__version__}: BLAS {config.get('name')} {config.get('version')} "
            f"(threadpoolctl not importable: kernel unknown); numpy.show_runtime() SIMD "
            + (" ".join(simd.group(1).split()) if simd else "unknown")
        )
    import numpy as np

    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    if not pools:
        return f"numpy {np.__version__}: no BLAS found by threadpoolctl"
    return f"numpy {np.__version__}: " + "; ".join(
        f"{p['internal_api']} {p.get('version')} {p.get('architecture') or ''} kernels, "
        f"{p.get('threading_layer') or ''} threading, {p['num_threads']} threads"
        for p in pools
    )


def torch_available() -> bool:
    try:
        import importlib.util

        return importlib.util.find_spec("torch") is not None
    except ValueError:
        return False


def corpus_ids(vocab_size: int = 65, n: int = 400_000):
    """Token ids to train on: tinyshakespeare when present, else uniform random ids."""
    import numpy as np

    if SHAKESPEARE.exists():
        text = SHAKESPEARE.read_text(encoding="utf-8")
        symbols = sorted(set(text))
        index = {s: i for i, s in enumerate(symbols)}
        return np.array([index[c] for c in text[:n]], np.int64), len(symbols)
    return np.random.default_rng(0).integers(0, vocab_size, n), vocab_size


def gemm_peak(threads: int) -> dict:
    """Best float32 GFLOP/s of a large square GEMM and of an RNN-shaped (64x512)@(512x512)."""
    import numpy as np

    rng = np.random.default_rng(0)
    out = {}
    for name, (m, k, n), reps in (
        ("square_2048", (2048, 2048, 2048), 6),
        ("rnn_64x512x512", (64, 512, 512), 2000),
    ):
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        c = np.empty((m, n), np.float32)
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(reps):
                np.matmul(a, b, out=c)
            best = min(best, (time.perf_counter() - t) / reps)
        out[name] = 2 * m * k * n / best / 1e9
    return out


class Worker:
    """A benchmark worker process speaking one JSON object per line."""

    def __init__(self, script: str, kind: str, options: dict, threads: int) -> None:
        env = dict(os.environ)
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [sys.executable, script, "--worker", kind, json.dumps(options)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.ready = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.proc.args[3]} died (exit {self.proc.wait()})")
        return json.loads(line)

    def call(self, **command) -> dict:
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> dict:
        final = self.call(op="exit")
        self.proc.wait()
        return final


class WorkerGroup:
    """Several workers of one kind run side by side: each command goes to all of them at once;
    the answer is the first one's, with chars/s summed over all."""

    def __init__(self, script: str, kind: str, options: dict, threads: int, count: int) -> None:
        self.workers = [Worker(script, kind, options, threads) for _ in range(count)]

    def call(self, **command) -> dict:
        for worker in self.workers:
            worker.proc.stdin.write(json.dumps(command) + "\n")
            worker.proc.stdin.flush()
        answers = [worker._read() for worker in self.workers]
        if "chars_per_sec" in answers[0]:
            answers[0]["chars_per_sec"] = sum(a["chars_per_sec"] for a in answers)
        return answers[0]

    def close(self) -> dict:
        finals = [worker.close() for worker in self.workers]
        return {"peak_rss_mb": sum(f["peak_rss_mb"] for f in finals)}


def serve(handlers: dict) -> None:
    """Worker side: answer JSON commands on stdin until {"op": "exit"}."""
    print(json.dumps({"ready": True, "rss_mb": peak_rss_mb()}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        op = command.pop("op")
        if op == "exit":
            print(json.dumps({"peak_rss_mb": peak_rss_mb()}), flush=True)
            return
        print(json.dumps(handlers[op](**command)), flush=True)


def median(xs: list[float]) -> float:
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else 0.5 * (xs[mid - 1] + xs[mid])
