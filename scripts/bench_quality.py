"""Text quality per minute: the best validation loss reached within a wall-clock budget.

charrnn trains with `charrnn train --minutes M`'s defaults, which depend on the budget
(TrainConfig.for_budget: the model charrnn.budget picks for M minutes on this machine; override
any TrainConfig field with --set key=value, cast to the field's type; "none" for an optional
one) for --minutes on tinyshakespeare (first 90% train, last 10% validation, whole split
evaluated with carried state); with --peer, a PyTorch model then gets the same budget and the
same evaluation: by default the vanilla RNN (H 512, Adam 2e-3, no schedule, B 64, T 100, clip
5), or any stack of nn.RNN/nn.LSTM/nn.GRU layers with --peer-cell, --peer-layers,
--peer-hidden, --peer-dropout (nn.LSTM's dropout argument: between layers), --peer-seq-len,
--peer-batch and --peer-lr. Both print the BLAS they run on.

    python scripts/bench_quality.py --minutes 10 --peer
    python scripts/bench_quality.py --minutes 3 --set hidden=384 --set lr=3e-3
    # the anchor: PyTorch's 2-layer nn.LSTM, H 256, dropout 0.2, T 50, Adam 2e-3
    python scripts/bench_quality.py --minutes 10 --set cell=lstm --set layers=2 \
        --set hidden=256 --set dropout=0.2 --set seq_len=50 --peer --peer-cell lstm \
        --peer-layers 2 --peer-hidden 256 --peer-dropout 0.2 --peer-seq-len 50 --peer-lr 2e-3
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
CASTS = {"int": int, "float": float, "str": str}


def parse_settings(overrides: dict[str, str]) -> dict:
    """--set values cast to their TrainConfig field's type: by its annotation ("int",
    "float | None", ...; "none" gives None where None is allowed), else by its default's."""
    from charrnn.training import TrainConfig

    defaults = TrainConfig()
    fields = {f.name: str(f.type) for f in dataclasses.fields(TrainConfig)}
    parsed = {}
    for key, text in overrides.items():
        if key not in fields:
            raise SystemExit(f"unknown setting {key!r}; settings: {', '.join(fields)}")
        kinds = [k.strip() for k in fields[key].split("|")]
        if "None" in kinds and text.strip().lower() == "none":
            parsed[key] = None
            continue
        cast = next((CASTS[k] for k in kinds if k in CASTS), None)
        if cast is None:
            default = getattr(defaults, key)
            cast = type(default) if default is not None else float
        try:
            parsed[key] = cast(text)
        except ValueError:
            raise SystemExit(f"setting {key}: {text!r} is not of type {cast.__name__}") from None
    return parsed


def run_charrnn(text: str, minutes: float, overrides: dict, eval_seconds: float) -> dict:
    import charrnn
    from charrnn.model import param_shapes
    from charrnn.training import Observer, TrainConfig

    class Log(Observer):
        def on_eval(self, record, sample):
            print(
                f"  charrnn step {record['step']:>6,}  {record['elapsed']:7.1f}s  "
                f"val {record['val_loss']:.4f} nats/char  train {record['train_loss']:.4f}  "
                f"{record['chars_per_sec']:,.0f} chars/s",
                flush=True,
            )

    config = TrainConfig.for_budget(**{"minutes": minutes, "sample_length": 0, **overrides})
    if "eval_every" not in overrides:  # about every eval_seconds, from a quick speed probe
        config.eval_every = max(50, int(eval_seconds * probe_steps_per_sec(text, config)))
    print(f"charrnn config: {config}")
    shapes = param_shapes(len(set(text)), config.hidden, config.cell, config.layers)
    print(f"charrnn parameters: {sum(math.prod(shape) for shape in shapes.values()):,}")
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

    model = CharRNN(len(set(text)), config.hidden, cell=config.cell, layers=config.layers)
    ids = np.random.default_rng(0).integers(0, model.vocab_size, (config.batch, config.seq_len))
    h = model.zero_state(config.batch)
    model.loss_and_grads(ids, ids, h)
    start = time.perf_counter()
    for _ in range(5):
        model.loss_and_grads(ids, ids, h)
    return 5 / (time.perf_counter() - start) * 0.9  # the optimizer step and the rest


PEER_DEFAULTS = {
    "cell": "rnn",
    "layers": 1,
    "hidden": 512,
    "dropout": 0.0,
    "seq_len": 100,
    "batch": 64,
    "lr": 2e-3,
    "clip": 5.0,
}


def run_torch(text: str, minutes: float, eval_seconds: float, threads: int, peer: dict) -> dict:
    import torch
    from peer_torch import TorchTrainer, corpus_streams, kernel_info

    torch.set_num_threads(threads)
    print(f"pytorch config: {peer}, Adam, no schedule; BLAS {kernel_info()}")
    B, T = peer["batch"], peer["seq_len"]
    vocab_size, x_all, y_all, val_ids = corpus_streams(text, 0.1, B, T)
    trainer = TorchTrainer(
        vocab_size,
        peer["hidden"],
        B,
        T,
        lr=peer["lr"],
        clip=peer["clip"],
        cell=peer["cell"],
        layers=peer["layers"],
        dropout=peer["dropout"],
    )
    params = sum(p.numel() for p in trainer.model.parameters())
    print(
        f"pytorch parameters: {params:,} "
        f"({params - trainer.model.redundant_params():,} without redundant bias_hh)"
    )
    start = time.perf_counter()
    next_eval, step, best, eval_time = eval_seconds, 0, (math.inf, 0.0, 0), 0.0
    while True:
        trainer.step_of_walk(x_all, y_all, step)
        step += 1
        elapsed = time.perf_counter() - start
        if elapsed >= next_eval or elapsed >= minutes * 60:
            val = trainer.evaluate(val_ids)
            elapsed_after = time.perf_counter() - start
            eval_time += elapsed_after - elapsed
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
        # training time only, as charrnn's figure: evaluations excluded
        "chars_per_sec": step * B * T / (time.perf_counter() - start - eval_time),
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
    for key, default in PEER_DEFAULTS.items():
        flag = "--peer-" + key.replace("_", "-")
        if key == "cell":
            parser.add_argument(flag, choices=("rnn", "lstm", "gru"), default=default)
        else:
            parser.add_argument(flag, type=type(default), default=default)
    parser.add_argument("--eval-seconds", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-charrnn", action="store_true")
    args = parser.parse_args()
    _bench.set_threads(args.threads)
    from charrnn.corpus import read_text
    from charrnn.errors import CharRNNError

    try:
        text = read_text(args.file)  # the CLI's reader: one line for every unusable file
    except CharRNNError as exc:
        parser.error(str(exc))
    if any("=" not in item for item in args.set):
        raise SystemExit("--set takes KEY=VALUE")
    overrides = parse_settings(dict(item.split("=", 1) for item in args.set))
    peer = {key: getattr(args, "peer_" + key) for key in PEER_DEFAULTS}
    print(
        f"{args.file.name}: {len(text):,} characters, budget {args.minutes:g} min, "
        f"threads {args.threads}"
    )
    print(f"BLAS: {_bench.blas_info()}")
    results = {}
    if not args.skip_charrnn:
        results["charrnn"] = run_charrnn(text, args.minutes, overrides, args.eval_seconds)
    if args.peer:
        results["pytorch"] = run_torch(text, args.minutes, args.eval_seconds, args.threads, peer)
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
