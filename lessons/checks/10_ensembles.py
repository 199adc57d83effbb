"""Checks for lesson 10 (ensembles). Each calls the student's function first, so an unfinished
stub raises NotImplementedError before any assertion."""
import numpy as np


def _as_numpy(a):
    return a.numpy() if getattr(a, "_is_tensor", False) else np.asarray(a)


def _random_members(k=4, n=50, c=5, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((k, n, c)) * 2.0
    p = np.exp(logits - logits.max(-1, keepdims=True))
    return p / p.sum(-1, keepdims=True), rng.integers(0, c, size=n)


def exercise_1(fn):
    """Average the members' probabilities and compute the ensemble NLL."""
    probs, y = _random_members()
    out = fn(probs.copy(), y.copy())
    assert isinstance(out, (tuple, list)) and len(out) == 2, "return a pair (ensemble_probs, nll)"
    p_bar, nll = _as_numpy(out[0]), float(_as_numpy(out[1]))
    assert p_bar.shape == probs.shape[1:], (
        f"the ensemble's probabilities have one row per example, shape {probs.shape[1:]}; got {p_bar.shape}. "
        "Average over the MEMBERS axis (axis 0)")
    assert np.allclose(p_bar, probs.mean(0)), "the ensemble distribution is the mean of the members' distributions"
    want = -np.mean(np.log(probs.mean(0)[np.arange(len(y)), y]))
    if not np.isclose(nll, want, rtol=1e-6):
        member_mean = -np.mean(np.log(probs[:, np.arange(len(y)), y]))
        hint = (" That is the members' mean NLL: average the probabilities FIRST, then take −log."
                if np.isclose(nll, member_mean, rtol=1e-6) else "")
        raise AssertionError(f"the ensemble NLL should be {want:.6f}, got {nll:.6f}.{hint}")
    member_nll = -np.mean(np.log(probs[:, np.arange(len(y)), y]), axis=1)
    assert nll <= member_nll.mean() + 1e-12, "Jensen: the ensemble NLL can never exceed the mean member NLL"


def exercise_2(fn):
    """Majority vote: each member votes for its argmax class; ties go to the smallest class index."""
    probs, _ = _random_members(k=5, n=200, c=4, seed=1)
    votes = _as_numpy(fn(probs.copy())).astype(int)
    assert votes.shape == (probs.shape[1],), f"one predicted class per example: shape {(probs.shape[1],)}, got {votes.shape}"
    picks = probs.argmax(-1)
    want = np.array([np.bincount(picks[:, i], minlength=4).argmax() for i in range(probs.shape[1])])
    wrong = np.flatnonzero(votes != want)
    assert len(wrong) == 0, (f"example {wrong[0]}: the members vote {picks[:, wrong[0]].tolist()}, so the "
                             f"majority is class {want[wrong[0]]}, you predicted {votes[wrong[0]]}")
    tie = np.array([[[0.1, 0.9, 0.0]], [[0.1, 0.0, 0.9]]])  # one vote for class 1, one for class 2
    assert int(_as_numpy(fn(tie))[0]) == 1, "a tie goes to the smallest class index (np.bincount(...).argmax())"


def exercise_3(fn):
    """Three members' distributions over 3 classes on which majority vote and probability averaging disagree."""
    probs = _as_numpy(fn()).astype(float)
    assert probs.shape == (3, 3), f"return a (3 members, 3 classes) array, got shape {probs.shape}"
    assert np.all(probs >= 0) and np.allclose(probs.sum(1), 1), "each row must be a probability distribution"
    picks = probs.argmax(1)
    vote = np.bincount(picks, minlength=3).argmax()
    avg = probs.mean(0).argmax()
    assert vote != avg, (f"the vote picks class {vote} and the average picks class {avg}: they agree. Hint: let "
                         "two members prefer class 0 only barely, and the third be very sure of class 1")
