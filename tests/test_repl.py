"""`charrnn repl` driven through a pseudo-terminal with pexpect, as a person would use it."""

from __future__ import annotations

import io
import os
import re
import signal
import sys

import numpy as np
import pexpect
import pytest
from rich.console import Console

import charrnn
from charrnn import html
from charrnn.repl import Repl
from charrnn.sample import Streams

PROMPT = ">>> "
SETTINGS = re.compile(r"temperature (\S+), length (\d+), top-k (\S+), top-p (\S+)\r\n")


class Session:
    """One `charrnn repl RUN` process on a pseudo-terminal."""

    def __init__(self, run_dir, *extra: str):
        env = dict(os.environ, NO_COLOR="1", TERM="dumb")
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "charrnn", "repl", str(run_dir), *extra],
            env=env,
            encoding="utf-8",
            timeout=30,
            dimensions=(40, 200),
        )
        self.child.expect_exact(PROMPT)
        self.banner = self.child.before

    def send(self, line: str) -> str:
        """Type a line, wait for the next prompt; the output in between, without the echo."""
        self.child.sendline(line)
        self.child.expect_exact(PROMPT)
        echoed, newline, output = self.child.before.partition("\r\n")
        assert echoed == line and newline, (line, self.child.before)
        return output.replace("\r\n", "\n")

    def settings(self, line: str) -> tuple[str, str, str, str]:
        """Run a command and return the settings line it prints."""
        self.child.sendline(line)
        self.child.expect(SETTINGS)
        groups = self.child.match.groups()
        self.child.expect_exact(PROMPT)
        return groups

    def finish(self, timeout: float = 30) -> int:
        self.child.expect(pexpect.EOF, timeout=timeout)
        self.child.close()
        return self.child.exitstatus

    def kill(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)


@pytest.fixture
def repl(trained_run):
    sessions = []

    def start(*extra: str) -> Session:
        session = Session(trained_run.dir, *extra)
        sessions.append(session)
        return session

    yield start
    for session in sessions:
        session.kill()


@pytest.fixture(scope="module")
def loaded(trained_run):
    return charrnn.load(trained_run.dir)


def greedy(loaded, prime: str, length: int) -> str:
    return "".join(charrnn.generate(loaded.model, loaded.vocab, prime, length, temperature=0))


def test_prompt_and_banner(repl, trained_run):
    """The REPL greets with the model's size and the settings, then shows the `>>> ` prompt."""
    session = repl("--seed", "1")
    vocab_size = trained_run.config["model"]["vocab_size"]
    assert f"vocab {vocab_size}, hidden 16" in session.banner
    assert "temperature 0.8, length 300, top-k off, top-p off" in session.banner
    session.child.sendline(":quit")
    assert session.finish() == 0


def test_text_is_continued(repl, trained_run):
    """Typed text of known symbols gets a continuation of `length` known symbols and a new
    prompt; Enter alone continues again."""
    session = repl("--seed", "1")
    assert session.settings(":len 40")[1] == "40"
    out = session.send("the quick brown fox")
    assert out.endswith("\n")
    assert len(out[:-1]) == 40
    assert set(out[:-1]) <= trained_run.vocab
    again = session.send("")
    assert len(again[:-1]) == 40 and set(again[:-1]) <= trained_run.vocab


def test_greedy_continuation_carries_state_until_reset(repl, loaded):
    """At temperature 0 the continuation is exactly the model's argmax path; the next turn
    continues the whole conversation; after :reset the same input gives the first answer."""
    session = repl("--seed", "1", "--temperature", "0", "--length", "30")
    first = session.send("the quick")[:-1]
    assert first == greedy(loaded, "the quick", 30)
    second = session.send("the quick")[:-1]
    assert second == greedy(loaded, "the quick" + first + "the quick", 30)
    assert session.send(":reset").strip() == "state forgotten"
    assert session.send("the quick")[:-1] == first


def test_temp_command(repl):
    """`:temp 0.5` is acknowledged with the settings line, and greedy `:temp 0` repeats itself
    after `:reset` whatever the random state."""
    session = repl("--seed", "1")
    assert session.settings(":temp 0.5") == ("0.5", "300", "off", "off")
    assert session.settings(":temp 0") == ("0", "300", "off", "off")
    session.settings(":len 25")
    a = session.send("the")
    session.send(":reset")
    session.settings(":seed 99")
    assert session.send("the") == a


def test_len_topk_topp_seed_commands(repl, trained_run):
    """`:len`, `:topk`, `:topp` and `:seed` each update and print the settings; `:seed N`
    restarts the generator, so the same input after :reset gives the same sample."""
    session = repl("--seed", "1")
    assert session.settings(":len 20") == ("0.8", "20", "off", "off")
    assert session.settings(":topk 3") == ("0.8", "20", "3", "off")
    assert session.settings(":topp 0.9") == ("0.8", "20", "3", "0.9")
    assert session.settings(":seed 4") == ("0.8", "20", "3", "0.9")
    a = session.send("the")
    assert len(a[:-1]) == 20 and set(a[:-1]) <= trained_run.vocab
    session.send(":reset")
    session.settings(":seed 4")
    assert session.send("the") == a
    assert session.settings(":topk off")[2] == "off"
    assert session.settings(":topp off")[3] == "off"


def test_help_lists_commands(repl):
    """`:help` lists every command."""
    session = repl()
    out = session.send(":help")
    for command in (":temp", ":len", ":topk", ":topp", ":seed", ":reset", ":help", ":quit"):
        assert command in out, command


def test_unknown_symbols_are_an_error_and_the_repl_goes_on(repl, trained_run):
    """Input with unknown symbols prints an error naming them; the next input still works."""
    session = repl("--seed", "1", "--length", "10")
    out = session.send("the QUIZ")
    assert out.startswith("error: ") and "'Q'" in out and "'Z'" in out
    assert "'t'" not in out
    assert session.child.isalive()
    ok = session.send("the quiz")
    assert len(ok[:-1]) == 10 and set(ok[:-1]) <= trained_run.vocab


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (":temp -1", "temperature must be"),
        (":topk 0", "top-k must be"),
        (":topp 1.5", "top-p must be"),
        (":len -3", "length must be"),
        (":len many", "bad value for :len"),
        (":frobnicate", "unknown command :frobnicate"),
    ],
)
def test_bad_command_is_an_error_and_settings_stay(repl, line, message):
    """A bad command prints an error, changes no setting and the REPL keeps going."""
    session = repl("--length", "12")
    out = session.send(line)
    assert message in out
    assert "Traceback" not in out
    assert session.settings(":seed 1") == ("0.8", "12", "off", "off")


def test_quit_exits_zero(repl):
    """`:quit` ends the REPL with exit status 0."""
    session = repl()
    session.child.sendline(":quit")
    assert session.finish() == 0


def test_ctrl_d_exits_zero(repl):
    """Ctrl-D at the prompt ends the REPL with exit status 0."""
    session = repl()
    session.child.sendeof()
    assert session.finish() == 0


def test_ctrl_c_stops_a_long_generation(repl):
    """Ctrl-C during a very long generation stops it and returns to the prompt; :quit works."""
    session = repl("--seed", "1")
    session.settings(":len 100000000")
    session.child.sendline("the")
    session.child.expect(r"the\r\n.{200}", timeout=30)  # generation is under way
    session.child.sendintr()
    session.child.expect_exact("(stopped)", timeout=30)
    session.child.expect_exact(PROMPT, timeout=30)
    assert session.settings(":len 5")[1] == "5"
    session.child.sendline(":quit")
    assert session.finish() == 0


def test_arrow_keys_recall_history_and_keep_the_prompt(repl, loaded):
    """Up arrow recalls earlier input for another turn; Down arrow back to an empty line
    redraws the line with its `>>> ` prompt instead of erasing it."""
    session = repl("--temperature", "0", "--length", "15")
    first = session.send("the quick")
    assert first == greedy(loaded, "the quick", 15) + "\n"
    session.send(":reset")
    session.child.send("\x1b[A\x1b[A")  # up twice: past ":reset" to "the quick"
    session.child.expect_exact("the quick")
    session.child.send("\r")
    session.child.expect_exact(PROMPT)
    assert session.child.before.replace("\r\n", "\n").endswith("\n" + first)
    session.child.send("\x1b[A")
    session.child.expect_exact("the quick")
    session.child.send("\x1b[B")
    session.child.expect_exact(PROMPT, timeout=5)
    session.child.sendline(":quit")
    assert session.finish() == 0


def test_ctrl_c_at_the_prompt_keeps_going(repl):
    """Ctrl-C at an idle prompt gives a fresh prompt instead of ending the REPL."""
    session = repl()
    session.child.sendintr()
    session.child.expect_exact(PROMPT)
    assert session.child.isalive()
    assert session.settings(":len 7")[1] == "7"
    session.child.sendline(":quit")
    assert session.finish() == 0


class InterruptingWriter(io.StringIO):
    """A stdout that sends this process SIGINT once `stop_after` characters are written."""

    def __init__(self, stop_after: int) -> None:
        super().__init__()
        self.stop_after = stop_after

    def write(self, text: str) -> int:
        n = super().write(text)
        if len(self.getvalue()) == self.stop_after:
            os.kill(os.getpid(), signal.SIGINT)
        return n


@pytest.mark.parametrize("stop_after", [1, 7, 30])
def test_interrupted_generation_keeps_the_state_of_the_text_shown(loaded, monkeypatch, stop_after):
    """A Ctrl-C that lands at any point of a generation leaves the conversation state exactly
    that of the prompt plus every symbol shown, so the next turn continues what was seen."""
    writer = InterruptingWriter(stop_after)
    monkeypatch.setattr(sys, "stdout", writer)
    repl = Repl(loaded, Console(file=io.StringIO()), temperature=1.0, length=10_000, seed=3)
    repl.feed_text("the")
    repl.generate()
    text = writer.getvalue().removesuffix("\n")
    assert len(text) == stop_after
    expected = Streams(loaded.model, loaded.model.zero_state(1))
    expected.feed(loaded.vocab.encode("the" + text))
    np.testing.assert_array_equal(repl.state, expected.state)


def test_show_colours_each_symbol_by_surprisal(trained_run, monkeypatch):
    """`:show on` on a colour terminal puts each generated symbol on the heat-map colour of its
    surprisal under the model (24-bit escape codes); the text itself is what `:show off`
    prints; NO_COLOR turns colours off."""
    ansi = re.compile(r"\x1b\[[0-9;]*m")
    outputs = {}
    for no_color in (False, True):
        env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
        env.update(
            TERM="xterm-256color", COLORTERM="truecolor", **({"NO_COLOR": "1"} if no_color else {})
        )
        child = pexpect.spawn(
            sys.executable,
            ["-m", "charrnn", "repl", str(trained_run.dir), "--temperature", "0", "--length", "30"],
            env=env, encoding="utf-8", timeout=30, dimensions=(40, 200),
        )  # fmt: skip
        try:
            child.expect_exact(">>> ")
            for setting in ("off", "on"):
                child.sendline(f":show {setting}")
                child.expect_exact(f"show {setting}")
                child.expect_exact(">>> ")
                child.sendline(":reset")
                child.expect_exact(">>> ")
                child.sendline("the ")
                child.expect_exact(">>> ", timeout=30)
                _, _, output = child.before.partition("\r\n")  # after the echoed line
                outputs[no_color, setting] = output.replace("\r\n", "\n")
            child.sendline(":quit")
            child.expect(pexpect.EOF)
        finally:
            child.terminate(force=True)
    plain, shown = outputs[False, "off"], outputs[False, "on"]
    assert "\x1b[" not in ansi.sub("", plain)
    generated = ansi.sub("", shown).removesuffix("\n")  # 30 symbols; newlines stay plain
    assert len(generated) == 30
    backgrounds = re.findall(r"\x1b\[[0-9;]*48;[0-9;]*m", shown)
    assert len(backgrounds) == 30 - generated.count("\n") > 20
    assert ansi.sub("", shown) == ansi.sub("", plain) and ansi.sub("", plain).strip()
    assert "48;" not in outputs[True, "on"]  # NO_COLOR: no background colours
    assert ansi.sub("", outputs[True, "on"]) == ansi.sub("", plain)
    # Each colour is the heat-map colour of that symbol's surprisal, recomputed here from the
    # model's own step: greedy symbols after "the " from a zero state.
    run = charrnn.load(trained_run.dir, "best")
    model, vocab = run.model, run.vocab
    state = model.zero_state(1)
    for i in vocab.encode("the "):
        logits, state = model.step(np.array([i]), state)
    shaded = re.findall(r"\x1b\[[0-9;]*48;2;(\d+);(\d+);(\d+)m([^\x1b])", shown)
    expected, surprisals = [], []
    for symbol in generated:
        z = logits[0].astype(np.float64)
        drawn = int(np.argmax(z))
        assert vocab.symbols[drawn] == symbol
        bits = (np.log(np.exp(z - z.max()).sum()) + z.max() - z[drawn]) / np.log(2)
        if symbol != "\n":
            expected.append((*html.surprisal_rgb(bits), symbol))
            surprisals.append(bits)
        logits, state = model.step(np.array([drawn]), state)
    got = [(int(r), int(g), int(b), symbol) for r, g, b, symbol in shaded]
    assert got == expected
    # inside the scale, where a colour tells surprisals apart, and not one colour for all
    assert min(surprisals) > 0 and max(surprisals) < html.SCALE_BITS
    assert len({e[:3] for e in expected}) > 5
