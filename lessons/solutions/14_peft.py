"""Teacher's solutions for lesson 14 (parameter-efficient fine-tuning)."""
import numpy as np


def exercise_1(x, W, b, A, B, alpha):
    """LoRA (Hu et al. 2021, eq. 3): h = x Wᵀ + b + (α/r)·x Aᵀ Bᵀ with r = A.shape[0]."""
    r = A.shape[0]
    return x @ W.T + b + (alpha / r) * (x @ A.T) @ B.T


def exercise_2(W, A, B, alpha):
    """The merged weight W' = W + (α/r)·B A: x W'ᵀ = x Wᵀ + (α/r)·x Aᵀ Bᵀ by associativity."""
    return W + (alpha / A.shape[0]) * B @ A


def exercise_3(h, R, W, b):
    """LoReFT (Wu et al. 2024, eq. 2) for row vectors: Φ(h) = h + (h Wᵀ + b − h Rᵀ) R.
    R Φ(h) = R h + (R Rᵀ)(W h + b − R h) = W h + b since R Rᵀ = I: the subspace coordinates are set to
    the learned values, the orthogonal complement is kept."""
    return h + (h @ W.T + b - h @ R.T) @ R
