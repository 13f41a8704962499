"""How long `charrnn train --help` takes to answer: the median of 10 runs of
`python -m charrnn train --help` (wall clock, a fresh interpreter each), and with --against
DIR the same for another checkout, the two alternating so that both see the same machine.

    python scripts/bench_startup.py
    python scripts/bench_startup.py --against ../main      # before and after, one run
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import _bench


def seconds(checkout: Path, command: list[str]) -> float:
    """Wall-clock seconds of one `python -m charrnn COMMAND` run from `checkout` (its working
    directory too: `-m` puts that first on the import path)."""
    env = dict(os.environ, PYTHONPATH=str(checkout))
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "charrnn", *command],
        env=env,
        cwd=checkout,
        capture_output=True,
        check=True,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--against", type=Path, help="another checkout to time alongside")
    args = parser.parse_args()
    checkouts = {"this checkout": _bench.REPO}
    if args.against is not None:
        checkouts[str(args.against)] = args.against.resolve()
    command = ["train", "--help"]
    times: dict[str, list[float]] = {name: [] for name in checkouts}
    for _ in range(args.runs):
        for name, path in checkouts.items():
            times[name].append(seconds(path, command))
    print(f"charrnn {' '.join(command)}: median of {args.runs} runs")
    for name, values in times.items():
        print(f"  {name:<30} {statistics.median(values):.3f} s (min {min(values):.3f} s)")
    if args.against is not None:
        here, there = (statistics.median(v) for v in times.values())
        print(f"  ratio {there / here:.2f}")


if __name__ == "__main__":
    main()
