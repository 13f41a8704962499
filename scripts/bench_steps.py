"""Learning per step: charrnn and a PyTorch stack trained for the same number of steps on the
same tinyshakespeare streams, validation loss at the same steps.

Time does not enter, so the two run side by side, one BLAS thread each, and the figures do
not depend on the machine's load. It tells a difference in what a step learns (initialisation,
dropout placement, optimizer) apart from a difference in speed, which bench_quality.py mixes.
charrnn takes `charrnn train`'s settings with --set key=value (cast as bench_quality.py casts
them); the peer mirrors cell, layers, hidden, dropout, seq_len, batch, lr and clip (Adam, no
schedule, so give charrnn --set schedule=constant --set warmup=0 for a like-for-like run).

    python scripts/bench_steps.py --steps 1500 --set cell=lstm --set layers=2 \\
        --set hidden=256 --set dropout=0.2 --set seq_len=50 --set weight_drop=0 \\
        --set schedule=constant --set warmup=0
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import _bench


def run_charrnn(steps: int, evals: list[int], overrides: dict) -> None:
    """Train charrnn for `steps`, printing one JSON line per evaluation."""
    from bench_quality import parse_settings

    import charrnn
    from charrnn.training import Observer, TrainConfig

    class Log(Observer):
        def on_eval(self, record, sample):
            if record["step"] in evals:
                print(json.dumps({"step": record["step"], "val": record["val_loss"]}), flush=True)

    settings = parse_settings(overrides)
    every = evals[0]
    config = TrainConfig(**{"sample_length": 0, **settings, "steps": steps, "eval_every": every})
    text = _bench.SHAKESPEARE.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        charrnn.train(text, config, Path(tmp) / "run", observer=Log())


def run_torch(steps: int, evals: list[int], overrides: dict) -> None:
    """Train the PyTorch stack of the same settings for `steps`, one JSON line per evaluation."""
    import torch
    from bench_quality import parse_settings
    from peer_torch import TorchTrainer, corpus_streams

    from charrnn.training import TrainConfig

    torch.set_num_threads(1)
    config = TrainConfig(**parse_settings(overrides))
    text = _bench.SHAKESPEARE.read_text(encoding="utf-8")
    B, T = config.batch, config.seq_len
    vocab_size, x_all, y_all, val_ids = corpus_streams(text, config.val_fraction, B, T)
    if config.eval_symbols is not None:  # the first ones, as charrnn's --eval-symbols
        val_ids = val_ids[: config.eval_symbols]
    trainer = TorchTrainer(
        vocab_size,
        config.hidden,
        B,
        T,
        lr=config.lr,
        clip=config.clip,
        cell=config.cell,
        layers=config.layers,
        dropout=config.dropout,
    )
    for step in range(steps):
        trainer.step_of_walk(x_all, y_all, step)
        if step + 1 in evals:
            val = trainer.evaluate(val_ids)
            print(json.dumps({"step": step + 1, "val": val}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--worker", choices=("charrnn", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.set)
    evals = list(range(args.eval_every, args.steps + 1, args.eval_every))
    if args.worker:
        _bench.set_threads(1)
        (run_charrnn if args.worker == "charrnn" else run_torch)(args.steps, evals, overrides)
        return
    print(f"tinyshakespeare, {args.steps} steps, settings {overrides}, one thread each")
    workers = {"charrnn": None}
    if _bench.torch_available():
        workers["torch"] = None
    else:
        print("torch not importable: charrnn alone")
    for name in workers:
        cmd = [sys.executable, __file__, "--worker", name, "--steps", str(args.steps)]
        cmd += ["--eval-every", str(args.eval_every)]
        cmd += [f"--set={item}" for item in args.set]
        workers[name] = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    results = {}
    for name, proc in workers.items():
        out, _ = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"{name} worker failed with exit code {proc.returncode}")
        results[name] = {r["step"]: r["val"] for r in map(json.loads, out.splitlines())}
    print(f"{'step':>7} " + " ".join(f"{name + ' val':>12}" for name in results))
    for step in evals:
        row = " ".join(f"{results[name].get(step, float('nan')):>12.4f}" for name in results)
        print(f"{step:>7,} {row}")


if __name__ == "__main__":
    main()
