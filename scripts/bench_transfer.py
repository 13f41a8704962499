"""Fine-tuning against training from scratch, on a small text no base saw, side by side.

    python scripts/bench_transfer.py --base runs/base-english          # an existing base
    python scripts/bench_transfer.py --make-base runs/base-english     # train the base first

The base (unless given) is the recipe of README "Fine-tuning": the long-budget model (2-layer
LSTM, H 256, T 50, dropout 0.3, weight drop 0.2, wsd) trained for --base-steps steps, seed 0,
on the built-in python-docs and shakespeare corpora joined by an empty line (the last 10%,
Shakespeare's, held out). The target text defaults to chapters 1-12 of Vim's user manual (12
files, 214 KB of English prose no base saw; Debian's vim-runtime ships it), or the files given
with --text, joined by an empty line (the last 10% held out). Then, one run after the other,
with the same settings and seed:
- equal steps: `--steps` steps from random weights and from the base (at each --lr), with an
  evaluation every --eval-every steps; best validation loss, and the first step where the
  fine-tuned run beats the best loss from scratch;
- equal time: `--minutes` of each, best validation loss.
Validation covers the whole validation split of the target every time.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import blas_info, set_threads

VIM_MANUAL = sorted(
    glob.glob("/usr/share/vim/vim*/doc/usr_0[1-9].txt")
    + glob.glob("/usr/share/vim/vim*/doc/usr_1[0-2].txt")
)


def base_text() -> str:
    """The base's corpus: python-docs and shakespeare joined as files are (FILE_SEPARATOR)."""
    from charrnn import corpus

    names = ("python-docs", "shakespeare")
    return corpus.FILE_SEPARATOR.join(corpus.builtin_corpus(n) for n in names)


def make_base(out: Path, steps: int, threads: int) -> None:
    """The base of the README recipe, reproducible bit for bit from its seed on one machine
    and BLAS kernel (the sum order of a product depends on both). A base whose making was
    stopped resumes exactly (wsd's stable phase does not depend on the budget before it)."""
    import charrnn
    from charrnn import training

    config = dataclasses.replace(
        charrnn.TrainConfig(**training.LONG_BUDGET), steps=steps, eval_every=500
    )
    text = base_text()
    started = time.perf_counter()
    resume = (out / "latest.npz").exists()  # a base stopped part-way goes on, bit for bit
    result = charrnn.train(text, config, out, observer=Log("base"), resume=resume)
    print(
        f"base: {result.step} steps in {time.perf_counter() - started:.0f} s, best val "
        f"{result.best_val_loss:.4f} at {result.best_step} ({threads} threads)",
        flush=True,
    )


def package_base(base: Path, out: Path) -> None:
    """Write the base's best weights as float16 with its metadata (what `--init-from english`
    loads, converting to float32), and print what the rounding costs on its validation text."""
    import numpy as np

    import charrnn
    from charrnn import checkpoint

    best = checkpoint.checkpoint_path(base, "best")
    meta = checkpoint.read_meta(best)
    run = charrnn.load(best)
    small = {f"param/{k}": v.astype(np.float16) for k, v in run.model.params.items()}
    keep = ("format", "format_version", "model", "vocab", "train", "corpus", "step", "metrics")
    packaged = {k: meta[k] for k in keep if k in meta}
    packaged["model"] = {**meta["model"], "dtype": "float16"}
    packaged["made_by"] = f"scripts/bench_transfer.py --make-base DIR --base-steps {meta['step']}"
    out.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.save_npz(out, small, packaged)
    text = base_text()
    ids = run.vocab.encode(text)
    val = ids[len(ids) - round(len(ids) * 0.1) :]
    full = charrnn.evaluate(run.model, val, 100)
    half = charrnn.evaluate(charrnn.load(out).model, val, 100)
    print(
        f"packaged {out}: {out.stat().st_size:,} bytes; validation {full:.5f} nats/char in "
        f"float32, {half:.5f} from float16 ({(half - full) / math.log(2):+.5f} bits/char)",
        flush=True,
    )


class Log:
    """Prints each evaluation as one line."""

    def __init__(self, name: str) -> None:
        self.name = name

    def on_start(self, info: dict) -> None:
        print(
            f"{self.name}: {info['train_symbols']:,} training, {info['val_symbols']:,} "
            f"validation symbols, vocab {info['vocab_size']}",
            flush=True,
        )

    def on_step(self, stats) -> None: ...

    def on_eval(self, record: dict, sample: str) -> None:
        print(
            f"{self.name}: step {record['step']:>5} {record['elapsed']:7.1f} s "
            f"val {record.get('val_loss', math.nan):.4f}",
            flush=True,
        )

    def on_checkpoint(self, path) -> None: ...

    def on_encode(self, what, done, total) -> None: ...


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base", type=Path, help="an existing base run")
    p.add_argument("--make-base", type=Path, metavar="DIR", help="train the base into DIR")
    p.add_argument("--base-steps", type=int, default=2500)
    p.add_argument("--package-base", type=Path, metavar="NPZ", help="write the base as float16")
    p.add_argument("--text", nargs="+", help="target files (Vim's user manual)")
    p.add_argument("--steps", type=int, default=1200, help="equal-step budget (1200; 0: skip)")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--minutes", type=float, default=0, help="equal-time budget (0: skip)")
    p.add_argument("--lr", type=float, action="append", help="fine-tuning rates (1e-3)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, help="keep the runs here (default: a temp dir)")
    args = p.parse_args()
    set_threads(args.threads)
    import charrnn
    from charrnn import corpus

    print(blas_info(), flush=True)
    if args.make_base is not None:
        make_base(args.make_base, args.base_steps, args.threads)
        args.base = args.base or args.make_base
    if args.package_base is not None:
        package_base(args.base, args.package_base)
    if args.base is None or args.package_base is not None:
        return 0
    paths = [Path(t) for t in (args.text or VIM_MANUAL)]
    if not paths:
        print("no target text: give --text FILE... (Vim's user manual is not installed)")
        return 2
    target = "\n\n".join(corpus.read_text(p) for p in paths)
    base = charrnn.load(args.base)
    out = args.out or Path(tempfile.mkdtemp(prefix="charrnn-transfer-"))
    lrs = args.lr or [charrnn.config.FINE_TUNE_LR]
    print(
        f"base {args.base}: {base.model.cell} {base.model.layers} x {base.model.hidden_size}, "
        f"step {base.config['step']}; target {len(paths)} files; runs in {out}",
        flush=True,
    )
    budgets = [("steps", {"steps": args.steps, "eval_every": args.eval_every})] * bool(args.steps)
    if args.minutes:
        budgets.append(("minutes", {"minutes": args.minutes, "eval_every": args.eval_every}))
    for label, budget in budgets:
        results = {}
        # the long budget's settings, with this budget (steps or minutes) and the base's model
        arch = charrnn.config.base_architecture(base)
        scratch = charrnn.TrainConfig(**{**charrnn.config.LONG_BUDGET, **arch})
        runs = [("scratch", scratch, None)]
        for lr in lrs:
            runs.append((f"base lr {lr:g}", dataclasses.replace(scratch, lr=lr), args.base))
        runs = [
            (name, dataclasses.replace(c, **{"steps": None, "minutes": None, **budget}), init_from)
            for name, c, init_from in runs
        ]
        for name, config, init_from in runs:
            run_dir = out / f"{label}-{name.replace(' ', '-')}"
            results[name] = charrnn.train(
                target, config, run_dir, observer=Log(f"{label} {name}"), init_from=init_from
            )
        print(f"\n== equal {label} ==")
        best0 = results["scratch"].best_val_loss
        for name, r in results.items():
            beat = next(
                (h["step"] for h in r.history if h.get("val_loss", math.inf) <= best0), None
            )
            print(
                f"{name:>14}: best val {r.best_val_loss:.4f} nats/char at step {r.best_step} "
                f"of {r.step} ({r.elapsed:.0f} s); gain {best0 - r.best_val_loss:+.4f}; "
                f"reaches scratch's best at step {beat}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
