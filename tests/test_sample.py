"""Sampling: greedy, temperature, top-k, top-p, seeds, priming and bad settings."""

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from charrnn import CharRNN, ConfigError, Sampler, Vocab, VocabError, generate, generate_many
from charrnn import sample as sample_module
from charrnn.sample import Streams

TEXT = "the cat sat on the mat.\nthe dog ate the log!\n"
LOGITS = np.array([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])
CHI2_999_5DOF = 20.515  # the 0.999 quantile of chi-square with 5 degrees of freedom


@pytest.fixture(params=["gumbel-max", "inverse-cdf"])
def draw_method(request, monkeypatch):
    """Run a drawing test through each of Sampler.draw's two methods, whatever its size."""
    monkeypatch.setattr(
        sample_module, "GUMBEL_MAX_DRAWS", 2**62 if request.param == "gumbel-max" else 0
    )


def softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def chi2_999(dof):
    """The 0.999 chi-square quantile by the Wilson-Hilferty approximation (z = 3.0902)."""
    a = 2 / (9 * dof)
    return dof * (1 - a + 3.0902 * math.sqrt(a)) ** 3


def chi_square(draws, probs):
    observed = np.bincount(draws, minlength=len(probs))
    expected = len(draws) * probs
    return float(((observed - expected) ** 2 / expected).sum())


@pytest.fixture(scope="module")
def vocab():
    return Vocab.from_text(TEXT)


@pytest.fixture(scope="module")
def model(vocab):
    """An untrained model with spread-out weights, so its predictions differ by position."""
    model = CharRNN(len(vocab), 24, seed=1)
    rng = np.random.default_rng(1)
    for p in model.params.values():
        p += rng.standard_normal(p.shape).astype(np.float32)
    return model


def greedy_reference(model, vocab, prime, length):
    h = model.zero_state(1)
    for i in vocab.encode(prime):
        logits, h = model.step(np.array([i]), h)
    out = []
    for _ in range(length):
        i = int(np.argmax(logits[0]))
        out.append(vocab.symbols[i])
        logits, h = model.step(np.array([i]), h)
    return "".join(out)


def test_temperature_zero_is_argmax_of_model_logits(model, vocab):
    """Temperature 0 picks argmax of the model's step logits at every position."""
    expected = greedy_reference(model, vocab, "the ", 60)
    assert "".join(generate(model, vocab, "the ", 60, temperature=0, seed=1)) == expected
    assert (
        "".join(generate(model, vocab, "the ", 60, temperature=0, top_k=3, top_p=0.5)) == expected
    )
    assert len(set(expected)) > 1


def test_no_prime_starts_from_newline(model, vocab):
    """Without a prime, generation continues a newline (which is not emitted)."""
    no_prime = "".join(generate(model, vocab, "", 40, temperature=0))
    assert no_prime == greedy_reference(model, vocab, "\n", 40)


def test_wilson_hilferty_quantile():
    """The approximate quantile is within 2% of tabulated 0.999 chi-square quantiles."""
    for dof, exact in [(5, 20.515), (14, 36.123), (19, 43.820), (50, 86.661)]:
        assert chi2_999(dof) == pytest.approx(exact, rel=0.02)


def test_draw_temperature_zero_rows():
    """Sampler.draw at temperature 0 returns each row's argmax."""
    logits = np.random.default_rng(0).standard_normal((50, 9))
    assert np.array_equal(Sampler(0).draw(logits), logits.argmax(axis=1))


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_frequencies_match_softmax(temperature, draw_method):
    """200,000 draws match softmax(logits / T) by chi-square; a wrong T is rejected."""
    n = 200_000
    draws = Sampler(temperature, seed=12345).draw(np.tile(LOGITS, (n, 1)))
    assert draws.shape == (n,) and draws.min() >= 0 and draws.max() < len(LOGITS)
    assert chi_square(draws, softmax(LOGITS / temperature)) < CHI2_999_5DOF
    assert chi_square(draws, softmax(LOGITS / (1.1 * temperature))) > CHI2_999_5DOF


def test_frequencies_match_softmax_on_model_logits(model, vocab, draw_method):
    """Draws from a real model's step logits match their softmax."""
    logits, _ = model.step(np.array([vocab.index["t"]]), model.zero_state(1))
    probs = softmax(logits[0].astype(np.float64))
    draws = Sampler(1.0, seed=7).draw(np.repeat(logits, 100_000, axis=0))
    common = probs * 100_000 >= 5  # pool rare symbols into one cell
    cells = int(common.sum()) + 1
    observed = np.r_[np.bincount(draws, minlength=len(probs))[common], (~common[draws]).sum()]
    expected = 100_000 * np.r_[probs[common], probs[~common].sum()]
    assert cells >= 8
    stat = float(((observed - expected) ** 2 / np.maximum(expected, 1e-300)).sum())
    assert stat < chi2_999(cells - 1)


def test_top_k_never_emits_outside_top_k(draw_method):
    """With top-k every draw is among the k largest logits, and all k do occur."""
    rng = np.random.default_rng(2)
    logits = rng.standard_normal(20)
    top = set(np.argsort(logits)[-5:].tolist())
    sampler = Sampler(1.5, top_k=5, seed=3)
    draws = sampler.draw(np.tile(logits, (20_000, 1)))
    assert set(draws.tolist()) == top
    probs = sampler.probs(logits[None])[0]
    assert set(np.flatnonzero(probs).tolist()) == top
    idx = sorted(top)
    np.testing.assert_allclose(probs[idx], softmax(logits[idx] / 1.5), rtol=1e-12)
    assert np.array_equal(
        Sampler(1.0, top_k=1, seed=0).draw(np.tile(logits, (100, 1))), np.full(100, logits.argmax())
    )
    np.testing.assert_allclose(
        Sampler(1.0, top_k=99).probs(logits[None])[0], softmax(logits), rtol=1e-12
    )


def test_top_p_small_example():
    """Probabilities 0.5, 0.3, 0.15, 0.05: top-p 0.4 keeps 1, 0.7 keeps 2, 0.85 keeps 3."""
    logits = np.log(np.array([[0.15, 0.5, 0.05, 0.3]]))
    for p, kept in [(0.4, [1]), (0.7, [1, 3]), (0.85, [0, 1, 3]), (0.99, [0, 1, 2, 3])]:
        probs = Sampler(1.0, top_p=p).probs(logits)[0]
        assert np.flatnonzero(probs).tolist() == kept
        assert probs.sum() == pytest.approx(1.0, abs=1e-12)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(-6, 6), min_size=2, max_size=30),
    st.floats(0.01, 0.999),
    st.sampled_from([0.5, 1.0, 3.0]),
)
def test_top_p_keeps_smallest_prefix_reaching_p(values, top_p, temperature):
    """top-p keeps exactly the smallest set of most likely symbols whose mass reaches p."""
    logits = np.array([values])
    full = softmax(logits[0] / temperature)
    ordered = np.sort(full)[::-1]
    sums = [math.fsum(ordered[: k + 1]) for k in range(len(ordered))]
    assume(all(abs(s - top_p) > 1e-9 for s in sums))
    k = next((i + 1 for i, s in enumerate(sums) if s >= top_p), len(ordered))
    probs = Sampler(temperature, top_p=top_p).probs(logits)[0]
    kept = probs > 0
    assert kept.sum() == k
    assert full[kept].min() >= full[~kept].max(initial=0)
    np.testing.assert_allclose(probs[kept], full[kept] / full[kept].sum(), rtol=1e-9)


def test_top_p_draws_stay_in_nucleus(draw_method):
    """Draws under top-p never fall outside the kept set."""
    logits = np.log(np.array([0.4, 0.25, 0.2, 0.1, 0.05]))
    draws = Sampler(1.0, top_p=0.6, seed=1).draw(np.tile(logits, (10_000, 1)))
    assert set(draws.tolist()) == {0, 1}


class ZeroExponentials:
    """A generator whose exponential draws are all exactly 0, the edge of Exp(1)'s support."""

    def standard_exponential(self, shape):
        return np.zeros(shape)


def test_a_zero_exponential_draw_never_picks_a_left_out_symbol():
    """E = 0 makes ln E = -inf; a symbol top-k or top-p left out (score -inf) must still lose,
    and among kept symbols the highest score wins."""
    logits = np.array([[0.0, 3.0, -1.0, 2.0, 1.0]] * 4)
    for sampler in (Sampler(1.0, top_k=2), Sampler(1.0, top_p=0.5)):
        sampler.rng = ZeroExponentials()
        assert sampler.draw(logits).tolist() == [1, 1, 1, 1]


def test_same_seed_same_text_different_seed_different(model, vocab):
    """generate() is reproducible for a seed and differs across seeds."""
    a = "".join(generate(model, vocab, "the", 200, seed=42))
    b = "".join(generate(model, vocab, "the", 200, seed=42))
    c = "".join(generate(model, vocab, "the", 200, seed=43))
    assert a == b
    assert a != c
    assert len(a) == 200


def test_generate_yields_one_symbol_at_a_time():
    """Each yielded string is one vocabulary symbol, grapheme clusters included."""
    family = "\U0001f469\u200d\U0001f469\u200d\U0001f467"
    vocab = Vocab.from_text(f"ab{family}e\u0301 ")
    model = CharRNN(len(vocab), 8, seed=0)
    pieces = list(generate(model, vocab, "a", 50, seed=0))
    assert len(pieces) == 50
    assert all(p in vocab.symbols for p in pieces)
    assert list(generate(model, vocab, "a", 0, seed=0)) == []


def test_generate_many(model, vocab):
    """generate_many returns num strings of the given length; greedy ones equal generate()."""
    out = generate_many(model, vocab, 6, prime="the ", length=40, seed=5)
    assert len(out) == 6
    assert all(len(s) == 40 and set(s) <= set(vocab.symbols) for s in out)
    assert len(set(out)) > 1
    assert generate_many(model, vocab, 6, prime="the ", length=40, seed=5) == out
    m64 = CharRNN(len(vocab), 24, dtype=np.float64)
    m64.params = {k: v.astype(np.float64) for k, v in model.params.items()}
    greedy = generate_many(m64, vocab, 3, prime="the ", length=40, temperature=0)
    assert greedy == [greedy_reference(m64, vocab, "the ", 40)] * 3
    assert generate_many(model, vocab, 2, length=0) == ["", ""]


def test_streams_follow_model_step(vocab):
    """The one-GEMM sampling recurrence (h_t [W_hh | W_hy]) gives the logits and states of
    `CharRNN.step` for every stream, each fed its own symbols."""
    model = CharRNN(len(vocab), 16, dtype=np.float64, seed=2)
    rng = np.random.default_rng(2)
    for p in model.params.values():
        p += 0.3 * rng.standard_normal(p.shape)
    h = rng.standard_normal((1, 1, 5, 16))
    streams = Streams(model, h)
    for ids in rng.integers(0, len(vocab), (30, 5)):
        streams.push(ids)
        logits, h = model.step(ids, h)
        np.testing.assert_allclose(streams.state, h, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(streams.logits, logits, rtol=1e-12, atol=1e-12)


def test_prime_with_unknown_symbols_is_named(model, vocab):
    """A prime holding unknown symbols raises VocabError naming exactly those."""
    with pytest.raises(VocabError) as info:
        list(generate(model, vocab, "the ZOO€", 10))
    message = str(info.value)
    assert "prime" in message
    for s in ("Z", "O", "€"):
        assert repr(s) in message
    assert "'t'" not in message
    with pytest.raises(VocabError, match="'Q'"):
        generate_many(model, vocab, 2, prime="Q")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"temperature": -0.1},
        {"temperature": math.nan},
        {"temperature": math.inf},
        {"top_k": 0},
        {"top_k": -3},
        {"top_p": 0.0},
        {"top_p": 1.5},
        {"top_p": -0.2},
    ],
)
def test_invalid_settings_raise_config_error(model, vocab, kwargs):
    """Out-of-range temperature, top-k or top-p is a ConfigError everywhere it is accepted."""
    with pytest.raises(ConfigError):
        Sampler(**kwargs)
    with pytest.raises(ConfigError):
        list(generate(model, vocab, "the", 5, **kwargs))
    with pytest.raises(ConfigError):
        generate_many(model, vocab, 2, prime="the", length=5, **kwargs)


def test_boundary_settings_are_valid(model, vocab):
    """temperature 0, top-k 1 and top-p 1 are allowed everywhere the bad ones are refused,
    and do what they say: top-k 1 and temperature 0 keep the likeliest symbol alone, top-p 1
    keeps the whole distribution."""
    logits = LOGITS[None, :]
    one_hot = np.eye(len(LOGITS))[[0]]
    np.testing.assert_allclose(Sampler(1.0, top_k=1, seed=0).probs(logits), one_hot)
    np.testing.assert_allclose(Sampler(1.0, top_p=1.0).probs(logits), softmax(LOGITS)[None])
    for kwargs in ({"temperature": 0.0}, {"top_k": 1}, {"temperature": 0.0, "top_k": 1}):
        sampler = Sampler(**kwargs, top_p=1.0, seed=0)
        assert (sampler.draw(np.repeat(logits, 500, axis=0)) == 0).all()
    draws = Sampler(1.0, top_p=1.0, seed=0).draw(np.repeat(logits, 4000, axis=0))
    assert chi_square(draws, softmax(LOGITS)) < CHI2_999_5DOF
    expected = greedy_reference(model, vocab, "the ", 30)
    greedy = {"temperature": 0.0, "top_k": 1, "top_p": 1.0}
    assert "".join(generate(model, vocab, "the ", 30, **greedy)) == expected
    assert "".join(generate(model, vocab, "the ", 30, temperature=1.0, top_k=1)) == expected
    assert generate_many(model, vocab, 2, prime="the ", length=30, **greedy) == [expected] * 2


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_draw_together_draws_as_each_sampler_would(temperature, draw_method):
    """Blocks of rows drawn in one pass equal each block drawn by its own sampler, step after
    step (the generators move on alike)."""
    logits = np.random.default_rng(0).standard_normal((6, 9))
    counts, ends = [1, 3, 2], np.cumsum([1, 3, 2])
    together = [Sampler(temperature, top_k=5, seed=seed) for seed in (1, 2, 3)]
    alone = [Sampler(temperature, top_k=5, seed=seed) for seed in (1, 2, 3)]
    draws = []
    for _ in range(4):
        joint = sample_module.draw_together(together, logits, counts)
        blocks = [s.draw(logits[e - n : e]) for s, n, e in zip(alone, counts, ends, strict=True)]
        assert joint.tolist() == np.concatenate(blocks).tolist()
        draws.append(joint.tolist())
    assert temperature == 0 or len({tuple(d) for d in draws}) > 1


def test_regrouped_streams_go_on_as_fresh_streams_of_those_states(model, vocab):
    """Dropping and adding streams keeps what the kept ones computed, and new ones start
    from the zero state: the same logits, now and after the next symbols, as streams made
    from those states."""
    streams = Streams(model, model.zero_state(4))
    for i in vocab.encode("the cat"):
        streams.push(np.array([i, (i + 1) % len(vocab), (i + 2) % len(vocab), i]))
    kept = streams.state[:, :, [3, 1]].copy()
    streams.regroup([3, 1], 2)
    fresh = np.zeros((*kept.shape[:2], 2, kept.shape[3]), kept.dtype)
    reference = Streams(model, np.concatenate([kept, fresh], axis=2))
    np.testing.assert_allclose(streams.logits, reference.logits, rtol=1e-5, atol=1e-6)
    for i in vocab.encode("sat"):
        ids = np.array([i, i, (i + 3) % len(vocab), i])
        streams.push(ids)
        reference.push(ids)
        np.testing.assert_allclose(streams.logits, reference.logits, rtol=1e-5, atol=1e-6)
