"""Gradient clipping (Pascanu et al., 2013): keep one bad batch from blowing up the weights."""
from __future__ import annotations

import math

import numpy as np

from .. import backend


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False):
    """Scale all gradients in place so that their joint ``norm_type``-norm is at most ``max_norm``:
    g ← g · min(1, max_norm / (‖g‖ + 1e-6)).

    Returns the total norm before clipping as a 0-d tensor on the gradients' device, as
    ``torch.nn.utils.clip_grad_norm_`` (``float(...)`` or ``.item()`` reads it). The norm and the
    scale stay on the device: no host synchronization unless ``error_if_nonfinite`` asks for one.
    """
    from ..tensor import Tensor
    if getattr(parameters, "_is_tensor", False):
        parameters = [parameters]
    grads = [p.grad.data for p in parameters if p.grad is not None]
    if not grads:
        return Tensor(np.zeros((), dtype=np.float32))
    xp = backend.get_array_module(grads[0])
    if norm_type == math.inf:
        per_tensor = [xp.abs(g).max() if g.size else xp.zeros((), g.dtype) for g in grads]
        total = xp.max(xp.stack([t.astype(grads[0].dtype) for t in per_tensor]))
    else:
        # one partial sum per gradient, summed on the device: no float64 copy of the gradients
        parts = [xp.vdot(g.ravel(), g.ravel()) if norm_type == 2 else (xp.abs(g) ** norm_type).sum() for g in grads]
        total = xp.stack([xp.asarray(p).astype(grads[0].dtype) for p in parts]).sum() ** (1.0 / norm_type)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(f"clip_grad_norm_: the total gradient norm is {float(total)}")
    scale = xp.minimum(max_norm / (total + 1e-6), 1.0).astype(grads[0].dtype)
    for g in grads:
        g *= scale
    return Tensor(xp.asarray(total))


def clip_grad_value_(parameters, clip_value: float) -> None:
    """Clamp every gradient element to [−clip_value, clip_value], in place."""
    if getattr(parameters, "_is_tensor", False):
        parameters = [parameters]
    for p in parameters:
        if p.grad is not None:
            backend.get_array_module(p.grad.data).clip(p.grad.data, -clip_value, clip_value, out=p.grad.data)
