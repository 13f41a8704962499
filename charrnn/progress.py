"""Progress on a terminal, in a notebook cell, or as plain lines in a log: the rich views of
training and downloads that the CLI draws, and that `train` shows by itself in Jupyter."""

from __future__ import annotations

import errno
import functools
import math
import os
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from charrnn.corpus import CHUNK_BYTES, first_names
from charrnn.observe import Observer, StepStats

LN2 = math.log(2)


class PipeConsole(Console):
    """rich's Console, except that a closed pipe raises BrokenPipeError instead of exiting
    with status 1: training saves its checkpoint before it stops."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


def console(stderr: bool = False) -> Console:
    """Rich on a terminal (NO_COLOR respected by rich); unwrapped plain lines elsewhere."""
    out = PipeConsole(stderr=stderr, highlight=False)
    if not out.is_terminal:
        out = PipeConsole(stderr=stderr, highlight=False, soft_wrap=True, width=max(out.width, 120))
    return out


def live(out: Console) -> bool:
    """Whether `out` shows live bars and panels: a terminal, or a Jupyter notebook's cell."""
    return out.is_terminal or out.is_jupyter


def byte_bar(out: Console, description: str, transient: bool = False) -> Progress:
    """A progress bar of bytes: done and in all, speed, time left (reading or downloading)."""
    return Progress(
        TextColumn(description),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=out,
        transient=transient,
    )


def _log_guard(method):
    """A write of the log that fails (a closed pipe, a full disk, a terminal gone) asks the
    trainer to save and stop, instead of raising out of the training loop; nothing more is
    shown after it."""

    @functools.wraps(method)
    def guarded(self, *args) -> None:
        if self.log_error is None:
            try:
                method(self, *args)
            except OSError as exc:
                self.log_error = exc
                if self.stop_flag is not None:
                    self.stop_flag.requested = True

    return guarded


class RichObserver(Observer):
    """Progress bar, evaluation lines and samples on a terminal or in a notebook cell; plain
    lines elsewhere. `stop`, when given, is set (`stop.requested = True`) if the log fails."""

    def __init__(
        self,
        out: Console,
        total_steps: int | None,
        minutes: float | None,
        eval_every: int,
        stop=None,
    ):
        self.out = out
        self.stop_flag = stop
        self.log_error: OSError | None = None  # the write that failed; nothing is shown after it
        self.total_steps, self.minutes = total_steps, minutes
        self.log_every = max(1, eval_every // 5)
        self.val_symbols = 0  # size of the validation split, from on_start
        self.progress: Progress | None = None
        self.task = None
        self.started: Callable[[Path], None] | None = None  # called with the run directory
        self.encoding: Progress | None = None  # the corpus encoding bar, on a terminal
        self.encoding_task, self.encoding_what, self.encoding_logged = None, None, None

    @_log_guard
    def on_encode(self, what: str, done: int, total: int) -> None:
        if total <= CHUNK_BYTES:  # one chunk: over before anyone could read a bar
            return
        if live(self.out):
            if self.encoding is None:
                self.encoding = byte_bar(self.out, "{task.description} corpus", transient=True)
                self.encoding.start()
            if self.encoding_task is None or self.encoding_what != what:
                self.encoding_task = self.encoding.add_task(what, total=total)
                self.encoding_what = what
            self.encoding.update(self.encoding_task, completed=done)
            if what == "encoding" and done >= total:
                self.encoding.stop()
        else:
            tenth = 10 * done // total
            if (what, tenth) != self.encoding_logged:
                self.encoding_logged = (what, tenth)
                self.out.print(f"{what} corpus: {done / 2**20:,.0f} of {total / 2**20:,.0f} MiB")

    @_log_guard
    def on_start(self, info: dict) -> None:
        if self.encoding is not None:
            self.encoding.stop()
        if self.started is not None:
            self.started(Path(info["run_dir"]))
        c = info["config"]
        choice = info.get("model_choice")
        if choice is not None:
            kept = " [kept from the run's start]" if info["step"] else ""
            self.out.print(choice["line"] + kept, markup=False)
        self.val_symbols = info["val_symbols"]
        evaluated = info["eval_symbols"]
        self.out.print(
            f"run {info['run_dir']}: {info['train_symbols']:,} training and "
            f"{info['val_symbols']:,} validation symbols"
            + (f" (the first {evaluated:,} evaluated)" if evaluated < info["val_symbols"] else "")
            + f", vocab {info['vocab_size']}, "
            f"{info['params']:,} parameters, {c.cell} {c.layers} x {c.hidden}, batch {c.batch} "
            f"x seq-len "
            f"{c.seq_len}, {c.optimizer} lr {c.lr:g}, {c.workers} worker{'s' * (c.workers > 1)}"
            + (f", resuming at step {info['step']:,}" if info["step"] else ""),
            markup=False,
        )
        before = info.get("workers_before")
        if before is not None and before != c.workers:
            self.out.print(
                f"resuming with {c.workers} workers where the run had {before}: it goes on, "
                "but not bit for bit (the gradients are summed in other groups)",
                markup=False,
            )
        skipped = info.get("skipped", ())
        if skipped:
            self.out.print(
                f"skipped {len(skipped)} file{'s' if len(skipped) > 1 else ''} that "
                f"{'are' if len(skipped) > 1 else 'is'} not text: {first_names(skipped)}",
                markup=False,
            )
        if live(self.out):
            self.progress = Progress(
                TextColumn("step {task.fields[step]:>6,}"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("loss {task.fields[loss]:.3f}"),
                TextColumn("{task.fields[bpc]:.3f} bits/char"),
                TextColumn("{task.fields[cps]:>9,.0f} chars/s"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.out,
            )
            total = self.total_steps or (self.minutes * 60 if self.minutes else None)
            self.task = self.progress.add_task(
                "train", total=total, step=info["step"], loss=math.nan, bpc=math.nan, cps=0.0
            )
            self.progress.start()

    @_log_guard
    def on_step(self, s: StepStats) -> None:
        if self.progress is not None:
            done = s.step if self.total_steps else s.elapsed
            self.progress.update(
                self.task,
                completed=done,
                step=s.step,
                loss=s.loss,
                bpc=s.loss / LN2,
                cps=s.chars_per_sec,
            )
        elif s.step % self.log_every == 0:
            self.out.print(
                f"step {s.step:,}  loss {s.loss:.4f}  {s.loss / LN2:.3f} bits/char  "
                f"{s.chars_per_sec:,.0f} chars/s  lr {s.lr:.2e}  elapsed {s.elapsed:.1f}s"
            )

    @_log_guard
    def on_eval(self, record: dict, text: str) -> None:
        line = f"eval at step {record['step']:,}:"
        if record.get("train_loss") is not None:
            line += f" train {record['train_loss']:.4f} nats/char"
        if "val_loss" in record:
            line += (
                f", validation {record['val_loss']:.4f} nats/char "
                f"({record['val_bpc']:.3f} bits/char)"
            )
            if record["val_symbols"] < self.val_symbols:
                line += f" over its first {record['val_symbols']:,} symbols"
        target = self.progress.console if self.progress else self.out
        target.print(line)
        if text:
            if live(self.out):
                target.print(
                    Panel(text, title="sample", title_align="left", expand=False), markup=False
                )
            else:
                target.print("sample: " + text.replace("\n", "\n        "), markup=False)

    @_log_guard
    def stop(self) -> None:
        for bar in (self.encoding, self.progress):
            if bar is not None:
                bar.stop()


class DownloadProgress:
    """A download's bar (bytes, speed, ETA) on a terminal; a line each tenth elsewhere."""

    def __init__(self, out: Console) -> None:
        self.out = out
        self.bar: Progress | None = None
        self.task = None
        self.logged: tuple[str, int] | None = None

    def __call__(self, what: str, done: int, total: int | None) -> None:
        if what.startswith("retrying"):
            self.stop()
            self.out.print(what, markup=False)
            return
        if live(self.out):
            if self.bar is None:
                self.bar = byte_bar(self.out, "{task.description}")
                self.bar.start()
                self.task = self.bar.add_task(escape(what), total=total)
            self.bar.update(self.task, completed=done, total=total)
        else:
            step = 10 * done // total if total else done >> 23  # tenths, or every 8 MiB
            if (what, step) != self.logged:
                self.logged = (what, step)
                of = f" of {total / 2**20:,.1f}" if total else ""
                self.out.print(f"{what}: {done / 2**20:,.1f}{of} MiB", markup=False)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
