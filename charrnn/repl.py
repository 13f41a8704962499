"""The interactive prompt: the user types text and the model continues it, streaming."""

from __future__ import annotations

import contextlib
import re
import signal
import sys
from collections import deque

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from charrnn import colours
from charrnn.checkpoint import Run
from charrnn.errors import CharRNNError, ConfigError, VocabError
from charrnn.sample import Sampler, Streams, check_sampling
from charrnn.stops import StopText, unescape

HELP = [
    (":temp F", "temperature, 0 is greedy"),
    (":len N", "symbols generated per turn"),
    (":topk K", "sample among the K likeliest symbols (:topk off to stop)"),
    (":topp P", "nucleus sampling with mass P (:topp off to stop)"),
    (":seed N", "restart the random generator with seed N"),
    (":stop STR", "also end a turn where the text ends with STR (\\n is a newline; :stop off)"),
    (":show on|off", "colour each generated symbol by how sure the model was of it"),
    (":reset", "forget the conversation so far"),
    (":help", "this table"),
    (":quit", "leave (Ctrl-D too)"),
]


class Repl:
    """A conversation with a model: its hidden state carries across turns until :reset."""

    def __init__(
        self,
        run: Run,
        console: Console,
        temperature: float = 0.8,
        length: int = 300,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop: list[str] | None = None,
        keep_stop: bool = False,
    ):
        self.model, self.vocab, self.console = run.model, run.vocab, console
        self.length = length
        self.stops, self.keep_stop = list(stop or []), keep_stop
        self.sampler = Sampler(temperature, top_k, top_p, seed)
        self.streams: Streams | None = None  # the conversation so far; None before it starts
        self.show = False  # colour generated symbols by the model's surprisal (:show on)

    @property
    def state(self) -> np.ndarray | None:
        """The recurrent state the conversation has reached, (L, S, 1, H)."""
        return None if self.streams is None else self.streams.state

    def reset(self) -> None:
        self.streams = None

    def feed_text(self, text: str) -> None:
        """Run the user's text through the model after the conversation so far."""
        ids = self.vocab.encode(text)
        if self.streams is None:
            self.streams = Streams(self.model, self.model.zero_state(1))
        self.streams.feed(ids)

    def generate(self) -> None:
        """Stream `length` symbols; Ctrl-C stops early and keeps the state reached."""
        if self.streams is None:
            start = "\n" if "\n" in self.vocab else self.vocab.symbols[0]
            self.feed_text(start)
        out = sys.stdout
        stopped = False

        def on_interrupt(signum, frame) -> None:
            nonlocal stopped
            stopped = True  # checked between symbols: every symbol shown is also fed

        previous = signal.signal(signal.SIGINT, on_interrupt)
        cut = StopText(self.stops, self.keep_stop)
        held: deque[tuple[str, Text | None]] = deque()  # drawn symbols not shown yet
        try:
            for _ in range(self.length):
                if stopped or cut.stop is not None:
                    break
                ids = self.sampler.draw(self.streams.logits)
                symbol = self.vocab.symbols[ids[0]]
                held.append((symbol, self.shaded(symbol, ids[0]) if self.show else None))
                self.show_text(cut.push(symbol), held)
                self.streams.push(ids)
            self.show_text(cut.flush(), held)
        finally:
            signal.signal(signal.SIGINT, previous)
        out.write("\n")
        out.flush()
        if stopped:
            self.console.print("[dim](stopped)[/dim]")

    def show_text(self, text: str, held: deque[tuple[str, Text | None]]) -> None:
        """Print `text`, the held symbols it begins with in their :show colours (a stop
        string kept by --keep-stop plainly)."""
        while held and text.startswith(held[0][0]):
            symbol, shaded = held.popleft()
            text = text[len(symbol) :]
            if shaded is not None and symbol != "\n":
                self.console.print(shaded, end="")
            else:
                sys.stdout.write(symbol)
        if text:
            held.clear()  # the rest is a kept stop string
            sys.stdout.write(text)
        sys.stdout.flush()

    def command(self, line: str) -> bool:
        """Apply a `:command`; returns False when the user asked to quit."""
        name, _, value = line[1:].strip().partition(" ")
        value = value.strip()
        s = self.sampler
        try:
            if name in ("quit", "q", "exit"):
                return False
            if name == "help":
                table = Table(show_header=False)
                for cmd, what in HELP:
                    table.add_row(cmd, what)
                self.console.print(table)
            elif name == "reset":
                self.reset()
                self.console.print("[dim]state forgotten[/dim]")
            elif name == "temp":
                check_sampling(float(value), s.top_k, s.top_p)
                s.temperature = float(value)
            elif name == "len":
                if int(value) < 0:
                    raise ConfigError(f"length must be >= 0, got {value}")
                self.length = int(value)
            elif name == "topk":
                top_k = None if value == "off" else int(value)
                check_sampling(s.temperature, top_k, s.top_p)
                s.top_k = top_k
            elif name == "topp":
                top_p = None if value == "off" else float(value)
                check_sampling(s.temperature, s.top_k, top_p)
                s.top_p = top_p
            elif name == "stop":
                self.stops = [] if value == "off" else [*self.stops, unescape(value)]
            elif name == "seed":
                s.rng = np.random.default_rng(int(value))
            elif name == "show":
                if value not in ("on", "off"):
                    raise ValueError(value)
                self.show = value == "on"
                self.console.print(
                    f"show {value}: pale where the model was sure, red where it guessed",
                    markup=False,
                )
            else:
                self.console.print(f"unknown command :{name}; :help lists them", markup=False)
                return True
            if name not in ("help", "reset", "show"):
                self.console.print(self.settings(), markup=False)
        except ValueError:
            self.console.print(f"bad value for :{name}: {value!r}", markup=False)
        except CharRNNError as exc:
            self.console.print(f"error: {exc}", markup=False)
        return True

    def settings(self) -> str:
        s = self.sampler
        stops = ", ".join(repr(stop) for stop in self.stops)
        return (
            f"temperature {s.temperature:g}, length {self.length}, "
            f"top-k {s.top_k or 'off'}, top-p {s.top_p or 'off'}"
        ) + (f", stop {stops}" if stops else "")

    def shaded(self, symbol: str, drawn: int) -> Text:
        """The symbol on the heat-map colour of its surprisal under the model's own
        distribution (temperature 1): pale where the model was sure, red where it guessed."""
        logits = self.streams.logits[0].astype(np.float64)  # (V,)
        log_p = logits[drawn] - logits.max() - np.log(np.exp(logits - logits.max()).sum())
        rgb = colours.surprisal_rgb(-log_p / np.log(2))
        return Text(symbol, style=f"#000000 on {colours.hex_colour(rgb)}")

    def prompt(self, readline: bool) -> str:
        """The styled prompt as a string for input(), so that readline knows its width.

        Printed apart from input() (as Console.input does), readline would think the line
        starts empty and erase the prompt when it redraws, e.g. on a history arrow key.
        """
        with self.console.capture() as capture:
            self.console.print("[bold cyan]>>> [/]", end="")
        text = capture.get()
        if readline:  # mark escape codes as zero-width
            text = re.sub(r"\x1b\[[0-9;]*m", lambda m: f"\001{m[0]}\002", text)
        return text

    def loop(self) -> None:
        has_readline = False
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401  (arrow keys and history for input())

            has_readline = True
        prompt = self.prompt(has_readline)
        self.console.print(
            f"charrnn repl: vocab {len(self.vocab)}, hidden {self.model.hidden_size}. "
            "Type text and the model goes on; Enter alone continues; :help for commands.",
            markup=False,
        )
        self.console.print(self.settings(), markup=False)
        while True:
            try:
                line = input(prompt)
            except KeyboardInterrupt:
                self.console.print()
                continue
            except EOFError:
                self.console.print()
                return
            if line.startswith(":"):
                if not self.command(line):
                    return
                continue
            try:
                if line:
                    self.feed_text(line)
            except VocabError as exc:
                self.console.print(f"error: {exc}", markup=False)
                continue
            self.generate()
