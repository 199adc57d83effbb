"""Adam (Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015) and AdamW
(Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019), as ``torch.optim``."""
from __future__ import annotations

import numpy as np

from .. import backend, kernels
from ..kernels import compiled
from ..kernels.adam import cuda_adam_kernel
from ..kernels.threads import over_rows
from .optimizer import Optimizer

# the compiled update sees a parameter as rows of this many elements, which ``over_rows`` hands to
# its threads (a size that does not divide is one row)
ADAM_BLOCK = 1024


class Adam(Optimizer):
    r"""Adam, as ``torch.optim.Adam`` (``weight_decay`` is L2: it is added to the gradient).

    With g the gradient, t the step of this parameter (1, 2, ...), each step does::

        g ← g + λ·θ                                   (Adam: L2 weight decay)
        θ ← θ − lr·λ·θ                                (AdamW: decoupled weight decay, instead)
        m ← β₁·m + (1 − β₁)·g                         (first moment)
        v ← β₂·v + (1 − β₂)·g²                        (second moment)
        v̂ ← max(v̂, v)  if amsgrad  else  v̂ ← v       (Reddi et al., ICLR 2018)
        θ ← θ − lr/(1 − β₁ᵗ) · m / (√v̂ / √(1 − β₂ᵗ) + ε)

    The last line is the bias-corrected update m̂/(√v̂ + ε) of the paper with ε added after the
    correction of v, as PyTorch does. ``_update_as_in_the_paper`` is that algorithm line by line
    (what runs when ``minillm.kernels`` is disabled); ``_update_in_place`` computes the same in
    the paper's equivalent form θ ← θ − α·m/(√v̂ + ε̂) without temporaries. Without amsgrad, the
    whole update is one fused kernel on CuPy (``minillm/kernels/adam.py``) and, with numba
    installed (the ``[fast]`` extra), one compiled loop on NumPy (``kernels/compiled.py``). State per
    parameter: ``step``, ``exp_avg`` (m), ``exp_avg_sq`` (v) and, with amsgrad,
    ``max_exp_avg_sq``; arrays in the parameter's dtype on its device.
    """
    _decoupled_weight_decay = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, amsgrad: bool = False, *, maximize: bool = False):
        if lr < 0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if eps < 0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= betas[0] < 1.0 or not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameters: {betas} (each must be in [0, 1))")
        if weight_decay < 0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize))

    def _init_state(self, p, group: dict) -> dict:
        xp = backend.get_array_module(p.data)
        state = {"step": 0, "exp_avg": xp.zeros_like(p.data), "exp_avg_sq": xp.zeros_like(p.data)}
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = xp.zeros_like(p.data)
        return state

    def _step_group(self, group: dict) -> None:
        lr, eps, weight_decay = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
        beta1, beta2 = (float(b) for b in group["betas"])
        amsgrad, maximize = bool(group["amsgrad"]), bool(group["maximize"])
        decoupled = self._decoupled_weight_decay
        for p in group["params"]:
            if p.grad is None:
                continue
            param, grad = p.data, p.grad.data
            xp = backend.get_array_module(param)
            state = self._param_state(p, group)
            state["step"] = state["step"] + 1
            hyper = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay, decoupled=decoupled,
                         amsgrad=amsgrad, maximize=maximize)
            if not kernels.is_enabled():
                self._update_as_in_the_paper(param, grad, state, **hyper)
            elif xp is not np and not amsgrad:
                self._update_cuda(param, grad, state, **hyper)
            elif not amsgrad and self._compiled_usable(param, grad, state):
                self._update_compiled(param, grad, state, **hyper)
            else:
                self._update_in_place(param, grad, state, xp, **hyper)

    @staticmethod
    def _update_as_in_the_paper(param, grad, state, lr, beta1, beta2, eps, weight_decay, decoupled, amsgrad,
                                maximize):
        """Algorithm 1 of Kingma & Ba (with AdamW's decoupled decay, Algorithm 2 of Loshchilov &
        Hutter), one line per equation; the arrays of ``state`` are updated in place."""
        xp = backend.get_array_module(param)
        t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
        g = -grad if maximize else grad
        if decoupled:
            param -= lr * weight_decay * param              # θ ← θ − lr·λ·θ
        else:
            g = g + weight_decay * param                    # g ← g + λ·θ
        m[...] = beta1 * m + (1 - beta1) * g                # m ← β₁·m + (1 − β₁)·g
        v[...] = beta2 * v + (1 - beta2) * g * g            # v ← β₂·v + (1 − β₂)·g²
        if amsgrad:                                         # v ← max(v_max, v)
            v_max = state.setdefault("max_exp_avg_sq", xp.zeros_like(param))
            v_max[...] = xp.maximum(v_max, v)
            v = v_max
        m_hat = m / (1 - beta1 ** t)                        # m̂ ← m/(1 − β₁ᵗ)
        v_hat = v / (1 - beta2 ** t)                        # v̂ ← v/(1 − β₂ᵗ)
        param -= lr * m_hat / (xp.sqrt(v_hat) + eps)        # θ ← θ − lr·m̂/(√v̂ + ε)

    def _update_in_place(self, param, grad, state, xp, lr, beta1, beta2, eps, weight_decay, decoupled, amsgrad,
                         maximize):
        """The same update without temporaries (in place, in preallocated scratch buffers)."""
        step, exp_avg, exp_avg_sq = state["step"], state["exp_avg"], state["exp_avg_sq"]
        # The bias corrections folded into the step size and ε, as in Section 2 of the paper:
        # lr/(1 − β₁ᵗ) · m/(√v/√(1 − β₂ᵗ) + ε) = α·m/(√v + ε̂), α = lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ),
        # ε̂ = ε·√(1 − β₂ᵗ): one pass over the arrays fewer.
        bias_correction2_sqrt = (1.0 - beta2 ** step) ** 0.5
        step_size = lr * bias_correction2_sqrt / (1.0 - beta1 ** step)
        eps_hat = eps * bias_correction2_sqrt
        if decoupled:
            if weight_decay != 0:
                param *= 1.0 - lr * weight_decay                 # θ ← θ − lr·λ·θ
            g = self._gradient(param, grad, 0.0, maximize, xp)
        else:
            g = self._gradient(param, grad, weight_decay, maximize, xp)  # g ← g + λ·θ

        tmp = self._scratch(param)
        exp_avg *= beta1                                         # m ← β₁·m + (1 − β₁)·g
        exp_avg += xp.multiply(g, 1.0 - beta1, out=tmp)
        exp_avg_sq *= beta2                                      # v ← β₂·v + (1 − β₂)·g²
        xp.multiply(g, g, out=tmp)
        tmp *= 1.0 - beta2
        exp_avg_sq += tmp
        if amsgrad:                                              # v̂ ← max(v̂, v)
            v_hat = state.get("max_exp_avg_sq")
            if v_hat is None:  # amsgrad switched on after the first step
                v_hat = state["max_exp_avg_sq"] = xp.zeros_like(param)
            xp.maximum(v_hat, exp_avg_sq, out=v_hat)
        else:
            v_hat = exp_avg_sq

        denom = xp.sqrt(v_hat, out=tmp)                          # θ ← θ − α·m/(√v̂ + ε̂)
        denom += eps_hat
        update = xp.divide(exp_avg, denom, out=tmp)
        update *= step_size
        param -= update

    @staticmethod
    def _update_cuda(param, grad, state, lr, beta1, beta2, eps, weight_decay, decoupled, amsgrad, maximize):
        """The same update as one CUDA kernel (see ``minillm/kernels/adam.py``)."""
        step = state["step"]
        bias_correction2_sqrt = (1.0 - beta2 ** step) ** 0.5
        step_size = lr * bias_correction2_sqrt / (1.0 - beta1 ** step)
        cuda_adam_kernel(backend.get_array_module(param))(
            grad, -1.0 if maximize else 1.0, 0.0 if decoupled else weight_decay,
            1.0 - lr * weight_decay if decoupled else 1.0, beta1, beta2, step_size, eps * bias_correction2_sqrt,
            param, state["exp_avg"], state["exp_avg_sq"])

    @staticmethod
    def _compiled_usable(param, grad, state):
        arrays = (param, grad, state["exp_avg"], state["exp_avg_sq"])
        return (compiled.usable(*arrays) and all(a.flags.c_contiguous for a in arrays)
                and len({a.dtype for a in arrays}) == 1)

    @staticmethod
    def _update_compiled(param, grad, state, lr, beta1, beta2, eps, weight_decay, decoupled, amsgrad, maximize):
        """The same update as one compiled loop over the arrays (``numba_loops.adam_update``,
        the ``[fast]`` extra), split over threads in row blocks; each element's arithmetic is
        the CUDA kernel's, so the split does not change the result."""
        step = state["step"]
        bias_correction2_sqrt = (1.0 - beta2 ** step) ** 0.5
        t = param.dtype.type   # the scalars in θ's dtype
        scalars = (t(-1.0 if maximize else 1.0), t(0.0 if decoupled else weight_decay),
                   t(1.0 - lr * weight_decay if decoupled else 1.0), t(beta1), t(1.0 - beta1), t(beta2),
                   t(1.0 - beta2), t(lr * bias_correction2_sqrt / (1.0 - beta1 ** step)), t(eps * bias_correction2_sqrt))
        flat = [a.reshape(-1) for a in (param, grad, state["exp_avg"], state["exp_avg_sq"])]
        blocks = [a.reshape(-1, ADAM_BLOCK) if a.size % ADAM_BLOCK == 0 else a.reshape(1, -1) for a in flat]
        loop = compiled.kernel("adam_update")
        over_rows(lambda rows: loop(*(b[rows].reshape(-1) for b in blocks), *scalars), blocks[0])


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter, ICLR 2019), as
    ``torch.optim.AdamW``: before the Adam step, θ ← θ − lr·λ·θ, so the decay is not rescaled
    by the adaptive denominator as L2 regularization would be. Note the default λ = 0.01.
    """
    _decoupled_weight_decay = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         maximize=maximize)
