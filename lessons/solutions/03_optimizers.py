"""Teacher's solutions for lesson 03 (optimizers)."""
import numpy as np


def exercise_1(param, grad, buf, lr, momentum):
    buf = grad.copy() if buf is None else momentum * buf + grad   # b ← g (first step), else μ·b + g
    return param - lr * buf, buf


def exercise_2(param, grad, m, v, t, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad ** 2
    m_hat = m / (1 - beta1 ** t)
    v_hat = v / (1 - beta2 ** t)
    return param - lr * m_hat / (np.sqrt(v_hat) + eps), m, v


def exercise_3(grads, max_norm):
    total = float(np.sqrt(sum((g ** 2).sum() for g in grads)))
    scale = min(1.0, max_norm / (total + 1e-6))
    return [g * scale for g in grads], total
