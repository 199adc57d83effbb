"""Teacher's solutions for lesson 04 (dropout)."""
import numpy as np


def exercise_1(x, p, training, rng):
    """Inverted dropout on a NumPy array: zero each element with probability p, scale the
    survivors by 1/(1 − p); the identity in eval mode (or when p = 0)."""
    if not training or p == 0:
        return x
    if p == 1:
        return np.zeros_like(x)
    keep = rng.random(x.shape) >= p          # True with probability 1 − p
    return x * keep / (1.0 - p)


def exercise_2(ps):
    """Probability that a unit survives a stack of independent dropouts with rates ``ps``, and
    the total scale applied to a survivor."""
    survive = float(np.prod([1.0 - p for p in ps]))
    return survive, 1.0 / survive


def exercise_3(W, p):
    """Test-time weights of the original (non-inverted) dropout: units were kept with
    probability 1 − p during training and never rescaled, so at test time each outgoing weight
    is multiplied by 1 − p (Hinton et al., 2012)."""
    return W * (1.0 - p)
