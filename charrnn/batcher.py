"""Generation for many clients at once: one thread steps every open stream of every request
together, one GEMM per layer a step, as `sample --num` steps its streams; requests join and
leave between steps."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from charrnn.checkpoint import Run
from charrnn.parallel import worker_count
from charrnn.sample import Sampler, draw_together, open_streams
from charrnn.stops import StopText


@dataclass
class Choice:
    """One stream of a request: the text shown so far, how it ended, and its stop cutter."""

    cut: StopText
    text: list[str] = field(default_factory=list)
    symbols: int = 0  # generated, stop string included
    finish_reason: str | None = None  # "stop" or "length" once ended


class Job:
    """A request's streams (its prompt's ids, `n` choices, its sampler and limits); the engine
    appends text as it is made (no lock: one writer, and each choice's text is complete
    before its finish_reason is set) and a handler thread waits for it with `wait`."""

    def __init__(
        self,
        prompt_ids: np.ndarray,
        n: int,
        max_tokens: int,
        sampler: Sampler,
        stops: Sequence[str] = (),
        seeded: bool = False,
    ) -> None:
        self.prompt_ids, self.max_tokens, self.sampler = prompt_ids, max_tokens, sampler
        self.seeded = seeded  # draws from its own generator (repeatable), else the batcher's
        self.choices = [Choice(StopText(stops)) for _ in range(n)]
        self.prompt_symbols = len(prompt_ids)  # for usage (0 when the prompt was empty)
        self.news = threading.Event()  # set when text comes while a reader waits for it
        self.wanted = False  # a reader waits on `news`: the engine sets it only then
        self.ended = threading.Event()  # set once done: a whole answer waits on this alone
        self.made = 0  # symbols handed over so far: a reader's cheap test for news
        self.cancelled = False  # the client went away: the engine drops the job's streams
        self.cut_off = False  # the server stopped before the job ended

    @property
    def done(self) -> bool:
        return self.cut_off or all(c.finish_reason for c in self.choices)

    def wait(self, seen: int, timeout: float) -> None:
        """Wait up to `timeout` seconds for more than `seen` symbols, or the end."""
        if self.made != seen or self.done:
            return
        self.news.clear()
        self.wanted = True
        if self.made == seen and not self.done:  # nothing came while it was being armed
            self.news.wait(timeout)

    def take(self, sent: list[int]) -> list[str]:
        """Each choice's text made since `sent` (pieces already taken, updated): only the new
        pieces are joined, so a long text costs no more per flush than a short one."""
        pieces = []
        for i, choice in enumerate(self.choices):
            made = len(choice.text)
            pieces.append("".join(choice.text[sent[i] : made]))
            sent[i] = made
        return pieces

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class _Row:
    """One stream in the batch: its job, which choice, and how much of the prompt it has read."""

    job: Job
    choice: int
    read: int = 0  # prompt symbols fed so far

    @property
    def reading(self) -> bool:
        return self.read < len(self.job.prompt_ids)


class Batcher:
    """Steps up to `capacity` streams at once in its own thread. `submit` admits a job if its
    streams fit beside those open (else False: the caller answers 503); `close` stops."""

    def __init__(self, run: Run, capacity: int, workers: int | None = None) -> None:
        self.vocab, self.capacity = run.vocab, capacity
        self.model = run.model
        # threads that step the streams' slices
        self.streams = open_streams(run.model, 0, worker_count(workers, capacity))
        self.rows: list[_Row] = []
        self.plan: tuple | None = None  # who draws with whom, until the rows change
        self.rng = np.random.default_rng()  # for every request without a seed
        self.waiting: list[Job] = []
        self.open_streams = 0  # rows plus waiting jobs' choices, counted at admission
        self.lock = threading.Condition()
        self.closing = False  # no new jobs
        self.cutting = False  # stop stepping open ones too
        self.thread = threading.Thread(target=self._loop, name="charrnn-batcher", daemon=True)
        self.thread.start()

    def submit(self, job: Job) -> bool:
        """Queue a job for the next step; False when its streams do not fit or we are closing."""
        with self.lock:
            n = len(job.choices)
            if self.closing or self.open_streams + n > self.capacity:
                return False
            self.open_streams += n
            self.waiting.append(job)
            self.lock.notify()
        return True

    def close(self) -> None:
        """Stop stepping now: every job not yet done is cut off (its handler ends its reply)."""
        with self.lock:
            self.closing = self.cutting = True
            self.lock.notify()
        self.thread.join()
        self.streams.close()
        self._cut_off([row.job for row in self.rows] + self.waiting)

    def refuse_new(self) -> None:
        """Admit no more jobs (a stop is coming); the open ones go on to their end."""
        with self.lock:
            self.closing = True
            self.lock.notify()

    @property
    def busy(self) -> int:
        """Streams open or admitted."""
        with self.lock:
            return self.open_streams

    def _loop(self) -> None:
        while True:
            with self.lock:
                while not self.rows and not self.waiting and not self.closing:
                    self.lock.wait()
                if self.cutting or (self.closing and not self.rows and not self.waiting):
                    return
                joining, self.waiting = self.waiting, []
            try:
                self._step(joining)
            except Exception as exc:  # a fault in one step ends its jobs, not the server
                print(f"charrnn serve: generation failed ({exc!r}); its requests are cut off")
                self._cut_off([row.job for row in self.rows] + joining)
                self.rows, self.plan = [], None
                self.streams.reset(self.model.zero_state(0))
                with self.lock:
                    self.open_streams = sum(len(job.choices) for job in self.waiting)

    @staticmethod
    def _cut_off(jobs: list[Job]) -> None:
        for job in jobs:
            job.cut_off = True
            job.news.set()
            job.ended.set()

    def _step(self, joining: list[Job]) -> None:
        """Draw a symbol for each stream past its prompt, hand it to its job, then feed every
        stream its next symbol (drawn, or the prompt's) with leavers dropped and joiners added.
        Who draws with whom is planned again only when that changes."""
        rows, logits = self.rows, self.streams.logits
        if self.plan is None:
            self.plan = self._make_plan()
        groups, reading, jobs = self.plan
        inputs = np.zeros(len(rows), np.int64)
        for i in reading:
            row = rows[i]
            inputs[i] = row.job.prompt_ids[row.read]
            row.read += 1
        ended = False
        for group, job_rows, where, counts, samplers, draws in groups:
            drawn = draw_together(samplers, logits if where is None else logits[where], draws)
            inputs[slice(None) if where is None else where] = drawn
            start = 0
            for job, its_rows, n in zip(group, job_rows, counts, strict=True):
                ended |= self._hand_over(job, its_rows, drawn[start : start + n])
                start += n
        if any(not rows[i].reading for i in reading):
            self.plan = None  # a stream that finished its prompt draws from the next step on
        if ended or joining or any(job.cancelled for job in jobs):
            keep = [i for i, row in enumerate(rows) if not self._left(row)]
            with self.lock:
                self.open_streams -= len(rows) - len(keep)
            joined = [_Row(job, c, read=1) for job in joining for c in range(len(job.choices))]
            self.streams.regroup(keep, len(joined))
            first_ids = np.array([r.job.prompt_ids[0] for r in joined], np.int64)
            inputs = np.concatenate([inputs[keep], first_ids])  # (B,) int64
            self.rows = [rows[i] for i in keep] + joined
            self.plan = None
        if self.rows:
            self.streams.push(inputs)

    def _make_plan(self) -> tuple[list, list[int], set[Job]]:
        """(groups, rows reading prompts, jobs). Per group of jobs sharing their settings: the
        jobs (seeded first), each one's drawing rows, their places in the batch (None: all, in
        order), their counts, and the samplers drawing them with their counts: a seeded job's
        own, and one on the batcher's generator for all the unseeded (one draw, not many)."""
        by_job: dict[Job, list[int]] = {}
        reading = []
        for i, row in enumerate(self.rows):
            if row.reading:
                reading.append(i)
            else:
                by_job.setdefault(row.job, []).append(i)
        by_settings: dict[tuple, list[Job]] = {}
        for job in sorted(by_job, key=lambda job: not job.seeded):
            s = job.sampler
            by_settings.setdefault((s.temperature, s.top_k, s.top_p), []).append(job)
        groups = []
        for (temperature, top_k, top_p), group in by_settings.items():
            where = [i for job in group for i in by_job[job]]
            every = where == list(range(len(self.rows)))  # no copy of the logits needed
            job_rows = [[self.rows[i] for i in by_job[job]] for job in group]
            counts = [len(by_job[job]) for job in group]
            seeded = [job for job in group if job.seeded]
            samplers = [job.sampler for job in seeded]
            draws = counts[: len(seeded)]
            if len(seeded) < len(group):
                shared = Sampler(temperature, top_k, top_p)
                shared.rng = self.rng
                samplers.append(shared)
                draws.append(sum(counts[len(seeded) :]))
            place = None if every else np.array(where)
            groups.append((group, job_rows, place, counts, samplers, draws))
        return groups, reading, {row.job for row in self.rows}

    def _hand_over(self, job: Job, rows: list[_Row], drawn: np.ndarray) -> bool:
        """Give a job its streams' symbols; whether one of its choices ended."""
        symbols, ended = self.vocab.symbols, False
        for row, i in zip(rows, drawn, strict=True):
            choice = job.choices[row.choice]
            choice.symbols += 1
            choice.text.append(choice.cut.push(symbols[i]))
            if choice.cut.stop is not None:
                choice.finish_reason = "stop"
                ended = True
            elif choice.symbols >= job.max_tokens:
                choice.text.append(choice.cut.flush())
                choice.finish_reason = "length"
                ended = True
        job.made += len(rows)
        if job.wanted or ended:
            job.wanted = False
            job.news.set()
        if ended and job.done:
            job.ended.set()
        return ended

    @staticmethod
    def _left(row: _Row) -> bool:
        """Whether the row's stream ends now (its choice ended, or its client went away)."""
        return row.job.cancelled or row.job.choices[row.choice].finish_reason is not None
