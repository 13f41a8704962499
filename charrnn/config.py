"""A run's settings, each defined once: its type, default, range and help. `TrainConfig.check`
and `charrnn train`'s options are both made from these definitions, so Python and the command
line accept and refuse the same values with the same words."""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from charrnn import budget
from charrnn.budget import LONG_BUDGET  # noqa: F401  (the 2-layer LSTM's settings, for callers)
from charrnn.choices import CELL_NAMES, MAX_HIDDEN, MAX_LAYERS, OPTIMIZER_NAMES, UNITS
from charrnn.errors import ConfigError

SCHEDULES = ("cosine", "constant", "wsd")
BIG = 10**9  # the bound of counts that have no natural one (steps, warm-up, intervals)
DEFAULT_MINUTES = 3.0  # `charrnn train`'s budget when neither --steps nor --minutes is given
# Validation symbols evaluated during training when eval_symbols is not set: `evaluate` does
# about 215,000 symbols/s at H 512, B 64, T 25 on the 2-core development machine, so ~2.4 s.
EVAL_SYMBOLS = 1 << 19


@dataclass(frozen=True)
class Option:
    """One setting's kind and allowed values: integers from low to high (high None: no bound),
    numbers between low and high with each end open or closed, or one of `choices`."""

    help: str
    kind: type = int
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    cli: bool = True  # also a `charrnn train` option (some settings are Python's alone)

    def allowed(self) -> str:
        """The range in words, as every refusal states it."""
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        if self.kind is int:
            if self.high is None:
                return f"an integer >= {self.low:,}"
            return f"an integer from {self.low:,} to {self.high:,}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"a number in {left}{self.low:g}, {self.high:g}{right}"

    def parse(self, text: str) -> Any:
        """The value of a command-line word, or ValueError with the refusal's words."""
        if self.choices:
            value = text
        else:
            try:
                value = self.kind(text)
            except ValueError:
                raise ValueError(f"must be {self.allowed()}, got {text!r}") from None
        self.refuse(value, repr(text))
        return value

    def refuse(self, value: Any, shown: str) -> None:
        """Raise ValueError naming the range unless `value` is inside it."""
        if self.choices:
            ok = value in self.choices
        elif self.kind is int:
            ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
            ok = ok and value >= self.low and (self.high is None or value <= self.high)
        else:
            ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
            ok = ok and math.isfinite(value)
            ok = ok and (value > self.low if self.low_open else value >= self.low)
            ok = ok and (value < self.high if self.high_open else value <= self.high)
        if not ok:
            raise ValueError(f"must be {self.allowed()}, got {shown}")


def setting(default: Any, help: str, **option: Any) -> Any:
    """A TrainConfig field with its Option in the field's metadata."""
    return field(default=default, metadata={"option": Option(help, **option)})


def unit_interval(**ends: bool) -> dict:
    return {"kind": float, "low": 0, "high": 1, **ends}


@dataclass
class TrainConfig:
    """Hyperparameters of a run; saved in its metadata and reused on resume."""

    hidden: int = setting(512, "hidden units per layer", low=1, high=MAX_HIDDEN)
    cell: str = setting("rnn", "recurrent cell", choices=CELL_NAMES)
    layers: int = setting(1, "stacked recurrent layers", low=1, high=MAX_LAYERS)
    seq_len: int = setting(25, "BPTT chunk length T", low=1, high=100_000)
    batch: int = setting(64, "parallel streams B", low=1, high=100_000)
    workers: int | None = setting(
        None,
        "data-parallel workers, each a slice of the B streams on one core (the cores this "
        "process may use, at most B)",
        low=1,
        high=1024,
    )
    lr: float = setting(2e-3, "peak learning rate", kind=float, low=0, high=10, low_open=True)
    optimizer: str = setting("adam", "optimizer", choices=OPTIMIZER_NAMES)
    clip: float = setting(
        5.0, "global gradient-norm bound, 0 for none", kind=float, low=0, high=1e6
    )
    dropout: float = setting(
        0.0,
        "share of each layer's units dropped on their way up",
        **unit_interval(high_open=True),
    )
    weight_drop: float = setting(
        0.15,
        "share of W_hh entries dropped each step, DropConnect",
        **unit_interval(high_open=True),
    )
    schedule: str = setting("cosine", "learning-rate schedule", choices=SCHEDULES)
    warmup: int = setting(50, "warm-up steps", low=0, high=BIG)
    min_lr_ratio: float = setting(
        0.1, "the rate decays to lr times this", **unit_interval(), cli=False
    )
    cooldown: float = setting(
        0.2,
        "share of the budget at its end over which wsd decays the rate",
        **unit_interval(low_open=True),
    )
    steps: int | None = setting(None, "train until this step", low=1, high=BIG)
    minutes: float | None = setting(
        None,
        f"wall-clock budget (default {DEFAULT_MINUTES:g} when no --steps)",
        kind=float,
        low=0,
        high=1e6,
        low_open=True,
    )
    eval_every: int = setting(1000, "steps between evaluations", low=1, high=BIG)
    eval_symbols: int | None = setting(
        None,
        f"validation symbols evaluated, the first ones of the split (all, up to {EVAL_SYMBOLS:,})",
        low=2,
    )
    checkpoint_every: int | None = setting(
        None, "steps between checkpoints (eval-every)", low=1, high=BIG
    )
    seed: int = setting(0, "random seed", low=0, high=2**32 - 1)
    val_fraction: float = setting(0.1, "share of text held out", **unit_interval(high_open=True))
    unit: str = setting("grapheme", "symbol unit", choices=UNITS)
    sample_length: int = setting(200, "symbols sampled at each evaluation", low=0, high=10**6)
    sample_temperature: float = setting(
        0.8, "temperature of those samples", kind=float, low=0, high=100, cli=False
    )

    @classmethod
    def options(cls) -> dict[str, Option]:
        """Every setting's Option, by field name, in declaration order."""
        return {f.name: f.metadata["option"] for f in dataclasses.fields(cls)}

    @classmethod
    def for_budget(cls, base: Any = None, **given) -> TrainConfig:
        """A config as `charrnn train` makes it: `given` fields (steps or minutes among them)
        over the settings of the model its budget picks (`choose_model`); with a `base` run to
        start from (a `checkpoint.Run`), its architecture and the fine-tuning learning rate."""
        return choose_model(given, base).config

    def check(self) -> None:
        """Raise ConfigError naming the first setting outside its range."""
        for name, option in self.options().items():
            value = getattr(self, name)
            if value is None and self.__dataclass_fields__[name].default is None:
                continue  # an optional setting left unset
            try:
                option.refuse(value, repr(value))
            except ValueError as exc:
                raise ConfigError(f"{name} {exc}") from None


# What a resumed run may change; everything else must match the checkpoint, or the resumed
# run would not continue the same training (and resume would no longer be exact).
RESUMABLE = frozenset(
    {
        "steps",
        "minutes",
        "eval_every",
        "eval_symbols",
        "checkpoint_every",
        "sample_length",
        "workers",  # another count continues the run, though not bit for bit (sums regroup)
    }
)


def changed_on_resume(config: TrainConfig, saved: dict) -> list[str]:
    """The settings that differ from a checkpoint's and may not change on resume (a setting
    the checkpoint predates counts as its default)."""
    defaults = TrainConfig()
    return [
        f.name
        for f in dataclasses.fields(TrainConfig)
        if f.name not in RESUMABLE
        and getattr(config, f.name) != saved.get(f.name, getattr(defaults, f.name))
    ]


# What a run started from a base (`init_from`) takes from it: its model has this shape.
ARCHITECTURE = ("cell", "layers", "hidden", "unit")
# The peak learning rate of a run started from a base unless --lr is given, measured at equal
# steps on Vim's user manual from the english base (scripts/bench_transfer.py, README
# "Fine-tuning"): 3e-3 reached 1.276 nats/char, 1e-3 1.311, from scratch 1.383 (1,200 steps).
FINE_TUNE_LR = 3e-3


def base_architecture(base: Any) -> dict:
    """The cell, layers, hidden size and unit of a base run's model (a `checkpoint.Run`)."""
    model = base.model
    return {
        "cell": model.cell,
        "layers": model.layers,
        "hidden": model.hidden_size,
        "unit": base.vocab.unit,
    }


def refuse_other_architecture(values: dict, base: Any) -> None:
    """ConfigError naming each of `values` that differs from the base's architecture."""
    arch = base_architecture(base)
    differ = [k for k in ARCHITECTURE if k in values and values[k] != arch[k]]
    if differ:
        asked = ", ".join(f"{k} {values[k]}" for k in differ)
        has = ", ".join(f"{k} {arch[k]}" for k in differ)
        raise ConfigError(
            f"{asked}: the base {base.path} has {has}; a run started from a base keeps its "
            "cell, layers, hidden size and unit"
        )


def choose_model(
    given: dict[str, Any], base: Any = None, speed: Callable[[TrainConfig], float] | None = None
) -> budget.Choice:
    """The config of a budget and the options set (`given`), with the line that says why
    (`charrnn.budget.choose`; `speed` measures a candidate's chars/s, by default on this
    machine). With a `base` run, its architecture (another one given is refused) and the
    fine-tuning learning rate over the chosen candidate's settings."""
    choice = budget.choose(TrainConfig, given, speed or budget.measure_speed)
    if base is None:
        return choice
    arch = base_architecture(base)
    refuse_other_architecture({k: given[k] for k in arch if k in given}, base)
    settings = {**budget.CANDIDATES[choice.candidate], "lr": FINE_TUNE_LR, **given, **arch}
    config = TrainConfig(**settings)
    label = budget.LABELS[choice.candidate]
    line = f"model: {budget.describe(config)}, the base's; its other settings the {label}'s"
    return budget.Choice(config, choice.candidate, f"{line} ({choice.why})", choice.why)


def adopt_base(config: TrainConfig, base: Any) -> TrainConfig:
    """`config` with the base's architecture: a setting left at its default takes the base's
    value, one set to another value than the base's is refused by name."""
    defaults = TrainConfig()
    arch = base_architecture(base)
    refuse_other_architecture(
        {k: getattr(config, k) for k in arch if getattr(config, k) != getattr(defaults, k)}, base
    )
    return dataclasses.replace(config, **arch)
