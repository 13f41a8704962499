"""Training: truncated BPTT over B streams, clipping, evaluation, checkpoints, progress."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from charrnn import checkpoint, rundir
from charrnn.batches import Streams
from charrnn.cells import CELLS
from charrnn.corpus import (
    EncodedText,
    IdFile,
    TextFile,
    TextFiles,
    cache_key,
    encode_file,
    encode_file_ids,
    encode_text,
    key_changes,
    text_digest,
)
from charrnn.errors import (
    CharRNNError,
    CheckpointError,
    ConfigError,
    CorpusError,
    DivergenceError,
)
from charrnn.model import MAX_LAYERS, CharRNN, dropout_keep
from charrnn.optim import OPTIMIZERS, clip_grad_norm, make_optimizer
from charrnn.sample import Sampler, generate_ids
from charrnn.vocab import UNITS, Vocab

LN2 = math.log(2)
# What a resumed run may change; everything else must match the checkpoint, or the resumed
# run would not continue the same training (and resume would no longer be exact).
RESUMABLE = frozenset(
    {"steps", "minutes", "eval_every", "eval_symbols", "checkpoint_every", "sample_length"}
)
SCHEDULES = ("cosine", "constant", "wsd")
DROPOUT_STREAM = 2  # seeds the per-step dropout generators apart from init and sampling
EVAL_BLOCK = 1 << 20  # ids that `evaluate` reads at a time
# Validation symbols evaluated during training when eval_symbols is not set: `evaluate` does
# about 215,000 symbols/s at H 512, B 64, T 25 on the 2-core development machine, so ~2.4 s.
EVAL_SYMBOLS = 1 << 19


# The architecture follows the budget, as measured on tinyshakespeare (README, "Text quality
# per minute"): in three minutes the vanilla RNN's cheap steps win (1.619 nats/char against a
# 2-layer LSTM's 1.653); in ten the LSTM does (1.473 with lr 3e-3 and the wsd schedule, 1.479
# at a constant 2e-3, against 1.549). In thirty, without weight drop, it peaked after ten
# minutes (1.484) and overfit; with these settings it still improved at the end (1.447 in
# 9,206 steps, a half-speed hour): no longer budget has settings of its own yet.
LONG_BUDGET_MINUTES = 10.0
LONG_BUDGET = {
    "cell": "lstm",
    "layers": 2,
    "hidden": 256,
    "seq_len": 50,
    "dropout": 0.3,
    "weight_drop": 0.2,
    "lr": 3e-3,
    "schedule": "wsd",
}


@dataclass
class TrainConfig:
    """Hyperparameters of a run; saved in its metadata and reused on resume."""

    hidden: int = 512
    cell: str = "rnn"  # rnn, lstm or gru
    layers: int = 1
    seq_len: int = 25
    batch: int = 64
    lr: float = 2e-3
    optimizer: str = "adam"
    clip: float = 5.0
    dropout: float = 0.0  # share of each layer's h_t units dropped on their way up
    weight_drop: float = 0.15  # share of W_hh entries dropped per step (DropConnect)
    schedule: str = "cosine"  # lr decays to lr * min_lr_ratio over the budget
    warmup: int = 50  # steps of linear lr warm-up
    min_lr_ratio: float = 0.1
    cooldown: float = 0.2  # share of the budget at its end over which "wsd" decays the lr
    steps: int | None = None
    minutes: float | None = None
    eval_every: int = 1000
    eval_symbols: int | None = None  # first validation symbols evaluated; default EVAL_SYMBOLS
    checkpoint_every: int | None = None  # steps between checkpoints; default eval_every
    seed: int = 0
    val_fraction: float = 0.1
    unit: str = "grapheme"
    sample_length: int = 200
    sample_temperature: float = 0.8

    @classmethod
    def for_budget(cls, **given) -> TrainConfig:
        """A config as `charrnn train` makes it: `given` fields over the defaults of its budget
        (`LONG_BUDGET` when minutes >= LONG_BUDGET_MINUTES, the class defaults otherwise)."""
        minutes = given.get("minutes")
        long_budget = minutes is not None and minutes >= LONG_BUDGET_MINUTES
        return cls(**{**(LONG_BUDGET if long_budget else {}), **given})

    def check(self) -> None:
        """Raise ConfigError naming the first option outside its range."""
        ints = {
            "hidden": (1, checkpoint.MAX_HIDDEN),
            "layers": (1, MAX_LAYERS),
            "seq_len": (1, 100_000),
            "batch": (1, 100_000),
            "eval_every": (1, 10**9),
            "warmup": (0, 10**9),
            "sample_length": (0, 10**6),
        }
        for name, (low, high) in ints.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ConfigError(f"{name} must be from {low} to {high}, got {value}")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")
        if self.minutes is not None and not 0 < self.minutes < math.inf:
            raise ConfigError(f"minutes must be > 0, got {self.minutes}")
        if self.eval_symbols is not None and self.eval_symbols < 2:
            raise ConfigError(f"eval_symbols must be >= 2, got {self.eval_symbols}")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise ConfigError(f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        if not 0 < self.lr < math.inf:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.clip < math.inf:
            raise ConfigError(f"clip must be >= 0 (0 turns clipping off), got {self.clip}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.weight_drop < 1:
            raise ConfigError(f"weight_drop must be in [0, 1), got {self.weight_drop}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if not 0 < self.cooldown <= 1:
            raise ConfigError(f"cooldown must be in (0, 1], got {self.cooldown}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}")
        if self.cell not in CELLS:
            raise ConfigError(f"cell must be one of {', '.join(CELLS)}")
        if self.unit not in UNITS:
            raise ConfigError(f"unit must be one of {', '.join(UNITS)}")


@dataclass
class StepStats:
    """What the observer hears after every step."""

    step: int
    loss: float
    lr: float
    grad_norm: float
    chars_per_sec: float
    elapsed: float
    progress: float  # fraction of the step or time budget done


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    elapsed: float
    train_loss: float | None
    val_loss: float | None
    best_val_loss: float | None
    best_step: int | None
    chars_per_sec: float
    interrupted: bool = False
    history: list[dict] = field(default_factory=list)


class Observer:
    """Hooks for progress reporting; the CLI draws them, a notebook may ignore them."""

    def on_start(self, info: dict) -> None: ...

    def on_step(self, stats: StepStats) -> None: ...

    def on_eval(self, record: dict, sample: str) -> None: ...

    def on_checkpoint(self, path: Path) -> None: ...

    def on_encode(self, what: str, done: int, total: int) -> None:
        """Progress of reading ("reading", then "encoding") a corpus file: bytes done of total."""


def learning_rate(config: TrainConfig, step: int, progress: float) -> float:
    """Linear warm-up for `warmup` steps, then constant, cosine decay over the budget, or
    "wsd" (warm-up, stable, decay): constant until the last `cooldown` share of the budget,
    then linear decay to lr * min_lr_ratio."""
    warm = min(1.0, (step + 1) / config.warmup) if config.warmup else 1.0
    if config.schedule == "constant":
        return config.lr * warm
    progress = min(progress, 1.0)
    if config.schedule == "wsd":
        left = min(1.0, (1.0 - progress) / config.cooldown)  # 1 until the cooldown, then to 0
    else:
        left = 0.5 * (1 + math.cos(math.pi * progress))
    return config.lr * warm * (config.min_lr_ratio + (1 - config.min_lr_ratio) * left)


def evaluate(
    model: CharRNN,
    ids: np.ndarray | IdFile,
    seq_len: int = 100,
    streams: int = 64,
    stop: Callable[[], bool] | None = None,
) -> float | None:
    """Mean nats per symbol of predicting every symbol of `ids` after the first (None when
    `stop` asked to stop first).

    The text is cut into `streams` contiguous streams walked in chunks with state carried;
    the few positions left over continue the last stream, so every symbol counts once. The ids
    (an array, maybe memory-mapped, or an IdFile) are read about EVAL_BLOCK at a time, whole
    chunks of every stream, so where they are stored changes neither the figure nor the memory.
    """
    n = len(ids) - 1
    if n < 1:
        raise CorpusError("evaluation text needs at least 2 symbols")
    B = min(streams, n)
    L = n // B  # stream s predicts ids[s*L + 1 : (s+1)*L + 1]
    width = seq_len * max(1, EVAL_BLOCK // (B * seq_len))  # columns read at a time
    h = model.zero_state(B)
    nats = 0.0
    for first in range(0, L, width):
        last = min(first + width, L)
        block = np.stack([ids[s * L + first : s * L + last + 1] for s in range(B)])  # (B, W+1)
        for start in range(0, last - first, seq_len):
            if stop is not None and stop():
                return None
            end = min(start + seq_len, last - first)
            inputs, targets = block[:, start:end], block[:, start + 1 : end + 1]  # (B, T)
            loss, h = model.loss(inputs, targets, h)
            nats += loss * inputs.size
    rest = ids[B * L : n + 1]
    if len(rest) > 1:
        # The last stream goes on: its state, (L, S, 1, H).
        loss, _ = model.loss(rest[None, :-1], rest[None, 1:], h[:, :, -1:])
        nats += loss * (len(rest) - 1)
    return nats / n


def evaluate_file(
    model: CharRNN, vocab: Vocab, source: TextFile, seq_len: int = 100, streams: int = 64
) -> tuple[float, int]:
    """Mean nats per symbol of a text file of any size, and the number of predictions: the
    file is encoded piece by piece into an anonymous temporary file that `evaluate` reads a
    block at a time, so memory stays bounded and the figure is that of the text in memory."""
    with encode_file_ids(source, vocab) as ids:
        if len(ids) < 2:
            raise CorpusError(f"{source.path}: needs at least 2 symbols to evaluate")
        return evaluate(model, ids, seq_len, streams), len(ids) - 1


def train(
    text: str | TextFile | TextFiles,
    config: TrainConfig,
    run_dir: str | Path,
    source: dict | None = None,
    resume: bool = False,
    observer: Observer | None = None,
    stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train a CharRNN on `text` (a string, or a TextFile or TextFiles streamed into a
    memory-mapped id cache), checkpointing into `run_dir`; resume continues it exactly.

    `stop` is polled between steps and during evaluations: when it returns True the run
    saves and returns with `interrupted` set (while a file is still being encoded, it raises
    KeyboardInterrupt instead: there is nothing to save yet). A non-finite loss or gradient raises
    DivergenceError and leaves the last good checkpoints on disk. The run directory is locked
    for the whole call: a second writer gets RunInUseError (see `rundir`).
    """
    config.check()
    run_dir = Path(run_dir)
    with (
        rundir.claim(run_dir, new=not resume),
        np.errstate(over="ignore", invalid="ignore", divide="ignore"),  # finiteness is checked
    ):
        return _train(text, config, run_dir, source, resume, observer, stop)


def _train(
    text: str | TextFile | TextFiles,
    config: TrainConfig,
    run_dir: Path,
    source: dict | None,
    resume: bool,
    observer: Observer | None,
    stop: Callable[[], bool] | None,
) -> TrainResult:
    """The story of one run: start (or resume), steps with evaluations and checkpoints between
    them, a last evaluation, and a save if anything stopped it early."""
    stop = stop or (lambda: False)
    shown = _notebook_progress(config) if observer is None else None
    run = _Run(config, run_dir, observer or shown or Observer(), stop)
    try:
        run.start(text, source, resume)
        interrupted = False
        if run.stopped_in_evaluation():
            interrupted = not run.evaluate()  # the last process stopped during this evaluation
        while not interrupted and not run.done():
            if stop():
                interrupted = True
                break
            run.train_step()
            if run.step % config.eval_every == 0:
                interrupted = not run.evaluate()
            elif run.step % (config.checkpoint_every or config.eval_every) == 0:
                run.save(None)
        if not interrupted and not run.evaluated_here():
            interrupted = not run.evaluate()
        if interrupted:
            run.save(None)
        return run.result(interrupted)
    finally:
        if shown is not None:
            shown.stop()


def _notebook_progress(config: TrainConfig) -> Observer | None:
    """In a Jupyter notebook, rich's progress bar and evaluation lines in the cell (as the CLI
    shows them on a terminal); elsewhere None: a library call shows nothing by itself."""
    from rich.console import Console

    if not Console().is_jupyter:
        return None
    from charrnn.progress import RichObserver, console

    return RichObserver(console(), config.steps, config.minutes, config.eval_every)


class _Run:
    """A training run's state between its start and its last save: the data, the model and
    optimizer, the counters and the evaluation history, with one method per phase."""

    def __init__(
        self, config: TrainConfig, run_dir: Path, observer: Observer, stop: Callable[[], bool]
    ) -> None:
        self.config, self.run_dir, self.observer, self.stop = config, run_dir, observer, stop
        self.step, self.elapsed_before, self.train_time = 0, 0.0, 0.0
        self.history: list[dict] = []
        self.window_losses: list[float] = []  # training losses since the last evaluation
        self.best: tuple[float, int | None] = (math.inf, None)  # (val_loss, step)
        self.resumed = False

    # ---- start or resume ----------------------------------------------------------------------

    def start(self, text: str | TextFile | TextFiles, source: dict | None, resume: bool) -> None:
        """A fresh model, or everything the last checkpoint holds; and the text as ids. A new
        run whose text proves unusable leaves nothing behind."""
        config, run_dir = self.config, self.run_dir
        saved = rundir.load_resume_state(run_dir) if resume else None
        if saved is not None:
            _check_same_training(config, saved["meta"].get("train"), run_dir)
        try:
            encoded = _encode(text, config, run_dir, saved, self.observer, self.stop)
            train_ids, val_ids = encoded.split()
            self.streams = Streams(train_ids, config.batch, config.seq_len)
        except (CharRNNError, KeyboardInterrupt):
            if saved is None:
                rundir.discard_cache(run_dir)
            raise
        self.vocab = encoded.vocab
        self.eval_ids = val_ids[: config.eval_symbols or EVAL_SYMBOLS]  # the same first ones
        self.model = CharRNN(
            len(self.vocab), config.hidden, seed=config.seed, cell=config.cell, layers=config.layers
        )
        self.optimizer = make_optimizer(config.optimizer, self.model.params)
        self.sample_rng = np.random.default_rng(config.seed + 1)
        self.state = self.model.zero_state(config.batch)  # (L, S, B, H), carried across chunks
        if saved is not None:
            self._restore(saved)
        self.meta = {
            "format": checkpoint.FORMAT,
            "format_version": checkpoint.FORMAT_VERSION,
            "model": {
                "cell": self.model.cell,
                "layers": self.model.layers,
                "vocab_size": len(self.vocab),
                "hidden_size": config.hidden,
                "dtype": self.model.dtype.name,
            },
            "vocab": self.vocab.to_json(),
            "train": dataclasses.asdict(config),
            "corpus": {
                **(source or {}),
                "symbols": len(encoded.ids),
                "train_symbols": len(train_ids),
                "val_symbols": len(val_ids),
                "sha256": encoded.digest,
            },
        }
        self.first_step, self.started = self.step, time.perf_counter()
        self.observer.on_start(
            {
                "run_dir": run_dir,
                "vocab_size": len(self.vocab),
                "train_symbols": len(train_ids),
                "val_symbols": len(val_ids),
                "eval_symbols": len(self.eval_ids),
                "skipped": encoded.skipped,
                "params": sum(p.size for p in self.model.params.values()),
                "chunks_per_epoch": self.streams.chunks_per_epoch,
                "step": self.step,
                "config": config,
            }
        )

    def _restore(self, saved: dict) -> None:
        """Weights, optimizer state, carried state, counters and generators from latest.npz."""
        meta, arrays, model = saved["meta"], saved["arrays"], self.model
        B = self.config.batch
        try:
            model.params = {k: arrays[f"param/{k}"] for k in model.params}
            self.optimizer = make_optimizer(self.config.optimizer, model.params)
            self.optimizer.load_state_dict(
                {k[4:]: v for k, v in arrays.items() if k.startswith("opt/")}
            )
            state = arrays["state/h"]
            if state.shape == (B, model.hidden_size) and model.state_size == model.layers == 1:
                state = state.reshape(model.state_shape(B))  # written by 0.1 as (B, H)
            if state.shape != model.state_shape(B):
                raise ValueError(
                    f"carried state is {list(state.shape)}, not {list(model.state_shape(B))}"
                )
            self.state = state
            self.step, self.elapsed_before = meta["step"], meta["elapsed"]
            self.history = saved["history"]
            self.window_losses = [float(x) for x in meta.get("train_window", [])]
            self.sample_rng.bit_generator.state = meta["sample_rng"]
            metrics = meta["metrics"]
            self.best = (metrics.get("best_val_loss") or math.inf, metrics.get("best_step"))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(
                f"{self.run_dir / 'latest.npz'}: training state is damaged, cannot resume "
                f"({type(exc).__name__}: {exc})"
            ) from None
        self.resumed = True

    # ---- where the run stands -----------------------------------------------------------------

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def progress(self) -> float:
        """The share of the step or time budget used."""
        if self.config.steps is not None:
            return self.step / self.config.steps
        return self.elapsed() / (self.config.minutes * 60) if self.config.minutes else 0.0

    def done(self) -> bool:
        if self.config.steps is not None:
            return self.step >= self.config.steps
        return self.config.minutes is not None and self.elapsed() >= self.config.minutes * 60

    def chars_per_sec(self) -> float:
        chars = self.config.batch * self.config.seq_len * (self.step - self.first_step)
        return chars / max(self.train_time, 1e-9)

    def evaluated_here(self) -> bool:
        return bool(self.history) and self.history[-1]["step"] == self.step

    def stopped_in_evaluation(self) -> bool:
        """A resumed run whose last process stopped during an evaluation redoes it first."""
        due = self.step and self.step % self.config.eval_every == 0
        return self.resumed and bool(due) and not self.evaluated_here()

    # ---- one training step --------------------------------------------------------------------

    def train_step(self) -> None:
        """Forward and backward over the next chunk of every stream, clip, update."""
        config, model = self.config, self.model
        tick = time.perf_counter()
        if self.streams.starts_epoch(self.step):
            self.state = model.zero_state(config.batch)
        inputs, targets = self.streams.chunk(self.step)
        keep, hh_keep = self._masks(inputs.size)
        loss, grads, state_next = model.loss_and_grads(
            inputs, targets, self.state, keep=keep, hh_keep=hh_keep
        )
        grad_norm = clip_grad_norm(grads, config.clip)
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            raise DivergenceError(
                f"training diverged at step {self.step + 1}: loss {loss}, gradient norm "
                f"{grad_norm}; lower --lr (now {config.lr:g}); checkpoints on disk are the last "
                "good ones"
            )
        lr = learning_rate(config, self.step, self.progress())
        self.optimizer.step(model.params, grads, lr)
        self.state = state_next
        self.step += 1
        self.train_time += time.perf_counter() - tick
        self.window_losses.append(loss)
        stats = StepStats(
            self.step, loss, lr, grad_norm, self.chars_per_sec(), self.elapsed(), self.progress()
        )
        self.observer.on_step(stats)

    def _masks(self, positions: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """This step's dropout (L*TB, H) and weight-drop (L*H, G*H) scales, or None: drawn
        from a generator seeded by the step, so a resume draws the same ones."""
        config, model = self.config, self.model
        if not (config.dropout or config.weight_drop):
            return None, None
        rng = np.random.default_rng([config.seed, DROPOUT_STREAM, self.step])
        L, H, GH = config.layers, config.hidden, model.gates * config.hidden
        keep = hh_keep = None
        if config.dropout:
            keep = dropout_keep(config.dropout, (L * positions, H), rng, model.dtype)
        if config.weight_drop:
            hh_keep = dropout_keep(config.weight_drop, (L * H, GH), rng, model.dtype)
        return keep, hh_keep

    # ---- evaluate -----------------------------------------------------------------------------

    def evaluate(self) -> bool:
        """Evaluate, sample, record and checkpoint; False (and nothing recorded) if `stop`
        interrupted it, so that a resume redoes this evaluation exactly."""
        config, step = self.config, self.step
        record = {
            "step": step,
            "elapsed": round(self.elapsed(), 3),
            "lr": learning_rate(config, max(step - 1, 0), self.progress()),
            "train_loss": float(np.mean(self.window_losses)) if self.window_losses else None,
            "chars_per_sec": self.chars_per_sec(),
        }
        new_best = self.best
        if len(self.eval_ids) > 1:
            val_loss = evaluate(self.model, self.eval_ids, config.seq_len, stop=self.stop)
            if val_loss is None:
                return False
            if not math.isfinite(val_loss):
                raise DivergenceError(
                    f"validation loss is {val_loss} at step {step}; lower --lr "
                    f"(now {config.lr:g}); checkpoints on disk are the last good ones"
                )
            record["val_loss"], record["val_bpc"] = val_loss, val_loss / LN2
            record["val_symbols"] = len(self.eval_ids)
            if val_loss < self.best[0]:
                new_best = (val_loss, step)
        if record["train_loss"] is not None:
            record["train_bpc"] = record["train_loss"] / LN2
        sample_ids = []
        if config.sample_length:
            rng_before = self.sample_rng.bit_generator.state
            sampler = Sampler(config.sample_temperature)
            sampler.rng = self.sample_rng
            for ids_t in generate_ids(self.model, self.vocab, "", config.sample_length, 1, sampler):
                if self.stop():
                    self.sample_rng.bit_generator.state = rng_before
                    return False
                sample_ids.append(ids_t)
        self.best = new_best
        self.window_losses = []
        sample = self.vocab.decode(np.concatenate(sample_ids)) if sample_ids else ""
        if sample:
            record["sample"] = sample  # kept in metrics.jsonl for `charrnn report`
        self.history.append(record)
        self.save(record)
        self.observer.on_eval(record, sample)
        return True

    # ---- save ---------------------------------------------------------------------------------

    def save(self, record: dict | None) -> None:
        """Checkpoint the run (after an evaluation, its record too) into the run directory."""
        best_loss, best_step = self.best
        metrics = {
            "best_val_loss": None if best_step is None else best_loss,
            "best_step": best_step,
        }
        if record:
            metrics.update({k: v for k, v in record.items() if k != "sample"})
        meta = {
            **self.meta,
            "step": self.step,
            "elapsed": self.elapsed(),
            "metrics": metrics,
            "sample_rng": self.sample_rng.bit_generator.state,
        }
        arrays = {f"param/{k}": v for k, v in self.model.params.items()}
        arrays.update({f"opt/{k}": v for k, v in self.optimizer.state_dict().items()})
        arrays["state/h"] = self.state
        new_best = record is not None and record.get("val_loss") == best_loss
        rundir.save(
            self.run_dir,
            arrays,
            meta,
            # For an exact resume, also the evaluations so far and the losses since the last.
            resume_state={"history": self.history, "train_window": self.window_losses},
            best=new_best and best_step == self.step,
            history=self.history if record is not None else None,
        )
        self.observer.on_checkpoint(self.run_dir / "latest.npz")

    def result(self, interrupted: bool) -> TrainResult:
        last = self.history[-1] if self.history else {}
        best_loss, best_step = self.best
        return TrainResult(
            run_dir=self.run_dir,
            step=self.step,
            elapsed=self.elapsed(),
            train_loss=last.get("train_loss"),
            val_loss=last.get("val_loss"),
            best_val_loss=None if best_step is None else best_loss,
            best_step=best_step,
            chars_per_sec=self.chars_per_sec(),
            interrupted=interrupted,
            history=self.history,
        )


def _encode(
    text: str | TextFile | TextFiles,
    config: TrainConfig,
    run_dir: Path,
    state: dict | None,
    observer: Observer,
    stop: Callable[[], bool],
) -> EncodedText:
    """The training text as ids, in the checkpoint's vocabulary when resuming. A stop
    request while a large file is encoded raises KeyboardInterrupt: there is nothing to save."""
    unit, val_fraction = config.unit, config.val_fraction
    vocab = Vocab.from_json(state["meta"]["vocab"]) if state is not None else None
    files = isinstance(text, (TextFile, TextFiles))
    changes = ""
    if files:

        def progress(what: str, done: int, total: int) -> None:
            if stop():
                raise KeyboardInterrupt
            observer.on_encode(what, done, total)

        before = cache_key(run_dir) if state is not None else None
        encoded = encode_file(text, unit, run_dir, progress, val_fraction=val_fraction)
        if vocab is not None and encoded.vocab != vocab and encoded.digest == _digest(state):
            raise CheckpointError(f"{run_dir}: the corpus cache disagrees with the checkpoint")
        digest = encoded.digest
        if state is not None and digest != _digest(state):
            changes = key_changes(before, cache_key(run_dir))
    else:
        digest = text_digest(text)
    if state is not None and digest != _digest(state):
        raise CheckpointError(
            f"{run_dir}: the training text differs from the one this run started on"
            + (f" (its files changed: {changes})" if changes else "")
        )
    return encoded if files else encode_text(text, unit, vocab, val_fraction=val_fraction)


def _check_same_training(config: TrainConfig, saved: object, run_dir: Path) -> None:
    """A resume may change only the budget and the reporting (RESUMABLE)."""
    if not isinstance(saved, dict):
        raise CheckpointError(f"{run_dir}: the checkpoint holds no training config")
    defaults = TrainConfig()
    changed = [
        f.name
        for f in dataclasses.fields(TrainConfig)
        if f.name not in RESUMABLE
        and getattr(config, f.name) != saved.get(f.name, getattr(defaults, f.name))
    ]
    if changed:
        raise ConfigError(
            f"{', '.join(changed)} cannot change when resuming {run_dir} "
            "(only the budget and reporting can)"
        )


def _digest(state: dict) -> str | None:
    corpus = state["meta"].get("corpus")
    return corpus.get("sha256") if isinstance(corpus, dict) else None


def read_run_config(run_dir: Path) -> tuple[TrainConfig, dict]:
    """The TrainConfig and corpus description of an existing run, from its latest.npz."""
    meta = checkpoint.read_meta(checkpoint.checkpoint_path(run_dir, "latest"))
    try:
        config = TrainConfig(**meta["train"])
        config.check()
    except (TypeError, ConfigError, KeyError) as exc:
        raise CheckpointError(f"{run_dir}: bad training config in checkpoint ({exc})") from None
    return config, meta.get("corpus", {})
