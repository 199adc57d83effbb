"""Teacher's solutions for lesson 02 (attention)."""
import math

import numpy as np

import minillm


def exercise_1(t_q, t_k):
    # query i is at absolute position i + (t_k - t_q); it may see keys j <= that position
    i = np.arange(t_q)[:, None]
    j = np.arange(t_k)[None, :]
    return j <= i + (t_k - t_q)


def exercise_2(d_k, n_keys, scaled, n=4000, seed=0):
    """Mean over n random (query, key set) pairs of the largest softmax weight."""
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n, d_k))
    k = rng.standard_normal((n, n_keys, d_k))
    s = np.einsum("nd,njd->nj", q, k) / (math.sqrt(d_k) if scaled else 1.0)
    a = np.exp(s - s.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    return a.max(-1).mean()



def exercise_3(scores):
    """d a_i / d s_j = a_i (delta_ij - a_j)."""
    a = np.exp(scores - scores.max())
    a /= a.sum()
    return np.diag(a) - np.outer(a, a)
