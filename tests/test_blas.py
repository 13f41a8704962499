"""One BLAS thread for the small recurrence products: set for the block, restored after."""

import contextlib

import numpy as np
import pytest

from charrnn import CharRNN, blas
from charrnn import cells as cells_module

needs_openblas = pytest.mark.skipif(
    not blas.available() or (blas.num_threads() or 0) < 2,
    reason="needs NumPy's bundled OpenBLAS running more than one thread",
)


@needs_openblas
def test_one_thread_sets_one_and_restores_the_count():
    before = blas.num_threads()
    with blas.one_thread():
        assert blas.num_threads() == 1
    assert blas.num_threads() == before
    with blas.one_thread(enabled=False):
        assert blas.num_threads() == before
    with pytest.raises(KeyError), blas.one_thread():
        raise KeyError("inside")
    assert blas.num_threads() == before


@needs_openblas
def test_training_step_leaves_the_thread_count_as_it_found_it():
    model = CharRNN(65, 128, seed=0)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 65, (2, 64, 10))
    before = blas.num_threads()
    model.loss_and_grads(x, y, model.zero_state(64))
    model.loss(x, y, model.zero_state(64))
    assert blas.num_threads() == before


@pytest.mark.parametrize(("B", "H", "one"), [(64, 128, True), (64, 256, False), (1, 100, True)])
def test_recurrence_runs_on_one_thread_only_for_small_products(monkeypatch, B, H, one):
    """Both recurrence loops (forward and backward) ask for one thread exactly when a step's
    product B*H*H is at most ONE_THREAD_MAX_PRODUCT."""
    asked = []

    @contextlib.contextmanager
    def spy(enabled=True):
        asked.append(enabled)
        yield

    monkeypatch.setattr(blas, "one_thread", spy)
    model = CharRNN(5, H, seed=0)
    x = np.zeros((B, 3), np.int64)
    model.loss_and_grads(x, x, model.zero_state(B))
    assert asked == [one, one]
    assert (B * H * H <= cells_module.ONE_THREAD_MAX_PRODUCT) == one


def test_gradients_do_not_depend_on_the_thread_setting(monkeypatch):
    """The same step with the recurrence on one thread and on the default count."""
    model = CharRNN(7, 32, seed=3, dtype=np.float64)
    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 7, (2, 16, 9))
    h0 = rng.standard_normal((16, 32))
    runs = []
    for limit in (0, 2**30):
        monkeypatch.setattr(cells_module, "ONE_THREAD_MAX_PRODUCT", limit)
        loss, grads, h_T = model.loss_and_grads(x, y, h0)
        runs.append((loss, grads, h_T))
    (loss_a, grads_a, h_a), (loss_b, grads_b, h_b) = runs
    assert loss_a == pytest.approx(loss_b, rel=1e-12)
    np.testing.assert_allclose(h_a, h_b, rtol=1e-12)
    for name in grads_a:
        np.testing.assert_allclose(grads_a[name], grads_b[name], rtol=1e-10, atol=1e-14)
