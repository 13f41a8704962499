"""The learning-rate schedules: warm-up, then constant, cosine or wsd over the budget."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from charrnn import ConfigError
from charrnn.training import TrainConfig, learning_rate


def config(**kw):
    return TrainConfig(**{"lr": 2e-3, "warmup": 0, "min_lr_ratio": 0.1, **kw})


def test_warmup_is_linear_then_flat():
    c = config(schedule="constant", warmup=50)
    assert learning_rate(c, 0, 0.0) == pytest.approx(2e-3 / 50)
    assert learning_rate(c, 24, 0.0) == pytest.approx(2e-3 / 2)
    assert learning_rate(c, 49, 0.0) == learning_rate(c, 5000, 0.9) == pytest.approx(2e-3)


@pytest.mark.parametrize(("progress", "share"), [(0.0, 1.0), (0.5, 0.55), (1.0, 0.1), (1.5, 0.1)])
def test_cosine_falls_to_min_lr_ratio(progress, share):
    assert learning_rate(config(schedule="cosine"), 100, progress) == pytest.approx(2e-3 * share)


@pytest.mark.parametrize(
    ("progress", "share"),
    [(0.0, 1.0), (0.5, 1.0), (0.8, 1.0), (0.85, 0.775), (0.9, 0.55), (1.0, 0.1), (1.2, 0.1)],
)
def test_wsd_is_flat_then_falls_linearly_over_the_cooldown(progress, share):
    c = config(schedule="wsd", cooldown=0.2)
    assert learning_rate(c, 100, progress) == pytest.approx(2e-3 * share)


@given(
    st.floats(0, 1.2),
    st.floats(0, 1.2),
    st.floats(0.01, 1),
    st.floats(0, 1),
    st.sampled_from(["cosine", "wsd"]),
)
def test_decay_never_rises_and_stays_between_the_bounds(p, q, cooldown, ratio, schedule):
    c = config(schedule=schedule, cooldown=cooldown, min_lr_ratio=ratio)
    early, late = learning_rate(c, 100, min(p, q)), learning_rate(c, 100, max(p, q))
    assert late <= early * (1 + 1e-12)
    assert 2e-3 * ratio * (1 - 1e-12) <= late <= early <= 2e-3 * (1 + 1e-12)


@pytest.mark.parametrize("cooldown", [0.0, -0.1, 1.5])
def test_cooldown_outside_its_range_is_refused(cooldown):
    with pytest.raises(ConfigError, match=r"cooldown must be a number in \(0, 1\]"):
        config(cooldown=cooldown).check()
