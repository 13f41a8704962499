"""Which model a budget trains. A budget buys each candidate a number of characters (steps x B x
T, or minutes x the candidate's speed measured on this machine); the learning curves measured at
equal characters on tinyshakespeare say which ends lower with what it gets, and that one trains.
The same rule serves --steps and --minutes on any machine. Importing it loads no NumPy: the
settings' definitions (`charrnn.config`) build on it."""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from charrnn.config import TrainConfig

# The 2-layer LSTM's settings, chosen by ten-minute runs on tinyshakespeare (docs/performance.md,
# "Text quality per minute"): 1.473 nats/char with lr 3e-3 and the wsd schedule, 1.479 at a
# constant 2e-3. In thirty minutes (1.447 in 9,206 steps, a half-speed hour) it still improved.
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
# The candidates, as settings over the TrainConfig defaults: the vanilla RNN's cheap steps, and
# the 2-layer LSTM stack that learns more from each character.
CANDIDATES = {"rnn": {}, "lstm": LONG_BUDGET}
LABELS = {"rnn": "vanilla RNN", "lstm": "2-layer LSTM"}
# Validation nats/char on tinyshakespeare (first 90% train, last 10% validation, the whole split
# with carried state) after a budget of this many characters, each candidate with its own
# settings and a schedule spanning the budget: `python scripts/bench_crossover.py` (up to 16M
# characters for the vanilla RNN, 8M for the LSTM, 2026-12-05, one BLAS thread), and the runs of
# three and ten minutes and the LSTM's thirty in docs/performance.md, "Text quality per minute"
# (their steps x B x T).
CURVES = {
    "rnn": (
        (499_200, 2.582),
        (1_000_000, 2.285),
        (2_000_000, 2.115),
        (4_000_000, 1.903),
        (8_000_000, 1.709),
        (13_868_800, 1.619),
        (16_000_000, 1.601),
        (34_440_000, 1.549),
    ),
    "lstm": (
        (499_200, 2.636),
        (998_400, 2.168),
        (2_000_000, 1.882),
        (4_000_000, 1.668),
        (4_316_800, 1.648),
        (8_000_000, 1.532),
        (17_625_600, 1.473),
        (29_459_200, 1.447),
    ),
}
PROBE_VOCAB = 100  # the vocabulary size a speed probe assumes (the text is not read yet)
PROBE_STEPS = 3  # timed training steps per candidate (the fastest counts), after a warm-up


def expected_loss(name: str, characters: float) -> float:
    """A candidate's validation loss after `characters`, from its curve: linear in
    log(characters) between measured budgets, the nearest measurement outside them."""
    points = CURVES[name]
    sizes = [c for c, _ in points]
    k = bisect.bisect_left(sizes, characters)
    if k == 0:
        return points[0][1]
    if k == len(points):
        return points[-1][1]
    (c0, v0), (c1, v1) = points[k - 1], points[k]
    share = math.log(characters / c0) / math.log(c1 / c0)
    return v0 + share * (v1 - v0)


def measure_speed(config: TrainConfig) -> float:
    """Training characters per second of `config`'s model on this machine, as training runs it
    (over its data-parallel workers), from the fastest of a few forward and backward passes
    over random ids: a pass slowed by a neighbour's burst says nothing of the budget's speed.
    The optimizer's share is left out."""
    import numpy as np

    from charrnn.model import CharRNN
    from charrnn.parallel import DataParallel, worker_count

    model = CharRNN(PROBE_VOCAB, config.hidden, cell=config.cell, layers=config.layers)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, PROBE_VOCAB, (config.batch, config.seq_len + 1))  # (B, T + 1)
    state = model.zero_state(config.batch)
    fastest = math.inf
    with (
        DataParallel(model, worker_count(config.workers, config.batch)) as parallel,
        np.errstate(all="ignore"),
    ):
        parallel.loss_and_grads(ids[:, :-1], ids[:, 1:], state)  # warm-up: buffers, threads
        for _ in range(PROBE_STEPS):
            start = time.perf_counter()
            parallel.loss_and_grads(ids[:, :-1], ids[:, 1:], state)
            fastest = min(fastest, time.perf_counter() - start)
    return config.batch * config.seq_len / fastest


@dataclass
class Choice:
    """The config a budget trains, the candidate behind it, and the line that says why."""

    config: TrainConfig
    candidate: str
    line: str
    why: str  # the budget's reason within the line, for a line made around it (a base's)

    def record(self) -> dict:
        """What the run saves about its choice (metadata "model_choice")."""
        return {"candidate": self.candidate, "line": self.line}


def describe(config: TrainConfig) -> str:
    """A model in words: "2-layer LSTM, H 256", "vanilla RNN, H 512"."""
    cell = {"rnn": "vanilla RNN", "lstm": "LSTM", "gru": "GRU"}[config.cell]
    depth = f"{config.layers}-layer " if config.layers > 1 else ""
    return f"{depth}{cell}, H {config.hidden}"


def rounded(characters: float) -> str:
    """A count of characters to two or three figures: "~17.6M", "~250K", "~96"."""
    if characters >= 1e6:
        return f"~{characters / 1e6:.3g}M"
    if characters >= 1e3:
        return f"~{characters / 1e3:.3g}K"
    return f"~{characters:.0f}"


def choose(
    make: Callable[..., TrainConfig],
    given: dict[str, Any],
    speed: Callable[[TrainConfig], float] = measure_speed,
) -> Choice:
    """The config (made by `make`, TrainConfig) of a budget and the options set (`given`, steps
    or minutes among them): the candidate of the cell given, else the one whose curve is lower
    at the characters the budget buys it, with `given` over its settings."""
    if given.get("cell") in CANDIDATES:
        name = given["cell"]
        why = f"--cell {name}: the {LABELS[name]}'s settings"
    else:
        name, why = by_budget(make, given, speed)
    config = make(**{**CANDIDATES[name], **given})
    return Choice(config, name, f"model: {describe(config)} ({why})", why)


def by_budget(
    make: Callable[..., TrainConfig], given: dict[str, Any], speed: Callable[[TrainConfig], float]
) -> tuple[str, str]:
    """The candidate whose curve is lower at the characters the budget buys it, and why."""
    configs = {name: make(**{**preset, **given}) for name, preset in CANDIDATES.items()}
    bought = {}
    for name, config in configs.items():
        if config.steps is not None:
            bought[name] = config.steps * config.batch * config.seq_len
        else:
            bought[name] = config.minutes * 60 * speed(config)
    expected = {name: expected_loss(name, bought[name]) for name in configs}
    name = min(configs, key=lambda n: (expected[n], n != "rnn"))
    other = next(n for n in configs if n != name)
    config = configs[name]
    budget = (
        f"{config.steps:,} steps"
        if config.steps is not None
        else f"{config.minutes:g} minutes at {bought[name] / config.minutes / 60:,.0f} chars/s here"
    )
    why = (
        f"{budget} buy it {rounded(bought[name])} characters, the {describe(configs[other])} "
        f"{rounded(bought[other])}; at those the curves measured on tinyshakespeare give "
        f"~{expected[name]:.2f} against ~{expected[other]:.2f} nats/char"
    )
    return name, why
