"""RMSprop (Tieleman & Hinton, Coursera "Neural Networks for Machine Learning", lecture 6.5,
2012); the centered variant is from Graves, "Generating Sequences With Recurrent Neural
Networks", 2013. As ``torch.optim.RMSprop``."""
from __future__ import annotations

from .. import backend
from .optimizer import Optimizer


class RMSprop(Optimizer):
    r"""RMSprop, as ``torch.optim.RMSprop``.

    With g the gradient, α the smoothing constant, μ the momentum, each step does::

        g ← g + λ·θ                              (L2 weight decay)
        s ← α·s + (1 − α)·g²                     (mean square)
        ḡ ← α·ḡ + (1 − α)·g                      (mean gradient, if centered)
        d ← √(s − ḡ²) + ε  if centered  else  √s + ε
        b ← μ·b + g/d,  θ ← θ − lr·b             (if μ > 0)
        θ ← θ − lr·g/d                           (otherwise)

    State per parameter: ``step``, ``square_avg`` (s), ``momentum_buffer`` (b, if μ > 0) and
    ``grad_avg`` (ḡ, if centered).
    """

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0,
                 momentum: float = 0, centered: bool = False, *, maximize: bool = False):
        if lr < 0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if eps < 0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if momentum < 0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if alpha < 0:
            raise ValueError(f"Invalid alpha value: {alpha}")
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered, maximize=maximize))

    def _init_state(self, p, group: dict) -> dict:
        xp = backend.get_array_module(p.data)
        state = {"step": 0, "square_avg": xp.zeros_like(p.data)}
        if group["momentum"] > 0:
            state["momentum_buffer"] = xp.zeros_like(p.data)
        if group["centered"]:
            state["grad_avg"] = xp.zeros_like(p.data)
        return state

    def _step_group(self, group: dict) -> None:
        lr, alpha, eps = float(group["lr"]), float(group["alpha"]), float(group["eps"])
        weight_decay, momentum = float(group["weight_decay"]), float(group["momentum"])
        centered, maximize = bool(group["centered"]), bool(group["maximize"])
        for p in group["params"]:
            if p.grad is None:
                continue
            param = p.data
            xp = backend.get_array_module(param)
            state = self._param_state(p, group)
            state["step"] += 1
            g = self._gradient(param, p.grad.data, weight_decay, maximize, xp)  # g ← g + λ·θ
            square_avg = state["square_avg"]

            tmp = self._scratch(param)
            square_avg *= alpha                                  # s ← α·s + (1 − α)·g²
            xp.multiply(g, g, out=tmp)
            tmp *= 1.0 - alpha
            square_avg += tmp
            if centered:
                grad_avg = state.get("grad_avg")
                if grad_avg is None:  # centered switched on after the first step
                    grad_avg = state["grad_avg"] = xp.zeros_like(param)
                grad_avg *= alpha                                # ḡ ← α·ḡ + (1 − α)·g
                grad_avg += xp.multiply(g, 1.0 - alpha, out=tmp)
                denom = xp.multiply(grad_avg, grad_avg, out=tmp)  # d ← √(s − ḡ²) + ε
                xp.subtract(square_avg, denom, out=denom)
                xp.sqrt(denom, out=denom)
            else:
                denom = xp.sqrt(square_avg, out=tmp)             # d ← √s + ε
            denom += eps

            if momentum > 0:
                buf = state.get("momentum_buffer")
                if buf is None:  # momentum switched on after the first step
                    buf = state["momentum_buffer"] = xp.zeros_like(param)
                buf *= momentum                                  # b ← μ·b + g/d
                buf += xp.divide(g, denom, out=tmp)
                param -= xp.multiply(buf, lr, out=tmp)           # θ ← θ − lr·b
            else:
                update = xp.divide(g, denom, out=tmp)            # θ ← θ − lr·g/d
                update *= lr
                param -= update
