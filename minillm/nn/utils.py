"""Gradient clipping (Pascanu et al., 2013): keep one bad batch from blowing up the weights."""
from __future__ import annotations

import math

from .. import backend


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False) -> float:
    """Scale all gradients in place so their joint ``norm_type``-norm is at most ``max_norm``.

    Returns the total norm before clipping (as a Python float), like ``torch.nn.utils``.
    """
    if getattr(parameters, "_is_tensor", False):
        parameters = [parameters]
    grads = [p.grad.data for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    if norm_type == math.inf:
        total = max(float(abs(g).max()) for g in grads)
    else:
        xp = backend.get_array_module(grads[0])
        # one float per gradient, summed on the host: no float64 copy of the gradients
        total = sum(float(xp.vdot(g.ravel(), g.ravel())) if norm_type == 2 else
                    float((abs(g) ** norm_type).sum()) for g in grads) ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"clip_grad_norm_: the total gradient norm is {total}")
    scale = max_norm / (total + 1e-6)
    if scale < 1.0:
        for g in grads:
            g *= scale
    return total


def clip_grad_value_(parameters, clip_value: float) -> None:
    """Clamp every gradient element to [−clip_value, clip_value], in place."""
    if getattr(parameters, "_is_tensor", False):
        parameters = [parameters]
    for p in parameters:
        if p.grad is not None:
            backend.get_array_module(p.grad.data).clip(p.grad.data, -clip_value, clip_value, out=p.grad.data)
