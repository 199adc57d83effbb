"""Teacher's solutions for lesson 05 (weight decay)."""
import numpy as np


def exercise_1(w, lam):
    """Gradient of the L2 penalty (λ/2)·Σ w²: d/dw = λ·w."""
    return lam * w


def exercise_2(w, grad, m, v, t, lr, weight_decay, beta1=0.9, beta2=0.999, eps=1e-8):
    """One AdamW step (decoupled weight decay, Loshchilov & Hutter 2019). ``t`` is the number of
    this step (1 for the first). Returns (new w, new m, new v); the inputs are not modified."""
    w = w * (1.0 - lr * weight_decay)           # decay: outside the adaptive step
    m = beta1 * m + (1.0 - beta1) * grad        # the moments see the plain gradient only
    v = beta2 * v + (1.0 - beta2) * grad ** 2
    m_hat = m / (1.0 - beta1 ** t)
    v_hat = v / (1.0 - beta2 ** t)
    w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
    return w, m, v


def exercise_3(w, grad, lr, lam):
    """One proximal-gradient (ISTA) step for loss + λ·Σ|w|: a gradient step on the loss, then
    soft-thresholding, which sets every weight with |w| ≤ lr·λ to exactly zero."""
    z = w - lr * grad
    return np.sign(z) * np.maximum(np.abs(z) - lr * lam, 0.0)
