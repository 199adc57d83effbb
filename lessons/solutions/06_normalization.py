"""Teacher's solutions for lesson 06 (normalization)."""
import numpy as np


def exercise_1(x, gamma, beta, eps=1e-5):
    """Batch norm of x (N, C) in training mode: normalize each column (feature) with the mean and
    the biased variance of this batch, then scale by gamma and shift by beta."""
    mean = x.mean(axis=0)
    var = x.var(axis=0)                      # biased (divide by N), as in the forward pass
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


def exercise_2(running_mean, running_var, x, momentum=0.1):
    """The running statistics after one training batch x (N, C): an exponential moving average,
    with the UNBIASED variance of the batch (divide by N − 1), as PyTorch and minillm do."""
    n = x.shape[0]
    new_mean = (1 - momentum) * running_mean + momentum * x.mean(axis=0)
    new_var = (1 - momentum) * running_var + momentum * x.var(axis=0) * n / (n - 1)
    return new_mean, new_var


def exercise_3(x, gamma, dy, eps=1e-5):
    """Closed-form layer-norm backward over the last dim: with x̂ = (x − μ)/σ, σ = √(var + ε) and
    g = dy·γ,  dx = (g − mean(g) − x̂·mean(g·x̂)) / σ  (means over the normalized dim)."""
    mu = x.mean(axis=-1, keepdims=True)
    sigma = np.sqrt(x.var(axis=-1, keepdims=True) + eps)
    xhat = (x - mu) / sigma
    g = dy * gamma
    return (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True)) / sigma
