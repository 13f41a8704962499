"""Issue 21: data-parallel workers over the streams. The workers' summed gradients are the
batch's (finite differences in float64 for 1, 2 and 3 workers, uneven slices), a run is
deterministic for a worker count and resumes bitwise with it, another count continues and
says so, and every worker thread ends with the run."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
from conftest import english_like, numeric_grad, run_cli
from hypothesis import given
from hypothesis import strategies as st
from test_guarantees_resume import assert_same_run, stop_and_resume

from charrnn import CharRNN, TrainConfig, train
from charrnn.checkpoint import read_meta, read_npz
from charrnn.model import dropout_keep
from charrnn.parallel import DataParallel, stream_slices, worker_count

TEXT = english_like(1500, seed=3)


@given(st.integers(1, 300), st.integers(1, 40))
def test_stream_slices_partition_the_batch_evenly(batch, workers):
    """min(workers, batch) contiguous slices covering every stream once, sizes within one."""
    slices = stream_slices(batch, workers)
    assert len(slices) == min(workers, batch)
    assert [i for s in slices for i in range(batch)[s]] == list(range(batch))
    sizes = [s.stop - s.start for s in slices]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


def test_worker_count_is_capped_by_the_streams():
    assert worker_count(8, 3) == 3
    assert worker_count(2, 64) == 2
    assert 1 <= worker_count(None, 64) <= 64


def perturbed(cell: str, layers: int, V: int = 7, H: int = 5) -> CharRNN:
    """A float64 model with every weight and bias moved well off its start."""
    model = CharRNN(V, H, seed=3, dtype=np.float64, cell=cell, layers=layers)
    rng = np.random.default_rng(4)
    for p in model.params.values():
        p += 0.3 * rng.standard_normal(p.shape)
    return model


def chunk(model: CharRNN, B: int, T: int, seed: int = 0):
    """Inputs, targets, a nonzero state and dropout and weight-drop scales for (B, T)."""
    rng = np.random.default_rng(seed)
    V, H, L = model.vocab_size, model.hidden_size, model.layers
    x, y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    state0 = 0.5 * rng.standard_normal(model.state_shape(B))
    keep = dropout_keep(0.3, (L * T * B, H), rng, np.float64)
    hh_keep = dropout_keep(0.2, (L * H, model.gates * H), rng, np.float64)
    return x, y, state0, keep, hh_keep


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("workers", [2, 3])
def test_workers_give_the_batch_gradients(cell, workers):
    """5 streams over 2 or 3 workers (slices of 2-3 or 1-2 streams) with dropout and weight
    drop: the loss, every gradient, dL/dstate0 and the carried state equal one worker's, and
    so do the forward-only loss and state."""
    model = perturbed(cell, 2)
    x, y, state0, keep, hh_keep = chunk(model, 5, 4)
    loss, grads, state = model.loss_and_grads(x, y, state0, True, keep, hh_keep)
    grads = {k: v.copy() for k, v in grads.items()}
    plain_loss, plain_state = model.loss(x, y, state0)  # no dropout
    with DataParallel(model, workers) as parallel:
        got_loss, got_grads, got_state = parallel.loss_and_grads(x, y, state0, True, keep, hh_keep)
        forward_loss, forward_state = parallel.loss(x, y, state0)
    assert got_loss == pytest.approx(loss, rel=1e-13)
    assert forward_loss == pytest.approx(plain_loss, rel=1e-13)
    assert got_grads.keys() == grads.keys()
    for name, grad in grads.items():
        np.testing.assert_allclose(got_grads[name], grad, rtol=1e-11, atol=1e-14, err_msg=name)
    np.testing.assert_allclose(got_state, state, rtol=1e-13)
    np.testing.assert_allclose(forward_state, plain_state, rtol=1e-13)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_workers_gradients_match_finite_differences(cell, workers):
    """Every parameter's gradient and dL/dstate0 summed over the workers agree with central
    differences of the workers' loss (float64, rel err < 1e-6), B 5 not divisible by 2 or 3."""
    model = perturbed(cell, 2, V=6, H=3)
    x, y, state0, _, _ = chunk(model, 5, 3, seed=1)
    with DataParallel(model, workers) as parallel:
        _, grads, _ = parallel.loss_and_grads(x, y, state0, with_dh0=True)
        grads = {k: v.copy() for k, v in grads.items()}
        arrays = {**model.params, "h0": state0}
        for name, array in arrays.items():
            num = numeric_grad(lambda: parallel.loss(x, y, state0)[0], array, eps=1e-4)
            scale = np.maximum(np.abs(num), np.abs(grads[name])).clip(1e-9)
            assert np.max(np.abs(num - grads[name]) / scale) < 1e-6, name


def test_workers_use_weights_updated_or_replaced():
    """The workers read the model's current weights: an in-place update and a new dict."""
    model = perturbed("lstm", 1)
    x, y, state0, _, _ = chunk(model, 4, 3)
    with DataParallel(model, 2) as parallel:
        model.params["W_hy"] *= 0.5
        assert parallel.loss(x, y, state0)[0] == pytest.approx(model.loss(x, y, state0)[0])
        model.params = {k: v * 1.1 for k, v in model.params.items()}
        assert parallel.loss(x, y, state0)[0] == pytest.approx(model.loss(x, y, state0)[0])


SMALL = TrainConfig(
    hidden=16, seq_len=8, batch=5, steps=30, eval_every=10, sample_length=10, cell="lstm"
)


def worker_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("charrnn-worker")]


def test_a_run_with_workers_is_deterministic_and_its_threads_end(tmp_path):
    """Two runs with 3 workers end bitwise equal, record the count, and leave no worker
    thread behind; one worker ends close to them (float32 sums regrouped) but not equal."""
    config = dataclasses.replace(SMALL, workers=3, dropout=0.2, weight_drop=0.2)
    for name in ("a", "b"):
        train(TEXT, dataclasses.replace(config), tmp_path / name)
        assert worker_threads() == []
    assert_same_run(tmp_path / "a", tmp_path / "b")
    assert read_meta(tmp_path / "a" / "latest.npz")["train"]["workers"] == 3
    train(TEXT, dataclasses.replace(config, workers=1), tmp_path / "one")
    three, one = (read_npz(tmp_path / n / "latest.npz")["param/W_hh"] for n in ("a", "one"))
    assert three.tobytes() != one.tobytes()
    np.testing.assert_allclose(three, one, atol=2e-3)


@pytest.mark.parametrize("workers", [2, 3])
def test_stop_and_resume_with_workers_is_exact(tmp_path, workers):
    """Stopped after 13 of 30 steps and resumed with the same worker count: the straight run."""
    config = dataclasses.replace(SMALL, workers=workers, dropout=0.3)
    split, whole, evals = stop_and_resume(tmp_path, config, 13)
    assert evals == [10]
    assert_same_run(split, whole)


def test_resume_with_another_worker_count_goes_on_and_says_so(tmp_path):
    """`--resume --workers 1` of a run made with 2 continues to its budget and names both."""
    corpus = tmp_path / "text.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    out = tmp_path / "run"
    args = ("--hidden", "16", "--batch", "4", "--seq-len", "8", "--eval-every", "10")
    first = run_cli("train", corpus, *args, "--steps", "10", "--workers", "2", "--out", out)
    assert first.returncode == 0, first.stderr
    assert "2 workers" in first.stdout.splitlines()[1]  # the run line, after the model's
    again = run_cli("train", "--resume", out, "--steps", "20", "--workers", "1")
    assert again.returncode == 0, again.stderr
    assert "resuming with 1 workers where the run had 2" in again.stdout
    meta = read_meta(out / "latest.npz")
    assert (meta["step"], meta["train"]["workers"]) == (20, 1)


@pytest.mark.parametrize("workers", [2, 3])
def test_samples_over_workers_are_the_samples_of_one(workers):
    """7 samples over 2 or 3 workers: the texts of one worker, as the draws stay in one place;
    the workers' threads end with the generation."""
    from charrnn import Vocab
    from charrnn.sample import generate_many

    vocab = Vocab.from_text(TEXT)
    model = CharRNN(len(vocab), 24, seed=5, cell="gru", layers=2)
    options = dict(prime="the ", length=60, temperature=0.9, seed=4)
    one = generate_many(model, vocab, 7, **options)
    assert generate_many(model, vocab, 7, **options, workers=workers) == one
    assert len(set(one)) == 7 and worker_threads() == []


def test_workers_keep_the_callers_floating_point_error_handling():
    """NumPy's error state is per thread: the workers take the caller's, so an overflow the
    caller ignores (training checks finiteness itself) is ignored in every worker too, and
    one it raises on is raised."""
    model = perturbed("rnn", 1)
    W_hy = model.params["W_hy"]
    W_hy[:] = np.sign(W_hy) * 1e308  # the logits overflow to +-inf in float64
    x, y, state0, _, _ = chunk(model, 4, 3)
    with DataParallel(model, 2) as parallel:
        with np.errstate(all="ignore"):
            loss, _ = parallel.loss(x, y, state0)
        assert not np.isfinite(loss)
        with np.errstate(all="raise"), pytest.raises(FloatingPointError):
            parallel.loss(x, y, state0)


def test_worker_streams_regroup_as_one_streams_does():
    """A server's streams come and go: keeping some, adding fresh ones and pushing, over 3
    workers (one left idle at 2 streams), gives the logits and state of one `Streams`."""
    from charrnn.sample import Streams, WorkerStreams

    model = perturbed("lstm", 2)
    one = Streams(model, model.zero_state(0))
    many = WorkerStreams(model, model.zero_state(0), 3)
    rng = np.random.default_rng(7)
    try:
        for keep, new in [([], 4), ([0, 2, 3], 2), ([4, 1], 0), ([1], 5), ([], 0), ([], 2)]:
            one.regroup(keep, new)
            many.regroup(keep, new)
            for _ in range(3):
                ids = rng.integers(0, model.vocab_size, len(keep) + new)
                one.push(ids)
                many.push(ids)
            np.testing.assert_allclose(many.logits, one.logits, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(many.state, one.state, rtol=1e-12, atol=1e-12)
    finally:
        many.close()
