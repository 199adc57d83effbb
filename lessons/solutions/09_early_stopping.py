"""Teacher's solutions for lesson 09 (early stopping). Epochs are numbered from 1:
``losses[0]`` is the validation loss after epoch 1."""
import math


def exercise_1(losses, patience, min_delta=0.0):
    """Patience-based early stopping on a list of validation losses.
    Returns (stop_epoch or None if it never stops, best_epoch)."""
    best, best_epoch, bad = math.inf, 0, 0
    for epoch, loss in enumerate(losses, start=1):
        if best_epoch == 0 or loss < best - min_delta:   # an improvement (the first value always is)
            best, best_epoch, bad = loss, epoch, 0
        else:
            bad += 1
            if bad >= patience:
                return epoch, best_epoch
    return None, best_epoch


def exercise_2(losses):
    """(best_epoch, patience_needed): the epoch of the lowest loss (the first one on a tie), and
    the smallest patience with which early stopping (min_delta = 0) would still reach it."""
    best, best_epoch, bad, longest = math.inf, 0, 0, 0
    for epoch, loss in enumerate(losses, start=1):
        if loss < best:
            longest = max(longest, bad)      # the run of bad epochs this improvement ends
            best, best_epoch, bad = loss, epoch, 0
        else:
            bad += 1
    return best_epoch, (longest + 1 if longest > 0 else 0)


def exercise_3(losses, alpha):
    """Prechelt's GL_α criterion: stop at the first epoch where the generalization loss
    GL(t) = 100·(E_va(t)/E_opt(t) − 1) exceeds alpha (E_opt(t): the lowest val loss up to t).
    Returns that epoch, or None."""
    best = math.inf
    for epoch, loss in enumerate(losses, start=1):
        best = min(best, loss)
        if 100.0 * (loss / best - 1.0) > alpha:
            return epoch
    return None
