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


def _nlls(probs, y):
    rows = np.arange(len(y))
    log_p = np.log(probs)                                   # (K, N, C): logits up to a constant
    mean_log = log_p.mean(0)
    log_geo = mean_log - np.log(np.exp(mean_log).sum(-1, keepdims=True))   # log softmax(mean logit)
    return (float(-np.mean(np.log(probs.mean(0)[rows, y]))), float(-np.mean(log_geo[rows, y])),
            float(-np.mean(log_p[:, rows, y])))


def _verdict_on_prediction(prediction, truth, choices, what):
    if prediction is None:
        print(f"(no prediction written down: set it to one of {choices} BEFORE measuring — that is the exercise)")
    elif prediction not in choices:
        print(f"(your prediction {prediction!r} is not one of {choices})")
    elif prediction == truth:
        print(f"Your prediction {prediction!r} held: {what}.")
    else:
        print(f"Your prediction {prediction!r} did not hold: {what}. Why? (Think before you read on.)")


def exercise_1(fn, prediction=None, member_probs=None, y=None):
    """Measure the NLL of the probability average, of the logit average, and the mean member NLL."""
    probs, yy = _random_members()
    out = fn(probs.copy(), yy.copy())
    assert isinstance(out, (tuple, list)) and len(out) == 3, (
        "return a triple (nll_prob_average, nll_logit_average, mean_member_nll)")
    got = [float(_as_numpy(v)) for v in out]
    want = _nlls(probs, yy)
    names = ("the probability average's NLL", "the logit average's NLL", "the mean member NLL")
    for g, w, name in zip(got, want, names):
        if not np.isclose(g, w, rtol=1e-6):
            hint = ""
            if name == names[0] and np.isclose(g, want[2], rtol=1e-6):
                hint = " That is the mean member NLL: which comes first, the average or the −log?"
            if name == names[1]:
                hint = (" The log of a probability is a logit minus a constant; average those, and remember "
                        "that a softmax must sum to 1.")
            raise AssertionError(f"{name} should be {w:.6f} on the test members, got {g:.6f}.{hint}")
    if member_probs is not None:
        p_avg, l_avg, mean_member = _nlls(np.asarray(member_probs, dtype=np.float64), np.asarray(y))
        truth = "prob" if p_avg < l_avg else "logit"
        _verdict_on_prediction(prediction, truth, ("prob", "logit"),
                               f"on this lesson's members the probability average reaches {p_avg:.4f}, the logit "
                               f"average {l_avg:.4f}, the mean member {mean_member:.4f}")


def exercise_2(fn, prediction=None, member_probs=None, y=None):
    """The ensemble's gain (mean member NLL − ensemble NLL) after every epoch."""
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((3, 4, 40, 5)) * np.linspace(0.5, 3, 4)[None, :, None, None]
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    yy = rng.integers(0, 5, size=40)

    def gains(p, y_):
        rows = np.arange(len(y_))
        member = -np.log(p[:, :, rows, y_]).mean(axis=(0, 2))          # (E,)
        ens = -np.log(p.mean(0)[:, rows, y_]).mean(axis=1)             # (E,)
        return member - ens

    got = _as_numpy(fn(probs.copy(), yy.copy())).astype(float)
    want = gains(probs, yy)
    assert got.shape == want.shape, (f"one gain per epoch: shape {want.shape} for members of shape "
                                     f"{probs.shape} (K, E, N, C), got {got.shape}")
    assert np.all(got >= -1e-12) or not np.allclose(-got, want), "mean member NLL MINUS ensemble NLL (a gain)"
    assert np.allclose(got, want, rtol=1e-6), (
        f"the gains should be {np.round(want, 4)} on the test members, got {np.round(got, 4)}. For each epoch: "
        "the ensemble averages over the members axis only")
    if member_probs is not None:
        g = gains(np.asarray(member_probs, dtype=np.float64), np.asarray(y))
        early = int(np.argmin(-np.log(np.asarray(member_probs)[:, :, np.arange(len(y)), y]).mean(axis=(0, 2))))
        truth = "late" if g[-1] > g[early] else "early"
        _verdict_on_prediction(prediction, truth, ("early", "late"),
                               f"the gain is {g[early]:.4f} at epoch {early + 1} (the members' best on average) "
                               f"and {g[-1]:.4f} at the last epoch ({len(g)})")


def exercise_3(fn):
    """Three members' distributions over 3 classes on which majority vote and probability averaging disagree."""
    probs = _as_numpy(fn()).astype(float)
    assert probs.shape == (3, 3), f"return a (3 members, 3 classes) array, got shape {probs.shape}"
    assert np.all(probs >= 0) and np.allclose(probs.sum(1), 1), "each row must be a probability distribution"
    picks = probs.argmax(1)
    vote = np.bincount(picks, minlength=3).argmax()
    avg = probs.mean(0).argmax()
    assert vote != avg, (f"the vote picks class {vote} and the average picks class {avg}: they agree. A vote "
                         "counts members; the average also weighs how sure each one is. Use that difference")
