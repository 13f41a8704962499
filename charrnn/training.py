"""Training: truncated BPTT over B streams, clipping, evaluation, checkpoints, progress."""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from charrnn import checkpoint, lineage, rundir
from charrnn.batches import Streams
from charrnn.config import (  # noqa: F401  (the budget constants re-exported for callers)
    EVAL_SYMBOLS,
    LONG_BUDGET,
    TrainConfig,
    adopt_base,
    changed_on_resume,
)
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
from charrnn.merge import start_from_base
from charrnn.model import CharRNN, dropout_keep
from charrnn.observe import Observer, StepStats
from charrnn.optim import clip_grad_norm, make_optimizer
from charrnn.parallel import DataParallel, worker_count
from charrnn.sample import Sampler, generate_ids
from charrnn.vocab import Vocab

LN2 = math.log(2)
# Bases that ship in the package, by name (scripts/bench_transfer.py --make-base makes them).
BASES = {"english": Path(__file__).parent / "data" / "english.npz"}
DROPOUT_STREAM = 2  # seeds the per-step dropout generators apart from init and sampling
EVAL_BLOCK = 1 << 20  # ids that `evaluate` reads at a time
# `evaluate` gives each of its (at most 64) streams at least this many predictions: every
# stream starts without context, so a short text cut 64 ways reads worse than it is.
EVAL_STREAM_SYMBOLS = 1000


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


def load_base(init_from: str | os.PathLike) -> checkpoint.Run:
    """The run a new run starts from: a run directory (its best checkpoint), a .npz, or the
    name of a base that ships with charrnn (`BASES`) when no such path exists."""
    path = Path(init_from)
    if str(init_from) in BASES and not path.exists():
        path = BASES[str(init_from)]
    try:
        return checkpoint.load(path, "best")
    except CheckpointError as exc:
        raise CheckpointError(f"--init-from: {exc}") from None


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


def eval_streams(predictions: int, streams: int | None = None) -> int:
    """The streams `evaluate` cuts a text into: `streams` when given (at most one per
    prediction), else 64 or fewer, each of at least EVAL_STREAM_SYMBOLS predictions."""
    if streams is not None:
        return min(streams, predictions)
    return max(1, min(64, predictions // EVAL_STREAM_SYMBOLS))


def evaluate(
    model: CharRNN | DataParallel,
    ids: np.ndarray | IdFile,
    seq_len: int = 100,
    streams: int | None = None,
    stop: Callable[[], bool] | None = None,
) -> float | None:
    """Mean nats per symbol of predicting every symbol of `ids` after the first (None when
    `stop` asked to stop first).

    The text is cut into `eval_streams` contiguous streams walked in chunks with state carried
    (spread over the workers of a DataParallel model);
    the few positions left over continue the last stream, so every symbol counts once. The ids
    (an array, maybe memory-mapped, or an IdFile) are read about EVAL_BLOCK at a time, whole
    chunks of every stream, so where they are stored changes neither the figure nor the memory.
    """
    n = len(ids) - 1
    if n < 1:
        raise CorpusError("evaluation text needs at least 2 symbols")
    B = eval_streams(n, streams)
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
    model: CharRNN,
    vocab: Vocab,
    source: TextFile,
    seq_len: int = 100,
    streams: int | None = None,
    workers: int | None = None,
) -> tuple[float, int]:
    """Mean nats per symbol of a text file of any size, and the number of predictions: the
    file is encoded piece by piece into an anonymous temporary file that `evaluate` reads a
    block at a time, so memory stays bounded and the figure is that of the text in memory.
    The streams are spread over `workers` threads (default: the usable cores)."""
    with encode_file_ids(source, vocab) as ids:
        if len(ids) < 2:
            raise CorpusError(f"{source.path}: needs at least 2 symbols to evaluate")
        streams = eval_streams(len(ids) - 1, streams)
        with DataParallel(model, worker_count(workers, streams)) as parallel:
            return evaluate(parallel, ids, seq_len, streams), len(ids) - 1


def train(
    text: str | TextFile | TextFiles,
    config: TrainConfig,
    run_dir: str | Path,
    source: dict | None = None,
    resume: bool = False,
    observer: Observer | None = None,
    stop: Callable[[], bool] | None = None,
    init_from: str | os.PathLike | checkpoint.Run | None = None,
    model_choice: dict | None = None,
    loaded_base: checkpoint.Run | None = None,
) -> TrainResult:
    """Train a CharRNN on `text` (a string, or a TextFile or TextFiles streamed into a
    memory-mapped id cache), checkpointing into `run_dir`; resume continues it exactly.

    `init_from` (a run directory, its best checkpoint, or any .npz; or a loaded Run) starts the
    new run from that model's weights instead of random ones: its cell, layers, hidden size and
    unit (config fields left at their defaults take the base's; others are refused), the
    vocabularies merged by symbol (see `merge`); optimizer state and step count start fresh.
    `loaded_base` is `init_from` already loaded (as the CLI does to choose the model), so that
    it is read once; the lineage still records `init_from` as given.
    `model_choice` (`charrnn.budget.Choice.record()`) is saved with a new run; a resumed run
    keeps the one it saved.

    `stop` is polled between steps and during evaluations: when it returns True the run
    saves and returns with `interrupted` set (while a file is still being encoded, it raises
    KeyboardInterrupt instead: there is nothing to save yet). A non-finite loss or gradient raises
    DivergenceError and leaves the last good checkpoints on disk. The run directory is locked
    for the whole call: a second writer gets RunInUseError (see `rundir`).
    """
    config.check()
    config = dataclasses.replace(config, workers=worker_count(config.workers, config.batch))
    run_dir = Path(run_dir)
    base = None
    if init_from is not None:
        if resume:
            raise ConfigError(
                "--init-from starts a new run; a resumed run goes on from its own weights"
            )
        if isinstance(init_from, checkpoint.Run):
            base = (init_from, init_from.path)
        else:
            base = (loaded_base or load_base(init_from), init_from)
        config = adopt_base(config, base[0])
    with (
        rundir.claim(run_dir, new=not resume),
        np.errstate(over="ignore", invalid="ignore", divide="ignore"),  # finiteness is checked
    ):
        return _train(text, config, run_dir, source, resume, observer, stop, base, model_choice)


def _train(
    text: str | TextFile | TextFiles,
    config: TrainConfig,
    run_dir: Path,
    source: dict | None,
    resume: bool,
    observer: Observer | None,
    stop: Callable[[], bool] | None,
    base: tuple[checkpoint.Run, str | os.PathLike] | None = None,
    model_choice: dict | None = None,
) -> TrainResult:
    """The story of one run: start (or resume), steps with evaluations and checkpoints between
    them, a last evaluation, and a save if anything stopped it early."""
    run = _Run(config, run_dir, observer or Observer(), stop or (lambda: False))
    run.model_choice = model_choice
    run.start(text, source, resume, base)
    with run.parallel:  # the worker threads end with the run
        try:
            if run.stopped_in_evaluation():
                run.evaluate_and_record()  # the last process stopped during this evaluation
            while not run.done():
                run.stop_if_asked()
                run.train_step()
                if run.step % config.eval_every == 0:
                    run.evaluate_and_record()
                elif run.step % (config.checkpoint_every or config.eval_every) == 0:
                    run.save_checkpoint()
            if not run.evaluated_here():
                run.evaluate_and_record()
        except _Stopped:
            run.save_checkpoint()
            return run.result(interrupted=True)
        return run.result(interrupted=False)


class _Stopped(Exception):
    """`stop` asked the run to stop: raised where it is polled, caught once in `_train`, which
    saves. An evaluation it cuts short records nothing, so a resume redoes it exactly."""


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
        self.model_choice: dict | None = None  # the budget's choice of model, saved with the run

    # ---- start or resume ----------------------------------------------------------------------

    def start(
        self,
        text: str | TextFile | TextFiles,
        source: dict | None,
        resume: bool,
        base: tuple[checkpoint.Run, str | os.PathLike] | None = None,
    ) -> None:
        """A fresh model (random, or a base's weights moved onto the merged vocabulary), or
        everything the last checkpoint holds; and the text as ids. A new run whose text proves
        unusable leaves nothing behind."""
        config, run_dir = self.config, self.run_dir
        saved = rundir.load_resume_state(run_dir) if resume else None
        if saved is not None:
            _check_same_training(config, saved["meta"].get("train"), run_dir)
        include = base[0].vocab if base is not None else None
        try:
            encoded = _encode(text, config, run_dir, saved, self.observer, self.stop, include)
            train_ids, val_ids = encoded.split()
            self.streams = Streams(train_ids, config.batch, config.seq_len)
        except (CharRNNError, KeyboardInterrupt):
            if saved is None:
                rundir.discard_cache(run_dir)
            raise
        self.vocab = encoded.vocab
        self.eval_ids = val_ids[: config.eval_symbols or EVAL_SYMBOLS]  # the same first ones
        lineage_meta = saved["meta"].get("init_from") if saved is not None else None
        if base is not None:
            lineage_meta = self._start_from_base(*base, train_ids)
        else:
            self.model = CharRNN(
                len(self.vocab),
                config.hidden,
                seed=config.seed,
                cell=config.cell,
                layers=config.layers,
            )
        self.optimizer = make_optimizer(config.optimizer, self.model.params)
        self.sample_rng = np.random.default_rng(config.seed + 1)
        self.state = self.model.zero_state(config.batch)  # (L, S, B, H), carried across chunks
        workers_before = None
        if saved is not None:
            self._restore(saved)
            workers_before = saved["meta"]["train"].get("workers") or 1  # older runs had one
        self.parallel = DataParallel(self.model, config.workers)
        self.meta = self._metadata(source, encoded, len(train_ids), len(val_ids), lineage_meta)
        if saved is not None:
            self.model_choice = saved["meta"].get("model_choice")
        if self.model_choice is not None:
            self.meta["model_choice"] = self.model_choice
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
                "init_from": lineage_meta,
                "workers_before": workers_before,
                "model_choice": self.model_choice,
            }
        )

    def _start_from_base(
        self, base: checkpoint.Run, init_from: str | os.PathLike, train_ids: np.ndarray
    ) -> dict:
        """The model of a run that starts from `base`: its weights moved onto this run's
        vocabulary; returns the lineage to record."""
        params = {k: v.astype(np.float32) for k, v in base.model.params.items()}
        config = self.config
        params = start_from_base(
            params, base.vocab, self.vocab, train_ids, config.cell, config.seed
        )
        self.model = CharRNN.from_params(params, config.cell)
        added = [s for s in self.vocab.symbols if s not in base.vocab]
        return lineage.record(base, init_from, added)

    def _metadata(
        self, source: dict | None, encoded: EncodedText, n_train: int, n_val: int, lineage_meta
    ) -> dict:
        """What every checkpoint of the run says about it besides its step and metrics."""
        return {
            "format": checkpoint.FORMAT,
            "format_version": checkpoint.FORMAT_VERSION,
            "model": {
                "cell": self.model.cell,
                "layers": self.model.layers,
                "vocab_size": len(self.vocab),
                "hidden_size": self.config.hidden,
                "dtype": self.model.dtype.name,
            },
            "vocab": self.vocab.to_json(),
            "train": dataclasses.asdict(self.config),
            "corpus": {
                **(source or {}),
                "symbols": len(encoded.ids),
                "train_symbols": n_train,
                "val_symbols": n_val,
                "sha256": encoded.digest,
            },
            **({"init_from": lineage_meta} if lineage_meta is not None else {}),
        }

    def _restore(self, saved: dict) -> None:
        """Weights, optimizer state, carried state, counters and generators from latest.npz."""
        meta, arrays, model = saved["meta"], saved["arrays"], self.model
        B = self.config.batch
        try:
            params, optimizer_state, state = checkpoint.unpack_arrays(arrays)
            model.params = {k: params[k] for k in model.params}
            self.optimizer = make_optimizer(self.config.optimizer, model.params)
            self.optimizer.load_state_dict(optimizer_state)
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
        loss, grads, state_next = self.parallel.loss_and_grads(
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

    def stop_if_asked(self) -> None:
        if self.stop():
            raise _Stopped

    def evaluate_and_record(self) -> None:
        """The validation loss, a sample, then the record of both, saved with a checkpoint."""
        record = self.measure()
        sample = self.sample()
        self.record(record, sample)

    def measure(self) -> dict:
        """The evaluation record: training loss since the last one, validation loss over the
        first eval_symbols of the split, speed and learning rate."""
        config, step = self.config, self.step
        record = {
            "step": step,
            "elapsed": round(self.elapsed(), 3),
            "lr": learning_rate(config, max(step - 1, 0), self.progress()),
            "train_loss": float(np.mean(self.window_losses)) if self.window_losses else None,
            "chars_per_sec": self.chars_per_sec(),
        }
        if len(self.eval_ids) > 1:
            val_loss = evaluate(self.parallel, self.eval_ids, config.seq_len, stop=self.stop)
            if val_loss is None:
                raise _Stopped
            if not math.isfinite(val_loss):
                raise DivergenceError(
                    f"validation loss is {val_loss} at step {step}; lower --lr "
                    f"(now {config.lr:g}); checkpoints on disk are the last good ones"
                )
            record["val_loss"], record["val_bpc"] = val_loss, val_loss / LN2
            record["val_symbols"] = len(self.eval_ids)
        if record["train_loss"] is not None:
            record["train_bpc"] = record["train_loss"] / LN2
        return record

    def sample(self) -> str:
        """sample_length symbols from an empty prime; a stop midway puts the sampling
        generator back, so a resume draws the same sample."""
        if not self.config.sample_length:
            return ""
        rng_before = self.sample_rng.bit_generator.state
        sampler = Sampler(self.config.sample_temperature)
        sampler.rng = self.sample_rng
        sample_ids = []
        length = self.config.sample_length
        for ids_t in generate_ids(self.model, self.vocab, "", length, 1, sampler):
            if self.stop():
                self.sample_rng.bit_generator.state = rng_before
                raise _Stopped
            sample_ids.append(ids_t)
        return self.vocab.decode(np.concatenate(sample_ids)) if sample_ids else ""

    def record(self, record: dict, sample: str) -> None:
        """Keep the evaluation (the best loss, the history, the sample for `report`), save it
        with a checkpoint and tell the observer."""
        val_loss = record.get("val_loss")
        if val_loss is not None and val_loss < self.best[0]:
            self.best = (val_loss, self.step)
        self.window_losses = []
        if sample:
            record["sample"] = sample  # kept in metrics.jsonl for `charrnn report`
        self.history.append(record)
        self.save_checkpoint(record)
        self.observer.on_eval(record, sample)

    # ---- save ---------------------------------------------------------------------------------

    def save_checkpoint(self, evaluation: dict | None = None) -> None:
        """Checkpoint the run into the run directory; after an evaluation, with its record
        (metrics.jsonl rewritten, best.npz when it is the best so far)."""
        best_loss, best_step = self.best
        metrics = {
            "best_val_loss": None if best_step is None else best_loss,
            "best_step": best_step,
        }
        if evaluation:
            metrics.update({k: v for k, v in evaluation.items() if k != "sample"})
        meta = {
            **self.meta,
            "step": self.step,
            "elapsed": self.elapsed(),
            "metrics": metrics,
            "sample_rng": self.sample_rng.bit_generator.state,
        }
        arrays = checkpoint.pack_arrays(self.model.params, self.optimizer.state_dict(), self.state)
        new_best = evaluation is not None and evaluation.get("val_loss") == best_loss
        rundir.save(
            self.run_dir,
            arrays,
            meta,
            # For an exact resume, also the evaluations so far and the losses since the last.
            resume_state={"history": self.history, "train_window": self.window_losses},
            best=new_best and best_step == self.step,
            history=self.history if evaluation is not None else None,
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
    include: Vocab | None = None,
) -> EncodedText:
    """The training text as ids, in the checkpoint's vocabulary when resuming (with `include`'s
    symbols too when starting from a base). A stop request while a large file is encoded raises
    KeyboardInterrupt: there is nothing to save."""
    unit, val_fraction = config.unit, config.val_fraction
    vocab = Vocab.from_json(state["meta"]["vocab"]) if state is not None else None
    include = vocab or include
    files = isinstance(text, (TextFile, TextFiles))
    changes = ""
    if files:

        def progress(what: str, done: int, total: int) -> None:
            if stop():
                raise KeyboardInterrupt
            observer.on_encode(what, done, total)

        before = cache_key(run_dir) if state is not None else None
        encoded = encode_file(
            text, unit, run_dir, progress, val_fraction=val_fraction, include=include
        )
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
    if files:
        return encoded
    return encode_text(text, unit, include=include, val_fraction=val_fraction, digest=digest)


def _check_same_training(config: TrainConfig, saved: object, run_dir: Path) -> None:
    """A resume may change only the budget and the reporting (RESUMABLE)."""
    if not isinstance(saved, dict):
        raise CheckpointError(f"{run_dir}: the checkpoint holds no training config")
    changed = changed_on_resume(config, saved)
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
