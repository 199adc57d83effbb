"""Teacher's solutions for lesson 15 (robust fine-tuning, WiSE-FT)."""
import numpy as np


def exercise_1(state_0, state_1, alpha):
    """WiSE-FT (Wortsman et al. 2022, eq. 1) on state dicts; (1 − α)·θ0 + α·θ1 is exact at both ends."""
    return {k: (1.0 - alpha) * np.asarray(state_0[k]) + alpha * np.asarray(state_1[k]) for k in state_0}


def exercise_2(alphas, id_loss, tol):
    """The smallest α with ID loss ≤ min + tol (choose on ID data only: OOD data stands for the
    shifts you will meet later and cannot see now)."""
    alphas, id_loss = np.asarray(alphas, dtype=float), np.asarray(id_loss, dtype=float)
    return float(alphas[id_loss <= id_loss.min() + tol].min())


def exercise_3(W0, b0, W1, b1, x, alpha):
    """(weight-space ensemble, output-space ensemble) of two linear models on x."""
    W, b = (1 - alpha) * W0 + alpha * W1, (1 - alpha) * b0 + alpha * b1
    return x @ W.T + b, (1 - alpha) * (x @ W0.T + b0) + alpha * (x @ W1.T + b1)
