"""Checks for lesson 02 (attention). Each calls the student's function first, so an unfinished
stub raises NotImplementedError before any assertion."""
import functools

import numpy as np

import minillm
from minillm.nn import functional as F


def exercise_1(fn):
    """The causal mask for t_q queries that are the last t_q of t_k positions."""
    first = fn(5, 5)
    for t_q, t_k in [(5, 5), (1, 1), (3, 7), (1, 6), (8, 8)]:
        got = first if (t_q, t_k) == (5, 5) else fn(t_q, t_k)
        got = got.numpy() if getattr(got, "_is_tensor", False) else np.asarray(got)
        expected = np.tri(t_q, t_k, k=t_k - t_q, dtype=bool)
        assert got.shape == (t_q, t_k), f"mask for t_q={t_q}, t_k={t_k} should have shape {(t_q, t_k)}, got {got.shape}"
        assert got.dtype == np.bool_, f"the mask should be boolean (True = allowed), got dtype {got.dtype}"
        if not np.array_equal(got, expected):
            raise AssertionError(
                f"wrong mask for t_q={t_q}, t_k={t_k}.\nexpected (1 = allowed):\n{expected.astype(int)}\n"
                f"got:\n{got.astype(int)}\nQuery i is at absolute position i + t_k - t_q and sees keys j <= that.")


def _prediction_note(prediction, truth_text, held, choices=None):
    if prediction is None:
        print("(no prediction written down: make it BEFORE you measure — that is the exercise)")
    elif choices is not None and prediction not in choices:
        print(f"(your prediction {prediction!r} is not one of {choices})")
    elif held:
        print(f"Your prediction {prediction!r} held: {truth_text}.")
    else:
        print(f"Your prediction {prediction!r} did not hold: {truth_text}. Where did your reasoning go wrong?")


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@functools.lru_cache(maxsize=None)   # (64, 256) draws 65 M normals (~1.5 s): once, not twice
def _mean_max_weight(d_k, n_keys, scaled, n=4000, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n, d_k))
    k = rng.standard_normal((n, n_keys, d_k))
    s = np.einsum("nd,njd->nj", q, k) / (np.sqrt(d_k) if scaled else 1.0)
    return float(_softmax(s).max(-1).mean())


def exercise_2(fn, prediction=None):
    """Measure the mean largest attention weight for random unit-variance queries and keys."""
    settings = [(16, 16, True), (64, 256, True), (256, 16, False), (4, 2, True)]
    for d_k, n_keys, scaled in settings:
        got = float(fn(d_k, n_keys, scaled))
        want = _mean_max_weight(d_k, n_keys, scaled)
        if not abs(got - want) <= 0.03:
            raise AssertionError(
                f"for d_k={d_k}, {n_keys} keys, scaled={scaled} the mean largest weight is about {want:.3f}, you "
                f"measured {got:.3f}. Draw many (query, key set) pairs with standard normal entries, score every "
                "key, take a softmax over the keys, and average the largest weight over the pairs.")
    truth = _mean_max_weight(64, 256, True)
    held = prediction is not None and not isinstance(prediction, str) and abs(float(prediction) - truth) <= 0.5 * truth
    _prediction_note(prediction, f"with 256 keys (scaled, d_k = 64) the largest weight is {truth:.3f} on average, "
                     f"against {_mean_max_weight(64, 16, True):.3f} with 16 keys: a longer context spreads the "
                     "same-sized scores over more keys", held)


def _jacobian_fd(s, h=1e-6):
    n = len(s)
    out = np.zeros((n, n))
    for j in range(n):
        e = np.zeros(n)
        e[j] = h
        out[:, j] = (_softmax(s + e) - _softmax(s - e)) / (2 * h)
    return out


def exercise_3(fn, prediction=None):
    """The Jacobian of the softmax, d a_i / d s_j, and how its size changes with unscaled wide heads."""
    rng = np.random.default_rng(3)
    for n in (2, 5, 16):
        s = rng.standard_normal(n) * 2
        got = np.asarray(fn(s.copy()), dtype=np.float64)
        assert got.shape == (n, n), f"for {n} scores the Jacobian is {n} × {n}, got shape {got.shape}"
        want = _jacobian_fd(s)
        if not np.allclose(got, want, atol=1e-6):
            raise AssertionError(
                f"for the scores {np.round(s, 3)} the Jacobian (row i = output a_i, column j = score s_j) should be\n"
                f"{np.round(want, 4)}\ngot\n{np.round(got, 4)}\nDifferentiate a_i = exp(s_i) / sum_k exp(s_k) "
                "with respect to s_j: once for j = i, once for j != i.")
    norms = {}
    rng = np.random.default_rng(4)
    for d_k in (16, 1024):
        for scaled in (False, True):
            vals = []
            for _ in range(300):
                q, k = rng.standard_normal(d_k), rng.standard_normal((16, d_k))
                s = k @ q / (np.sqrt(d_k) if scaled else 1.0)
                vals.append(np.linalg.norm(np.asarray(fn(s), dtype=np.float64)))
            norms[(d_k, scaled)] = float(np.mean(vals))
    truth = "shrinks" if norms[(1024, False)] < 0.5 * norms[(16, False)] else "same"
    _prediction_note(prediction, f"the mean size (Frobenius norm) of the Jacobian, 16 keys: unscaled "
                     f"{norms[(16, False)]:.3f} at d_k = 16 and {norms[(1024, False)]:.3f} at d_k = 1024; "
                     f"scaled {norms[(16, True)]:.3f} and {norms[(1024, True)]:.3f}", prediction == truth,
                     choices=("grows", "same", "shrinks"))
