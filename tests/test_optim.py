"""Global-norm clipping and the four optimizers."""

import math

import numpy as np
import pytest

from charrnn import ConfigError
from charrnn.optim import OPTIMIZERS, SGD, Adagrad, Adam, RMSprop, clip_grad_norm, make_optimizer


def random_grads(seed, scale=1.0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    shapes = {"W": (30, 20), "b": (20,), "U": (20, 7)}
    return {k: (scale * rng.standard_normal(s)).astype(dtype) for k, s in shapes.items()}


def global_norm(grads):
    return math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads.values()))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bound", [0.5, 5.0])
def test_clipped_norm_equals_bound(dtype, bound):
    """Clipping scales every gradient together to a global norm equal to the bound."""
    grads = random_grads(0, 3.0, dtype)
    before = {k: g.astype(np.float64) for k, g in grads.items()}
    norm = clip_grad_norm(grads, bound)
    assert norm == pytest.approx(global_norm(before), rel=1e-6)
    assert norm > bound
    assert global_norm(grads) == pytest.approx(bound, rel=1e-6)
    for k in grads:
        assert grads[k].dtype == dtype
        np.testing.assert_allclose(grads[k], before[k] * (bound / norm), rtol=1e-6, atol=1e-12)


def test_small_gradients_untouched():
    """A gradient already within the bound is left bitwise unchanged, in place."""
    grads = random_grads(1, 0.01)
    ids = {k: id(g) for k, g in grads.items()}
    copies = {k: g.copy() for k, g in grads.items()}
    norm = clip_grad_norm(grads, 5.0)
    assert norm == pytest.approx(global_norm(copies), rel=1e-12)
    assert norm < 5.0
    for k in grads:
        assert id(grads[k]) == ids[k]
        assert grads[k].tobytes() == copies[k].tobytes()


def test_zero_bound_turns_clipping_off():
    """max_norm 0 means no clipping, but the norm is still reported."""
    grads = random_grads(2, 100.0)
    copies = {k: g.copy() for k, g in grads.items()}
    assert clip_grad_norm(grads, 0.0) == pytest.approx(global_norm(copies), rel=1e-12)
    assert all(np.array_equal(grads[k], copies[k]) for k in grads)


def test_non_finite_norm_is_reported():
    """A gradient holding inf gives an infinite norm, one holding nan a nan norm."""
    grads = random_grads(3)
    grads["b"][4] = np.inf
    assert clip_grad_norm(grads, 5.0) == math.inf
    grads = random_grads(3)
    grads["W"][0, 0] = np.nan
    assert math.isnan(clip_grad_norm(grads, 5.0))


def test_large_finite_float32_gradient_has_finite_norm():
    """Squares that overflow float32 still give the right finite norm and a bounded gradient."""
    grads = {"W": np.full((4, 4), 1e20, np.float32), "b": np.ones(4, np.float32)}
    norm = clip_grad_norm(grads, 5.0)
    assert norm == pytest.approx(4e20, rel=1e-6)
    assert global_norm(grads) == pytest.approx(5.0, rel=1e-6)


def quadratic(target):
    """f(p) = 0.5 |p - target|^2 and its gradient."""
    return lambda p: 0.5 * float(((p - target) ** 2).sum()), lambda p: p - target


@pytest.mark.parametrize(
    ("name", "lr", "steps"),
    [("adam", 0.05, 200), ("adagrad", 0.5, 200), ("rmsprop", 0.01, 300), ("sgd", 0.05, 200)],
)
def test_optimizer_decreases_a_quadratic(name, lr, steps):
    """Each optimizer drives a quadratic bowl's loss down by over 100x."""
    rng = np.random.default_rng(4)
    target = rng.standard_normal((5, 3))
    f, grad = quadratic(target)
    params = {"p": np.zeros((5, 3))}
    opt = make_optimizer(name, params)
    start = f(params["p"])
    for _ in range(steps):
        opt.step(params, {"p": grad(params["p"])}, lr)
    assert f(params["p"]) < start / 100
    assert opt.t == steps


def first_step(name, p0, g, lr):
    """The first update of each optimizer from zero state, written out by hand."""
    if name == "sgd":
        return p0 - lr * g
    if name == "adagrad":
        return p0 - lr * g / np.sqrt(g * g + 1e-8)
    if name == "rmsprop":
        return p0 - lr * g / (np.sqrt(0.01 * g * g) + 1e-8)
    m, v = 0.1 * g, 0.001 * g * g
    return p0 - lr * (math.sqrt(1 - 0.999) / (1 - 0.9)) * m / (np.sqrt(v) + 1e-8)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_first_step_by_hand(name):
    """The first step matches the optimizer's formula; parameters are updated in place."""
    rng = np.random.default_rng(5)
    p0 = rng.standard_normal(6)
    g = rng.standard_normal(6) * np.array([1, 1e-3, 10, 1e-9, 1, 0])
    params = {"p": p0.copy()}
    array = params["p"]
    make_optimizer(name, params).step(params, {"p": g}, 0.01)
    assert params["p"] is array
    np.testing.assert_allclose(array, first_step(name, p0, g, 0.01), rtol=1e-14, atol=1e-16)


def test_adam_and_sgd_second_steps():
    """Adam's bias correction and SGD's momentum over two steps, by hand."""
    g1, g2 = np.array([0.5, -2.0]), np.array([-1.0, 0.25])
    params = {"p": np.zeros(2)}
    adam = Adam(params)
    adam.step(params, {"p": g1}, 0.1)
    adam.step(params, {"p": g2}, 0.1)
    m = 0.9 * 0.1 * g1 + 0.1 * g2
    v = 0.999 * 0.001 * g1**2 + 0.001 * g2**2
    step1 = -0.1 * g1 / (np.abs(g1) + 1e-8 / math.sqrt(0.001))
    expected = step1 - 0.1 * (m / (1 - 0.9**2)) / (
        np.sqrt(v / (1 - 0.999**2)) + 1e-8 / math.sqrt(1 - 0.999**2)
    )
    np.testing.assert_allclose(params["p"], expected, rtol=1e-12)
    params = {"p": np.zeros(2)}
    sgd = SGD(params, momentum=0.9)
    sgd.step(params, {"p": g1}, 0.1)
    sgd.step(params, {"p": g2}, 0.1)
    np.testing.assert_allclose(params["p"], -0.1 * g1 - 0.1 * (0.9 * g1 + g2), rtol=1e-14)


@pytest.mark.parametrize("cls", [Adam, Adagrad, RMSprop, SGD])
def test_state_dict_round_trip(cls):
    """A fresh optimizer loaded from a state_dict continues exactly like the original."""
    rng = np.random.default_rng(6)
    params = {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}
    opt = cls(params)
    for _ in range(3):
        opt.step(params, {k: rng.standard_normal(p.shape) for k, p in params.items()}, 0.01)
    state = {k: np.array(v) for k, v in opt.state_dict().items()}
    assert int(state["t"]) == 3
    assert set(state) == {"t"} | {f"{s}/{k}" for s in cls.slots for k in params}
    twin_params = {k: v.copy() for k, v in params.items()}
    twin = cls(twin_params)
    twin.load_state_dict(state)
    assert twin.t == 3
    grads = {k: rng.standard_normal(p.shape) for k, p in params.items()}
    opt.step(params, grads, 0.01)
    twin.step(twin_params, grads, 0.01)
    for k in params:
        assert np.array_equal(params[k], twin_params[k])


def test_load_state_dict_rejects_wrong_shapes():
    """Missing or mis-shaped optimizer state is a ValueError, not silent corruption."""
    params = {"a": np.zeros((3, 4))}
    opt = Adam(params)
    state = opt.state_dict()
    with pytest.raises(ValueError, match="v/a"):
        Adam(params).load_state_dict({"t": state["t"], "m/a": state["m/a"]})
    with pytest.raises(ValueError):
        Adam(params).load_state_dict({**state, "m/a": np.zeros((4, 3))})


def test_unknown_optimizer():
    """An unknown optimizer name is a ConfigError listing the choices."""
    with pytest.raises(ConfigError, match="adam"):
        make_optimizer("lion", {"p": np.zeros(2)})
