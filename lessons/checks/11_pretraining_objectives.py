"""Checks for lesson 11 (pre-training objectives). Each calls the student's function first, so an
unfinished stub raises NotImplementedError before any assertion."""
import numpy as np

from minillm.nn.functional import IGNORE_INDEX
from minillm.objectives import random_spans_noise_mask, reconstruct, span_corruption


def exercise_1(fn):
    """80/10/10 replacement at chosen positions."""
    rng = np.random.default_rng(0)
    vocab, mask_id = 50, 50                     # [MASK] is id 50, outside the 50 ordinary ids
    ids = rng.integers(0, vocab, size=(200, 100))
    chosen = rng.random(ids.shape) < 0.15
    before = ids.copy()
    out = fn(ids, chosen, mask_id, vocab, np.random.default_rng(1))
    assert isinstance(out, tuple) and len(out) == 2, "return a pair (inputs, labels)"
    inputs, labels = (np.asarray(a) for a in out)
    assert np.array_equal(ids, before), "do not modify ids in place: work on a copy"
    assert inputs.shape == ids.shape and labels.shape == ids.shape, "inputs and labels have the shape of ids"
    assert np.array_equal(labels[chosen], ids[chosen]), "labels hold the ORIGINAL id at every chosen position"
    assert (labels[~chosen] == IGNORE_INDEX).all(), \
        f"labels are {IGNORE_INDEX} (IGNORE_INDEX, ignored by the loss) wherever nothing was chosen"
    assert np.array_equal(inputs[~chosen], ids[~chosen]), "positions that were not chosen must stay unchanged"
    masked = np.mean(inputs[chosen] == mask_id)
    kept = np.mean(inputs[chosen] == ids[chosen])
    other = 1 - masked - kept
    assert abs(masked - 0.8) < 0.03, f"about 80% of the chosen positions should become [MASK], got {masked:.1%}"
    assert abs(kept - (0.1 + 0.1 / vocab)) < 0.03, (
        f"about 10% of the chosen positions should keep their token (plus the rare random draw that hits "
        f"it), got {kept:.1%}")
    assert abs(other - 0.1) < 0.03, f"about 10% should become a random token, got {other:.1%}"
    randoms = inputs[chosen & (inputs != mask_id) & (inputs != ids)]
    assert randoms.min() >= 0 and randoms.max() < vocab, "random replacements are ordinary ids in [0, vocab_size)"
    assert len(np.unique(randoms)) > vocab // 2, "random replacements should be spread over the vocabulary"
    # independent decisions: the rule does not depend on the position
    first_half = np.mean(inputs[:, :50][chosen[:, :50]] == mask_id)
    assert abs(first_half - masked) < 0.05


def exercise_2(fn):
    """Reconstruct the original sequence from sentinels."""
    sentinels = list(range(100, 110))
    # the paper's example: "Thank you for inviting me to your party last week ."
    words = "Thank you for inviting me to your party last week .".split()
    ids = np.arange(len(words))
    noise = np.array([w in ("for", "inviting", "last") for w in words])
    inputs, targets = span_corruption(ids, sentinel_ids=sentinels, rng=0, noise_mask=noise)
    got = np.asarray(fn(inputs, targets, sentinels))
    assert np.array_equal(got, ids), (
        f"for inputs {inputs.tolist()} and targets {targets.tolist()} (sentinels 100, 101, ...) the original "
        f"is {ids.tolist()}, got {got.tolist()}")
    rng = np.random.default_rng(0)
    for trial in range(30):
        n = int(rng.integers(5, 60))
        seq = rng.integers(0, 100, size=n)
        inputs, targets = span_corruption(seq, sentinel_ids=sentinels, rng=rng, noise_density=0.3,
                                          mean_noise_span_length=2.0)
        got = np.asarray(fn(inputs, targets, sentinels))
        assert np.array_equal(got, seq), f"wrong reconstruction of {seq.tolist()}: got {got.tolist()}"


def exercise_3(fn):
    """Span corruption with a given noise mask."""
    sentinels = list(range(1000, 1020))
    ids = np.array([11, 12, 13, 14, 15, 16, 17, 18])
    noise = np.array([0, 1, 1, 0, 0, 1, 0, 0], dtype=bool)
    out = fn(ids, noise, sentinels)
    assert isinstance(out, tuple) and len(out) == 2, "return a pair (inputs, targets)"
    inputs, targets = (np.asarray(a) for a in out)
    assert inputs.tolist() == [11, 1000, 14, 15, 1001, 17, 18], (
        f"inputs: each run of noise becomes ONE sentinel: expected [11, 1000, 14, 15, 1001, 17, 18], "
        f"got {inputs.tolist()}")
    assert targets.tolist() == [1000, 12, 13, 1001, 16], (
        f"targets: each sentinel followed by the tokens it replaced: expected [1000, 12, 13, 1001, 16], "
        f"got {targets.tolist()}")
    rng = np.random.default_rng(0)
    for _ in range(30):
        n = int(rng.integers(2, 80))
        seq = rng.integers(0, 500, size=n)
        mask = random_spans_noise_mask(n, 0.15, 3.0, rng=rng, random_roll=bool(rng.integers(2)))
        want_in, want_tg = span_corruption(seq, sentinel_ids=sentinels, rng=0, noise_mask=mask)
        got_in, got_tg = (np.asarray(a) for a in fn(seq, mask, sentinels))
        assert np.array_equal(got_in, want_in) and np.array_equal(got_tg, want_tg), (
            f"sequence {seq.tolist()} with noise mask {mask.astype(int).tolist()}: expected inputs "
            f"{want_in.tolist()} and targets {want_tg.tolist()}, got {got_in.tolist()} and {got_tg.tolist()}")
        assert np.array_equal(reconstruct(got_in, got_tg, sentinels), seq)
