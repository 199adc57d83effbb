"""Tests for minillm.objectives: causal LM shift, BERT masking, T5 span corruption."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.objectives import (
    OBJECTIVES,
    causal_batch,
    mask_tokens,
    random_spans_noise_mask,
    reconstruct,
    span_corruption,
    span_corruption_batch,
)

# a toy vocabulary: 0 = pad, 1 = cls, 2 = sep, 3 = mask, 4.. = ordinary tokens
PAD, CLS, SEP, MASK, V = 0, 1, 2, 3, 1000
SPECIAL = (PAD, CLS, SEP, MASK)
SENTINELS = list(range(V - 1, V - 301, -1))  # T5 style: <extra_id_0> = V-1, ...


def _round_half_up(x):
    return int(np.floor(x + 0.5))


# --------------------------------------------------------------------------- causal LM


def test_causal_batch_shift():
    from types import SimpleNamespace
    data = np.arange(100)
    x, y = causal_batch(data, SimpleNamespace(batch_size=3, block_size=8), np.random.default_rng(0))
    assert x.shape == y.shape == (3, 8) and x.dtype == y.dtype == np.int64
    np.testing.assert_array_equal(y, x + 1)             # target t is the token after input t
    np.testing.assert_array_equal(y[:, :-1], x[:, 1:])
    assert OBJECTIVES["causal"].get_batch is causal_batch


# --------------------------------------------------------------------------- BERT masking


def _batch(rng, B=2000, T=64):
    """[CLS] tokens ... [SEP] then padding to T, with random lengths."""
    ids = np.full((B, T), PAD, dtype=np.int64)
    lengths = rng.integers(3, T + 1, size=B)
    for b, n in enumerate(lengths):
        ids[b, 0] = CLS
        ids[b, 1:n - 1] = rng.integers(4, V, size=n - 2)
        ids[b, n - 1] = SEP
    return ids


def _mask(ids, seed, **kw):
    return mask_tokens(ids, vocab_size=V, mask_id=MASK, special_ids=(CLS, SEP), pad_id=PAD,
                       rng=np.random.default_rng(seed), **kw)


def test_mask_tokens_counts_specials_and_labels():
    ids = _batch(np.random.default_rng(0))
    before = ids.copy()
    inputs, labels = _mask(ids, 1)
    np.testing.assert_array_equal(ids, before)  # input untouched
    assert inputs.shape == labels.shape == ids.shape
    assert inputs.dtype == ids.dtype and labels.dtype == np.int64

    chosen = labels != -100
    eligible = ~np.isin(ids, SPECIAL)
    # special and padding positions are never chosen, and never altered
    assert not (chosen & ~eligible).any()
    np.testing.assert_array_equal(inputs[~eligible], ids[~eligible])
    # labels: original id at chosen positions, ignore_index elsewhere
    np.testing.assert_array_equal(labels[chosen], ids[chosen])
    # unchosen positions are unchanged
    np.testing.assert_array_equal(inputs[~chosen], ids[~chosen])
    # exactly round(0.15 * n_eligible) per sequence, at least 1
    n_elig = eligible.sum(1)
    expected = np.maximum(np.floor(0.15 * n_elig + 0.5), 1) * (n_elig > 0)
    np.testing.assert_array_equal(chosen.sum(1), expected)
    # overall ~15% of the eligible tokens
    assert abs(chosen.sum() / eligible.sum() - 0.15) < 0.01


def test_mask_tokens_80_10_10():
    ids = _batch(np.random.default_rng(1))
    inputs, labels = _mask(ids, 2)
    chosen = labels != -100
    n = chosen.sum()
    assert n > 9000
    masked = chosen & (inputs == MASK)
    unchanged = chosen & (inputs == ids)
    randomised = chosen & (inputs != MASK) & (inputs != ids)
    # tolerances: > 4 binomial standard deviations
    assert abs(masked.sum() / n - 0.8) < 0.015
    assert abs(randomised.sum() / n - 0.1) < 0.01
    assert abs(unchanged.sum() / n - 0.1) < 0.01
    # random replacements are ordinary (non-special) tokens, roughly uniform
    rnd = inputs[randomised]
    assert not np.isin(rnd, SPECIAL).any() and rnd.min() >= 4 and rnd.max() < V
    assert abs(rnd.mean() - (4 + V - 1) / 2) < 0.05 * V


def test_mask_tokens_reproducible_and_edge_cases():
    ids = _batch(np.random.default_rng(2), B=50, T=32)
    a = _mask(ids, 7)
    b = _mask(ids, 7)
    c = _mask(ids, 8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    # 1-D input
    x, y = _mask(ids[0], 3)
    assert x.shape == y.shape == ids[0].shape
    # an all-padding row chooses nothing; a row with one eligible token chooses it
    rows = np.array([[PAD] * 8, [CLS, 17, SEP, PAD, PAD, PAD, PAD, PAD]])
    x, y = _mask(rows, 0)
    assert (y[0] == -100).all()
    assert y[1].tolist() == [-100, 17] + [-100] * 6
    # mlm_probability 0 -> nothing chosen; custom ignore_index
    x, y = _mask(ids, 0, mlm_probability=0.0, ignore_index=-1)
    assert (y == -1).all() and np.array_equal(x, ids)
    # mlm_probability 1 with 100% masking -> every eligible token is [MASK]
    x, y = _mask(ids, 0, mlm_probability=1.0, mask_replace_prob=1.0, random_replace_prob=0.0)
    eligible = ~np.isin(ids, SPECIAL)
    assert (x[eligible] == MASK).all() and (y[eligible] == ids[eligible]).all()


# --------------------------------------------------------------------------- T5 span corruption


def test_span_corruption_paper_example():
    words = "Thank you for inviting me to your party last week .".split()
    vocab = {w: i + 10 for i, w in enumerate(words)}
    ids = np.array([vocab[w] for w in words])
    noise = np.zeros(len(ids), bool)
    noise[[2, 3, 8]] = True  # "for inviting", "last"
    X, Y, Z = SENTINELS[:3]
    inp, tgt = span_corruption(ids, sentinel_ids=SENTINELS, rng=np.random.default_rng(0),
                               noise_mask=noise, final_sentinel=True)
    inv = {i: w for w, i in vocab.items()}
    inv.update({X: "<X>", Y: "<Y>", Z: "<Z>"})
    assert " ".join(inv[i] for i in inp) == "Thank you <X> me to your party <Y> week ."
    assert " ".join(inv[i] for i in tgt) == "<X> for inviting <Y> last <Z>"
    np.testing.assert_array_equal(reconstruct(inp, tgt, SENTINELS), ids)


@settings(max_examples=150, deadline=None)
@given(length=st.integers(2, 300), density=st.floats(0.01, 0.9),
       mean_len=st.floats(1.0, 8.0), seed=st.integers(0, 2**32 - 1),
       roll=st.booleans(), eos=st.booleans(), final=st.booleans())
def test_span_corruption_reconstructs(length, density, mean_len, seed, roll, eos, final):
    rng = np.random.default_rng(seed)
    ids = rng.integers(4, 500, size=length)
    before = ids.copy()
    eos_id = 2 if eos else None
    inp, tgt = span_corruption(ids, noise_density=density, mean_noise_span_length=mean_len,
                               sentinel_ids=SENTINELS, rng=rng, eos_id=eos_id,
                               final_sentinel=final, random_roll=roll)
    np.testing.assert_array_equal(ids, before)
    np.testing.assert_array_equal(reconstruct(inp, tgt, SENTINELS, eos_id=eos_id), ids)
    # sentinels appear in order, each once, in both input and target
    core_in = inp[:-1] if eos else inp
    core_tg = tgt[:-1] if eos else tgt
    s_in = [t for t in core_in if t in SENTINELS]
    s_tg = [t for t in core_tg if t in SENTINELS]
    assert s_in == SENTINELS[:len(s_in)] and len(s_in) >= 1
    assert s_tg == SENTINELS[:len(s_in) + int(final)]
    assert core_tg[0] == SENTINELS[0]
    # noise token count: round(L * density) clipped to [1, L-1]
    n_noise = len(core_tg) - len(s_tg)
    assert n_noise == min(max(_round_half_up(length * density), 1), length - 1)
    assert len(core_in) == length - n_noise + len(s_in)


def test_noise_mask_structure_and_statistics():
    rng = np.random.default_rng(0)
    fractions, span_lengths = [], []
    for _ in range(400):
        L = int(rng.integers(100, 513))
        m = random_spans_noise_mask(L, 0.15, 3.0, rng=rng)
        assert m.shape == (L,) and m.dtype == bool
        assert not m[0] and m[-1]  # T5: starts with non-noise, ends with noise
        fractions.append(m.mean())
        starts = np.flatnonzero(m & ~np.concatenate([[False], m[:-1]]))
        ends = np.flatnonzero(m & ~np.concatenate([m[1:], [False]]))
        span_lengths.extend((ends - starts + 1).tolist())
    assert abs(np.mean(fractions) - 0.15) < 0.005
    assert abs(np.mean(span_lengths) - 3.0) < 0.15
    assert min(span_lengths) == 1 and max(span_lengths) >= 8  # random segmentation
    # rolled masks can start with noise
    starts_noise = [random_spans_noise_mask(50, 0.3, 3.0, rng=rng, random_roll=True)[0]
                    for _ in range(200)]
    assert 0 < np.mean(starts_noise) < 1


def test_span_corruption_reproducible_and_errors():
    ids = np.arange(10, 110)
    a = span_corruption(ids, sentinel_ids=SENTINELS, rng=np.random.default_rng(3))
    b = span_corruption(ids, sentinel_ids=SENTINELS, rng=np.random.default_rng(3))
    c = span_corruption(ids, sentinel_ids=SENTINELS, rng=np.random.default_rng(4))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    with pytest.raises(ValueError):
        span_corruption(ids, sentinel_ids=SENTINELS[:2], rng=np.random.default_rng(0))
    with pytest.raises(ValueError):
        span_corruption(ids[:1], sentinel_ids=SENTINELS, rng=np.random.default_rng(0))
    with pytest.raises(ValueError):
        span_corruption(ids.reshape(10, 10), sentinel_ids=SENTINELS, rng=np.random.default_rng(0))


def test_span_corruption_batch():
    rng = np.random.default_rng(0)
    seqs = [rng.integers(4, 500, size=n) for n in (5, 40, 17, 120)]
    inp, tgt, li, lt = span_corruption_batch(seqs, pad_id=PAD, sentinel_ids=SENTINELS,
                                             rng=np.random.default_rng(1), eos_id=SEP)
    assert inp.shape == (4, li.max()) and tgt.shape == (4, lt.max())
    for b, s in enumerate(seqs):
        assert (inp[b, li[b]:] == PAD).all() and (tgt[b, lt[b]:] == PAD).all()
        assert inp[b, li[b] - 1] == SEP and tgt[b, lt[b] - 1] == SEP
        rec = reconstruct(inp[b, :li[b]], tgt[b, :lt[b]], SENTINELS, eos_id=SEP)
        np.testing.assert_array_equal(rec, s)
    # a 2-D array, truncated to per-row lengths; same rng -> same as one by one
    arr = np.zeros((3, 30), dtype=np.int64)
    lens = [30, 12, 2]
    for b, n in enumerate(lens):
        arr[b, :n] = rng.integers(4, 500, size=n)
    inp, tgt, li, lt = span_corruption_batch(arr, pad_id=PAD, lengths=lens,
                                             sentinel_ids=SENTINELS, rng=np.random.default_rng(5))
    r = np.random.default_rng(5)
    for b, n in enumerate(lens):
        i1, t1 = span_corruption(arr[b, :n], sentinel_ids=SENTINELS, rng=r)
        np.testing.assert_array_equal(inp[b, :li[b]], i1)
        np.testing.assert_array_equal(tgt[b, :lt[b]], t1)
        np.testing.assert_array_equal(reconstruct(i1, t1, SENTINELS), arr[b, :n])
