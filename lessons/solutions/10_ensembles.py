"""Teacher's solutions for lesson 10 (ensembles)."""
import numpy as np


def exercise_1(member_probs, y):
    """p̄ = mean_k p_k (over the members), NLL = −mean_n log p̄_n[y_n]."""
    p_bar = member_probs.mean(axis=0)
    nll = -np.mean(np.log(p_bar[np.arange(len(y)), y]))
    return p_bar, nll


def exercise_2(member_probs):
    """Each member votes for its argmax; the most voted class wins (ties: smallest index)."""
    picks = member_probs.argmax(axis=-1)                 # (K, N)
    n_classes = member_probs.shape[-1]
    return np.array([np.bincount(picks[:, i], minlength=n_classes).argmax() for i in range(picks.shape[1])])


def exercise_3():
    """Two members barely prefer class 0, one is sure of class 1: the vote says 0, the average 1."""
    return np.array([[0.40, 0.35, 0.25],
                     [0.40, 0.35, 0.25],
                     [0.05, 0.90, 0.05]])
