"""Text quality per minute: the best validation loss reached within a wall-clock budget.

charrnn trains with `charrnn train`'s defaults (override any with --set key=value) for
--minutes on tinyshakespeare (first 90% train, last 10% validation, whole split evaluated
with carried state); with --peer, PyTorch's vanilla RNN (H 512, Adam 2e-3, no schedule,
B 64, T 100, clip 5) then gets the same budget and the same evaluation.

    python scripts/bench_quality.py --minutes 10 --peer
    python scripts/bench_quality.py --minutes 3 --set hidden=384 --set lr=3e-3
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tempfile
import time
from pathlib import Path

import _bench

LN2 = math.log(2)


def run_charrnn(text: str, minutes: float, overrides: dict, eval_seconds: float) -> dict:
    import charrnn
    from charrnn.training import Observer, TrainConfig

    defaults = TrainConfig()
    fields = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    for key, value in overrides.items():
        if key not in fields:
            raise SystemExit(f"unknown setting {key!r}; settings: {', '.join(fields)}")
        kind = type(getattr(defaults, key)) if getattr(defaults, key) is not None else float
        overrides[key] = kind(value)

    class Log(Observer):
        def on_eval(self, record, sample):
            print(
                f"  charrnn step {record['step']:>6,}  {record['elapsed']:7.1f}s  "
                f"val {record['val_loss']:.4f} nats/char  train {record['train_loss']:.4f}  "
                f"{record['chars_per_sec']:,.0f} chars/s",
                flush=True,
            )

    config = TrainConfig(minutes=minutes, sample_length=0, **overrides)
    if "eval_every" not in overrides:  # about every eval_seconds, from a quick speed probe
        config.eval_every = max(50, int(eval_seconds * probe_steps_per_sec(text, config)))
    print(f"charrnn config: {config}")
    with tempfile.TemporaryDirectory() as tmp:
        result = charrnn.train(text, config, Path(tmp) / "run", observer=Log())
    best = min(result.history, key=lambda r: r["val_loss"])
    return {
        "best": best["val_loss"],
        "at": best["elapsed"],
        "step": best["step"],
        "chars_per_sec": result.chars_per_sec,
    }


def probe_steps_per_sec(text: str, config) -> float:
    import numpy as np

    from charrnn.model import CharRNN

    model = CharRNN(len(set(text)), config.hidden)
    ids = np.random.default_rng(0).integers(0, model.vocab_size, (config.batch, config.seq_len))
    h = model.zero_state(config.batch)
    model.loss_and_grads(ids, ids, h)
    start = time.perf_counter()
    for _ in range(5):
        model.loss_and_grads(ids, ids, h)
    return 5 / (time.perf_counter() - start) * 0.9  # the optimizer step and the rest


def run_torch(text: str, minutes: float, eval_seconds: float, threads: int) -> dict:
    import numpy as np
    import torch
    from peer_torch import TorchTrainer

    torch.set_num_threads(threads)
    symbols = sorted(set(text))
    index = {s: i for i, s in enumerate(symbols)}
    ids = np.array([index[c] for c in text], np.int64)
    n_val = round(len(ids) * 0.1)
    train_ids, val_ids = ids[: len(ids) - n_val], ids[len(ids) - n_val :]
    B, T = 64, 100
    trainer = TorchTrainer(len(symbols), 512, B, T, lr=2e-3, clip=5.0)
    L = (len(train_ids) - 1) // B
    chunks = L // T
    x_all = torch.as_tensor(train_ids[: B * chunks * T].reshape(B, -1).T.copy())
    y_all = torch.as_tensor(train_ids[1 : B * chunks * T + 1].reshape(B, -1).T.copy())
    start = time.perf_counter()
    next_eval, step, best = eval_seconds, 0, (math.inf, 0.0, 0)
    while True:
        k = step % chunks
        if k == 0:
            trainer.h.zero_()
        trainer.step(x_all[k * T : (k + 1) * T], y_all[k * T : (k + 1) * T])
        step += 1
        elapsed = time.perf_counter() - start
        if elapsed >= next_eval or elapsed >= minutes * 60:
            val = trainer.evaluate(val_ids)
            elapsed_after = time.perf_counter() - start
            print(
                f"  torch   step {step:>6,}  {elapsed_after:7.1f}s  val {val:.4f} nats/char",
                flush=True,
            )
            if val < best[0]:
                best = (val, elapsed_after, step)
            next_eval = elapsed_after + eval_seconds
            if elapsed >= minutes * 60:
                break
    return {
        "best": best[0],
        "at": best[1],
        "step": best[2],
        "chars_per_sec": step * B * T / (time.perf_counter() - start),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", nargs="?", type=Path, default=_bench.SHAKESPEARE)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--peer", action="store_true", help="also train the PyTorch model")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a charrnn TrainConfig default",
    )
    parser.add_argument("--eval-seconds", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-charrnn", action="store_true")
    args = parser.parse_args()
    _bench.set_threads(args.threads)
    text = args.file.read_text(encoding="utf-8")
    overrides = dict(item.split("=", 1) for item in args.set)
    print(
        f"{args.file.name}: {len(text):,} characters, budget {args.minutes:g} min, "
        f"threads {args.threads}"
    )
    results = {}
    if not args.skip_charrnn:
        results["charrnn"] = run_charrnn(text, args.minutes, overrides, args.eval_seconds)
    if args.peer:
        results["pytorch"] = run_torch(text, args.minutes, args.eval_seconds, args.threads)
    print(
        f"{'':8} {'best val nats/char':>18} {'bits/char':>9} {'reached at':>10} "
        f"{'step':>7} {'chars/s':>9}"
    )
    for name, r in results.items():
        print(
            f"{name:8} {r['best']:>18.4f} {r['best'] / LN2:>9.4f} {r['at']:>9.0f}s "
            f"{r['step']:>7,} {r['chars_per_sec']:>9,.0f}"
        )


if __name__ == "__main__":
    main()
