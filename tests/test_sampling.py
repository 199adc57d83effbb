"""Sampling the next token (minillm/models/sampling.py, used by GPT.generate and T5.generate):
exact top-k (a removed token is never drawn, even at a 50k vocabulary), temperature, greedy."""
import numpy as np
import pytest

import minillm
from minillm import backend
from minillm.models.gpt import GPT, GPTConfig
from minillm.models.sampling import sample_next_token, top_k_logits

VOCAB = 50_000


class LastUniform:
    """A generator stub whose uniform draws are the largest double below 1 (a legal draw of
    ``Generator.random``): the draw that lands past the end of a cumulative sum that misses 1."""

    def random(self, size, dtype=np.float64):
        return np.full(size, np.nextafter(1.0, 0.0), dtype=dtype)


def test_top_k_removed_token_is_never_drawn_at_50k_vocab_even_with_the_largest_uniform():
    """Regression: float32 probabilities summed to 0.9999995 here, the largest uniform draw fell
    past the end of the cumulative sum and returned the last token, which top-k had removed."""
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4, VOCAB)).astype(np.float32)
    logits[:, -1] = -30.0                     # the last token is far outside the top k
    keep = np.argsort(logits, axis=-1)[:, -1000:]
    nxt = sample_next_token(logits, temperature=1.0, top_k=1000, generator=LastUniform())
    assert nxt.dtype == np.int64 and nxt.shape == (4,)
    for row in range(4):
        assert nxt[row] in keep[row] and nxt[row] != VOCAB - 1
    # the largest uniform picks the last kept token of each row (the end of the distribution)
    np.testing.assert_array_equal(nxt, keep.max(axis=-1))


def test_gpt_generate_never_draws_a_removed_token_at_50k_vocab(monkeypatch):
    """The same through GPT.generate (the old float32 sampler returned token 49999 here)."""
    minillm.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=VOCAB, block_size=8, n_layer=1, n_head=1, n_embd=4))
    gpt.eval()
    idx = minillm.tensor(np.array([[1, 2, 3]]))
    h = gpt.hidden_states(idx).numpy()[0, -1]
    gpt.wte.weight.data[-1] = -10.0 * h       # the last token's logit: about -40, far outside the top 1000
    allowed = np.argsort(gpt(idx).numpy()[0, -1, :])[-1000:]
    assert VOCAB - 1 not in allowed
    monkeypatch.setattr(backend, "generator", lambda device="cpu": LastUniform())
    out = gpt.generate(idx, 1, temperature=1.0, top_k=1000).numpy()
    assert out[0, -1] in allowed


def test_top_k_draws_stay_in_the_top_k():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((64, VOCAB))
    keep = np.argsort(logits, axis=-1)[:, -3:]
    gen = np.random.default_rng(2)
    for _ in range(20):
        nxt = sample_next_token(logits, 0.8, top_k=3, generator=gen)
        assert all(nxt[r] in keep[r] for r in range(64))


def test_sampling_follows_the_softmax():
    logits = np.array([[np.log(0.5), np.log(0.3), np.log(0.2), -np.inf]])   # the last token: probability 0
    gen = np.random.default_rng(0)
    draws = np.concatenate([sample_next_token(np.repeat(logits, 1000, 0), 1.0, generator=gen) for _ in range(20)])
    freq = np.bincount(draws, minlength=4) / draws.size
    np.testing.assert_allclose(freq, [0.5, 0.3, 0.2, 0.0], atol=0.01)
    assert freq[3] == 0.0


def test_temperature_zero_is_greedy_and_top_k_keeps_ties():
    logits = np.array([[0.1, 2.0, -1.0], [3.0, 3.0, 0.0]])
    np.testing.assert_array_equal(sample_next_token(logits, 0.0), [1, 0])
    kept = top_k_logits(logits, 1)
    assert np.isfinite(kept[1, :2]).all() and np.isinf(kept[1, 2])   # both tied maxima stay
    with pytest.raises(ValueError, match="temperature"):
        sample_next_token(logits, -1.0)


@pytest.mark.parametrize("bad", [float("nan"), -0.5, float("inf")])
def test_temperature_must_be_finite_and_non_negative(bad):
    with pytest.raises(ValueError, match="temperature must be a finite number"):
        sample_next_token(np.zeros((1, 5)), temperature=bad)


@pytest.mark.parametrize("bad", [0, -5, 2.5])
def test_top_k_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        sample_next_token(np.zeros((1, 5)), top_k=bad)
