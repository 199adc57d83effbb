"""Teacher's solutions for lesson 07 (activation regularization: AR and TAR)."""
import numpy as np


def exercise_1(h, mask, alpha, beta):
    """AR = α·mean((m⊙h)²), TAR = β·mean((h_{t+1} − h_t)²) along time (axis 1), with NumPy."""
    ar = alpha * np.mean((mask * h) ** 2)
    tar = beta * np.mean((h[:, 1:] - h[:, :-1]) ** 2)
    return ar, tar


def exercise_2(h, beta):
    """TAR with minillm Tensor operations (slicing, subtraction, product, mean): differentiable."""
    diff = h[:, 1:] - h[:, :-1]
    return (diff * diff).mean() * beta


def exercise_3(h, beta):
    """∂TAR/∂h. With d_t = h_{t+1} − h_t and N = B·(T−1)·C differences,
    TAR = β/N Σ d_t², so ∂TAR/∂h_t = 2β/N (d_{t−1} − d_t): h_t enters d_{t−1} with + and d_t
    with −. The first step has no d_{t−1}, the last no d_t."""
    b, t, c = h.shape
    n = b * (t - 1) * c
    d = h[:, 1:] - h[:, :-1]
    g = np.zeros_like(h)
    g[:, 1:] += d      # from d_{t-1} = h_t − h_{t−1}
    g[:, :-1] -= d     # from d_t = h_{t+1} − h_t
    return 2.0 * beta / n * g
