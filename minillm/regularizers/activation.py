"""Activation regularization (AR) and temporal activation regularization (TAR).

Introduced by Merity, McCann & Socher, "Revisiting Activation Regularization for Language RNNs"
(arXiv 1708.01009, 2017), and used in AWD-LSTM (Merity, Keskar & Socher, "Regularizing and
Optimizing LSTM Language Models", ICLR 2018, arXiv 1708.02182, §4.6). Instead of penalizing weights, penalize the *activations* h of a
layer (for a language model: the last layer's outputs, (B, T, C)):

* AR  = α · mean((m ⊙ h)²): an L2 penalty on the (dropout-masked, m) outputs, keeping them
  small, which discourages the model from relying on a few huge activations.
* TAR = β · mean((h_t − h_{t+1})²): a "slowness" penalty on how much the hidden state moves
  from one time step to the next (on the outputs *without* dropout, as in the paper's code).

The paper used α = 2, β = 1 on an LSTM. "mean" is over every element, as in the AWD-LSTM code
(``alpha * dropped_h.pow(2).mean()``, ``beta * (h[1:] - h[:-1]).pow(2).mean()``), so the
penalty does not grow with the batch, the sequence length or the width.

``ActivationRegularizer`` applies them to any module without changing the model: a forward hook
records the module's output on each training forward pass, and ``penalty()`` turns what was
recorded into the scalar to add to the loss.
"""
from __future__ import annotations

import numpy as np

from .. import ops
from ..tensor import Tensor, is_grad_enabled


def _zero(device="cpu", dtype=np.float32) -> Tensor:
    """A constant scalar 0 (on the device of the loss it will be added to)."""
    return ops.zeros((), dtype=dtype, device=device)


def ar_penalty(h, alpha: float, mask=None) -> Tensor:
    """α · mean((m ⊙ h)²), a scalar Tensor.

    ``mask`` (optional): the dropout mask applied to ``h`` (values 0 and 1/(1 − p)), or any
    array/Tensor broadcastable to ``h``; a boolean mask counts as 0/1. A mask with one dim
    fewer than ``h`` and ``h``'s leading shape (a (B, T) mask for (B, T, C) outputs) is applied
    to every feature. The mean is over all of ``h``'s elements, masked ones included.
    """
    x = h
    if mask is not None:
        m = mask.data if getattr(mask, "_is_tensor", False) else mask
        if m.ndim == h.ndim - 1 and tuple(m.shape) == tuple(h.shape[:-1]):
            m = m[..., None]
        x = h * Tensor(m.astype(h.dtype))
    return (x * x).mean() * float(alpha)


def tar_penalty(h, beta: float, dim: int = 1) -> Tensor:
    """β · mean((h_t − h_{t+1})²) over consecutive steps along ``dim`` (time: dim 1 of a
    (B, T, C) tensor), a scalar Tensor. Zero when there are fewer than 2 steps."""
    dim = dim % h.ndim
    steps = h.shape[dim]
    if steps < 2:
        return _zero(h.device, h.dtype)
    before = (slice(None),) * dim
    diff = h[before + (slice(1, None),)] - h[before + (slice(0, steps - 1),)]
    return (diff * diff).mean() * float(beta)


class ActivationRegularizer:
    """AR and TAR on the outputs of ``module``, collected by a forward hook.

    Usage::

        reg = ActivationRegularizer(model.ln_f, alpha=2.0, beta=1.0)   # (B, T, C) outputs
        for x, y in batches:
            _, loss = model(x, y)
            loss = loss + reg.penalty()      # AR + TAR of this forward pass, then cleared
            ...
        reg.remove()                          # back to the plain model

    Args:
        module: whose output is regularized (a tuple output: its first element, or what
            ``select(output)`` returns).
        alpha, beta: AR and TAR weights (0 turns one off).
        dim: the time dimension for TAR.
        ar_module: optional second module whose output is used for AR instead (the dropout
            that follows ``module``, to penalize the masked outputs m ⊙ h as the paper does);
            TAR still uses ``module``'s output.
        train_only: record only forward passes in training mode with gradients on (the
            default), so evaluation passes between two steps neither leak into the next
            penalty nor keep activations alive.

    ``penalty()`` sums AR + TAR over every forward pass recorded since the last call (usually
    one) and clears the record. Also a context manager (``remove()`` on exit).
    """

    def __init__(self, module, alpha: float = 0.0, beta: float = 0.0, dim: int = 1, ar_module=None,
                 select=None, train_only: bool = True):
        self.alpha, self.beta, self.dim = float(alpha), float(beta), dim
        self.select, self.train_only = select, train_only
        self.tar_outputs, self.ar_outputs = [], []
        self._device = module.device  # where the zero penalty goes when nothing was recorded
        ar_target = self.ar_outputs if ar_module is None else None
        self._handles = [module.register_forward_hook(self._recorder(self.tar_outputs, ar_target))]
        if ar_module is not None:
            self._handles.append(ar_module.register_forward_hook(self._recorder(self.ar_outputs)))

    def _recorder(self, store, also=None):
        def hook(module, inputs, output):
            if self.train_only and not (module.training and is_grad_enabled()):
                return None
            if self.select is not None:
                output = self.select(output)
            elif isinstance(output, (tuple, list)):
                output = output[0]
            store.append(output)
            self._device = output.device
            if also is not None:
                also.append(output)
            return None  # the output is left as it is
        return hook

    @property
    def outputs(self) -> list:
        """The outputs recorded since the last ``penalty()`` / ``clear()``."""
        return list(self.tar_outputs)

    def penalty(self) -> Tensor:
        """AR + TAR over the recorded outputs (a scalar Tensor; 0 if none), then clear."""
        total = None
        if self.alpha:
            for h in self.ar_outputs:
                term = ar_penalty(h, self.alpha)
                total = term if total is None else total + term
        if self.beta:
            for h in self.tar_outputs:
                term = tar_penalty(h, self.beta, self.dim)
                total = term if total is None else total + term
        self.clear()
        return _zero(self._device) if total is None else total

    def clear(self) -> None:
        self.tar_outputs.clear()
        self.ar_outputs.clear()

    def remove(self) -> None:
        """Unregister the hook(s) and forget what was recorded."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False
