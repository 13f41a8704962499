"""Large corpora: time to the first training step and peak memory of `charrnn train` on a
200 MB text file, the first time (streaming encode into the id cache) and on resume (cache
mapped). The file is generated in a temporary directory (tinyshakespeare repeated with a
line number on every line, so that it is not one short period), never committed.

    python scripts/bench_corpus.py            # 200 MB
    python scripts/bench_corpus.py --mb 50
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _bench


def make_corpus(path: Path, megabytes: int) -> int:
    """Write about `megabytes` MB of text to path; returns its size in bytes."""
    if _bench.SHAKESPEARE.exists():
        lines = _bench.SHAKESPEARE.read_text(encoding="utf-8").splitlines()
    else:
        lines = ["the quick brown fox jumps over the lazy dog"] * 1000
    target, size, n = megabytes * 1_000_000, 0, 0
    with path.open("w", encoding="utf-8") as f:
        while size < target:
            block = "".join(f"{n + i} {line}\n" for i, line in enumerate(lines))
            n += len(lines)
            f.write(block)
            size += len(block.encode())
    return path.stat().st_size


def timed_train(args: list[str]) -> dict:
    """Run `charrnn train ARGS`; seconds until training starts, total seconds, peak RSS."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "charrnn", "train", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, NO_COLOR="1"),
    )
    started = None
    for line in proc.stdout:
        if started is None and line.startswith("run "):  # printed once training begins
            started = time.perf_counter() - start
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"charrnn train failed ({proc.returncode}): {err}")
    return {
        "start_s": started,
        "total_s": time.perf_counter() - start,
        "peak_mb": usage.ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=200, help="corpus size in MB")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    _bench.set_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "big.txt"
        size = make_corpus(corpus, args.mb)
        run = Path(tmp) / "run"
        common = ["--hidden", "128", "--val-fraction", "0.001", "--eval-every", "20"]
        print(f"corpus: {size / 1e6:,.0f} MB; charrnn train {' '.join(common)}")
        first = timed_train([str(corpus), *common, "--steps", "20", "--out", str(run)])
        again = timed_train(["--resume", str(run), "--steps", "40"])
        cache = (run / "corpus.ids.npy").stat().st_size
    print(f"id cache: {cache / 1e6:,.0f} MB")
    print(f"{'':22} {'to first step':>14} {'whole run':>10} {'peak RSS':>10}")
    for name, r in (("first run (encode)", first), ("resume (cached ids)", again)):
        print(f"{name:22} {r['start_s']:>13.1f}s {r['total_s']:>9.1f}s {r['peak_mb']:>7,.0f} MB")


if __name__ == "__main__":
    main()
