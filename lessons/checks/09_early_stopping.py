"""Checks for lesson 09 (early stopping). Each calls the student's function first, so an
unfinished stub raises NotImplementedError before any assertion. Epochs are numbered from 1."""
import numpy as np

from minillm.regularizers import EarlyStopping

CURVES = [
    [1.0, 0.8, 0.7, 0.72, 0.71, 0.69, 0.70, 0.71, 0.73, 0.75, 0.80],
    [0.5, 0.6, 0.7, 0.8],
    [1.0, 0.9, 0.8, 0.7, 0.6],
    [1.0, 0.95, 0.949, 0.948, 0.947, 0.946, 0.9],
    [2.0, 1.5, 1.6, 1.55, 1.52, 1.4, 1.45, 1.5, 1.6, 1.7, 1.8, 1.9],
]


def _library(losses, patience, min_delta=0.0):
    es = EarlyStopping(patience=patience, min_delta=min_delta)
    for epoch, loss in enumerate(losses, start=1):
        if es.step(loss):
            return epoch, es.best_step
    return None, es.best_step


def exercise_1(fn):
    """A patience-based stopper agrees with minillm.regularizers.EarlyStopping."""
    first = fn(list(CURVES[0]), 2, 0.0)
    assert isinstance(first, tuple) and len(first) == 2, "return a pair (stop_epoch or None, best_epoch)"
    for losses in CURVES:
        for patience in (1, 2, 3, 5):
            for min_delta in (0.0, 0.005):
                got = tuple(fn(list(losses), patience, min_delta))
                want = _library(losses, patience, min_delta)
                assert got == want, (
                    f"losses {losses}, patience {patience}, min_delta {min_delta}: expected (stop, best) = {want}, "
                    f"got {got}. An epoch improves when loss < best − min_delta; stop when the count of epochs "
                    "in a row without improvement reaches patience; epochs are numbered from 1")


def exercise_2(fn):
    """The best epoch of a curve and the patience needed to reach it."""
    for losses in CURVES + [[3.0, 2.0, 2.5, 2.4, 2.6, 2.7, 1.9, 2.0, 2.2, 2.1, 1.95, 1.8, 2.5]]:
        got = fn(list(losses))
        assert isinstance(got, tuple) and len(got) == 2, "return a pair (best_epoch, patience_needed)"
        best_epoch, needed = int(got[0]), int(got[1])
        want_best = int(np.argmin(losses)) + 1
        assert best_epoch == want_best, (
            f"for {losses} the lowest loss {min(losses)} is at epoch {want_best} (numbered from 1), got {best_epoch}")
        reaches = [p for p in range(len(losses) + 1) if _reaches(losses, p)]
        assert needed == min(reaches), (
            f"for {losses} the smallest patience that still reaches epoch {want_best} is {min(reaches)}, got {needed}: "
            "find the longest run of epochs without improvement BEFORE the best epoch; a run of k bad epochs needs "
            "patience k + 1 (0 if there is no such run)")


def _reaches(losses, patience):
    stop, best = _library(losses, patience)
    return best == int(np.argmin(losses)) + 1


def exercise_3(fn):
    """Prechelt's generalization-loss criterion GL_α."""
    losses = [1.0, 0.8, 0.7, 0.72, 0.71, 0.69, 0.70, 0.71, 0.73, 0.75, 0.80]
    cases = {5.0: 9, 2.0: 4, 3.0: 9, 20.0: None, 10.0: 11}
    for alpha, want in cases.items():
        got = fn(list(losses), alpha)
        assert got == want, (
            f"GL_{alpha} on {losses}: expected epoch {want}, got {got}. GL(t) = 100·(E_va(t)/E_opt(t) − 1) with "
            "E_opt(t) the lowest loss up to epoch t; stop at the first t with GL(t) > α (None if never)")
