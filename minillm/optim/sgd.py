"""Stochastic gradient descent, with momentum (Polyak, 1964) and Nesterov momentum
(Nesterov, 1983; in the form of Sutskever et al., "On the importance of initialization and
momentum in deep learning", ICML 2013), exactly as ``torch.optim.SGD``."""
from __future__ import annotations

from .. import backend
from .optimizer import Optimizer


class SGD(Optimizer):
    r"""Stochastic gradient descent, as ``torch.optim.SGD``.

    With g the gradient (−g if ``maximize``), λ the weight decay, μ the momentum, τ the
    dampening and b the momentum buffer, each step does::

        g ← g + λ·θ                      (L2 weight decay)
        b ← g                            (first step)
        b ← μ·b + (1 − τ)·g              (later steps)
        g ← g + μ·b  if nesterov  else  g ← b     (only when μ ≠ 0)
        θ ← θ − lr·g

    State per parameter: ``momentum_buffer`` (only when momentum ≠ 0).
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, maximize: bool = False):
        if lr < 0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, maximize=maximize))

    def _step_group(self, group: dict) -> None:
        lr, momentum = float(group["lr"]), float(group["momentum"])
        dampening, weight_decay = float(group["dampening"]), float(group["weight_decay"])
        nesterov, maximize = bool(group["nesterov"]), bool(group["maximize"])
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        for p in group["params"]:
            if p.grad is None:
                continue
            param = p.data
            xp = backend.get_array_module(param)
            d = self._gradient(param, p.grad.data, weight_decay, maximize, xp)  # ±g + λθ
            if momentum != 0:
                state = self._param_state(p, group)
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = d.copy()          # b ← g
                else:
                    buf *= momentum                                    # b ← μ·b + (1 − τ)·g
                    if dampening == 0:
                        buf += d
                    else:  # d is not needed afterwards (Nesterov requires τ = 0): scale it in slot 1
                        buf += xp.multiply(d, 1.0 - dampening, out=self._scratch(param, 1))
                if nesterov:                                           # g ← g + μ·b
                    step = xp.multiply(buf, momentum, out=self._scratch(param))
                    step += d
                    d = step
                else:                                                  # g ← b
                    d = buf
            param -= xp.multiply(d, lr, out=self._scratch(param))      # θ ← θ − lr·g
