"""Teacher's solutions for lesson 10 (ensembles)."""
import numpy as np


def exercise_1(member_probs, y):
    """NLL of the probability average, of the logit average (softmax of the mean log-probability,
    which equals softmax of the mean logit), and the mean member NLL."""
    rows = np.arange(len(y))
    log_p = np.log(member_probs)
    mean_log = log_p.mean(axis=0)
    log_geo = mean_log - np.log(np.exp(mean_log).sum(axis=-1, keepdims=True))
    return (-np.mean(np.log(member_probs.mean(axis=0)[rows, y])), -np.mean(log_geo[rows, y]),
            -np.mean(log_p[:, rows, y]))


def exercise_2(member_probs, y):
    """Per epoch: mean member NLL − NLL of the probability average."""
    rows = np.arange(len(y))
    member = -np.log(member_probs[:, :, rows, y]).mean(axis=(0, 2))
    ensemble = -np.log(member_probs.mean(axis=0)[:, rows, y]).mean(axis=1)
    return member - ensemble


def exercise_3():
    """Two members barely prefer class 0, one is sure of class 1: the vote says 0, the average 1."""
    return np.array([[0.40, 0.35, 0.25],
                     [0.40, 0.35, 0.25],
                     [0.05, 0.90, 0.05]])
