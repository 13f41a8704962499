"""Which candidate model learns more from the same characters: each trained on tinyshakespeare
(first 90% train, last 10% validation) for budgets of equal characters (steps x B x T), with
its own defaults and a schedule that spans the budget; validation over the whole split with
carried state. Steps, not time, so the figures do not depend on the machine or its load.

    python scripts/bench_crossover.py --millions 0.5 1 2 4 8
    python scripts/bench_crossover.py --candidates lstm --millions 8   # one at a time, in parallel

Each run prints one JSON line: candidate, characters, steps, validation and training nats/char
at the end, seconds taken; charrnn.budget.CURVES holds the figures.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import _bench


def run(text: str, name: str, characters: float) -> dict:
    """Train candidate `name` (charrnn.budget.CANDIDATES) for about `characters` characters."""
    import charrnn
    from charrnn.budget import CANDIDATES
    from charrnn.training import TrainConfig

    preset = CANDIDATES[name]
    probe = TrainConfig(**preset)
    steps = max(1, round(characters / (probe.batch * probe.seq_len)))
    config = TrainConfig(**{**preset, "steps": steps, "eval_every": steps, "sample_length": 0})
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = charrnn.train(text, config, Path(tmp) / "run")
    return {
        "candidate": name,
        "characters": steps * config.batch * config.seq_len,
        "steps": steps,
        "val": result.val_loss,
        "train": result.train_loss,
        "seconds": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", nargs="?", type=Path, default=_bench.SHAKESPEARE)
    parser.add_argument("--candidates", nargs="+", default=["rnn", "lstm"])
    parser.add_argument("--millions", nargs="+", type=float, default=[1, 2, 4, 8])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    _bench.set_threads(args.threads)
    text = args.file.read_text(encoding="utf-8")
    print(f"{args.file.name}: {len(text):,} characters; BLAS {_bench.blas_info()}", flush=True)
    for millions in args.millions:
        for name in args.candidates:
            r = run(text, name, millions * 1e6)
            print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
