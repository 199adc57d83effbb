"""Weight penalties (L1, L2) and the decay / no-decay split of a model's parameters.

Conventions (the ones most textbooks and PyTorch users expect):

* ``l1_penalty``: λ·Σ|w|. Its gradient is λ·sign(w): a constant pull towards zero that drives
  small weights to exactly zero (sparsity; Tibshirani 1996, the lasso).
* ``l2_penalty``: (λ/2)·Σw². The ½ makes the gradient λ·w, so adding this penalty to the loss
  and taking a plain SGD step gives  w ← w − lr·(∇L + λ·w) = (1 − lr·λ)·w − lr·∇L: exactly
  ``SGD(..., weight_decay=λ)``. With momentum, too, the two are the same update.

  Under Adam they are NOT the same (Loshchilov & Hutter, "Decoupled Weight Decay
  Regularization", ICLR 2019). An L2 term is part of the gradient, so Adam divides it by
  √v̂ like everything else: weights with large, frequent gradients are decayed *less*. AdamW
  applies the decay outside the adaptive step, w ← w − lr·λ·w, the same relative shrinkage for
  every weight, and that is what generalizes better. ``Adam(weight_decay=λ)`` is the L2 form,
  ``AdamW(weight_decay=λ)`` the decoupled one.

Which parameters to regularize (``decay_parameters``): only the weight *matrices* — the
parameters that multiply an input and whose size sets how sharp the function is. The rule,
decided per parameter from the module that owns it and its attribute name:

1. a parameter with fewer than 2 dims is never decayed (biases, LayerNorm/BatchNorm scales
   and shifts, any per-channel gain);
2. a parameter owned by an ``nn.Embedding`` or a normalization layer (``nn.LayerNorm``,
   ``nn.BatchNorm1d``, or any module whose class name contains "Norm", e.g. an RMSNorm) is
   not decayed: an embedding row is a lookup, not a linear map, and shrinking the rows of rare
   tokens (which get few gradients) just erases them;
3. a parameter whose attribute name is ``bias`` or contains ``emb`` or ``norm`` (a raw
   ``Parameter`` such as ``self.pos_embedding``) is not decayed;
4. everything else — ``nn.Linear`` weights, attention projections, conv kernels — is decayed.

A tied weight (GPT's token embedding doubling as the output head) is listed once, under the
first name ``named_parameters`` gives it (``wte.weight``), so it follows rule 2: no decay.
This is the split of GPT-2/nanoGPT and of most BERT recipes ("no decay for bias and LayerNorm"),
minus the embeddings.
"""
from __future__ import annotations

import numpy as np

from ..nn.layers import BatchNorm1d, Embedding, LayerNorm
from ..nn.module import Module, Parameter
from ..tensor import Tensor

def _is_norm_module(module) -> bool:
    return isinstance(module, (LayerNorm, BatchNorm1d)) or "Norm" in type(module).__name__


def _named_owned_parameters(module: Module):
    """(full name, attribute name, owning module, parameter) for every parameter, once each, in
    the order of ``named_parameters`` (so a tied weight keeps its first name)."""
    seen = set()
    for module_name, owner in module.named_modules():
        for attr, value in owner.__dict__.items():
            if isinstance(value, Parameter) and id(value) not in seen:
                seen.add(id(value))
                yield (f"{module_name}.{attr}" if module_name else attr), attr, owner, value


def _decays(attr: str, owner, p) -> bool:
    """The rule of the module docstring for one parameter."""
    if p.ndim < 2:
        return False
    if isinstance(owner, Embedding) or _is_norm_module(owner):
        return False
    name = attr.lower()
    return not (name == "bias" or name.endswith("bias") or "emb" in name or "norm" in name)


def decay_parameter_names(module: Module):
    """``(decay, no_decay)``: the dotted names of the parameters that get weight decay and of
    those that do not (every parameter is in exactly one list; see the module docstring)."""
    decay, no_decay = [], []
    for name, attr, owner, p in _named_owned_parameters(module):
        (decay if _decays(attr, owner, p) else no_decay).append(name)
    return decay, no_decay


def decay_parameters(module: Module) -> list:
    """The parameters of ``module`` that should be weight-decayed: its weight matrices (ndim ≥ 2),
    never biases, normalization weights or embedding tables. See the module docstring."""
    return [p for _, attr, owner, p in _named_owned_parameters(module) if _decays(attr, owner, p)]


def no_decay_parameters(module: Module) -> list:
    """Every parameter of ``module`` that ``decay_parameters`` leaves out."""
    return [p for _, attr, owner, p in _named_owned_parameters(module) if not _decays(attr, owner, p)]


def param_groups(module: Module, weight_decay: float) -> list:
    """Optimizer parameter groups that decay only the weight matrices::

        AdamW(param_groups(model, 0.1), lr=3e-4)
        # == AdamW([{"params": decay, "weight_decay": 0.1},
        #           {"params": no_decay, "weight_decay": 0.0}], lr=3e-4)

    Both groups are always present (one may be empty), in this order.

    This is minillm's one weight-decay policy: every training loop (the trainer, ``pretrain``,
    ``finetune``; see ``minillm.training_step.make_optimizer``) builds its optimizer from it.
    Decayed: the weight matrices of ``Linear`` layers and attention projections. Not decayed:
    biases, normalization weights and **embeddings** (token and position tables, a tied output
    head included). The embedding exclusion is minGPT's (Karpathy's ``configure_optimizers``
    puts ``torch.nn.Embedding`` weights in the no-decay group): an embedding row is a lookup,
    not a linear map, and decay would shrink the rows of rare tokens, which get few gradients,
    towards zero. (nanoGPT later decays every ≥ 2-D tensor, embeddings included; minillm keeps
    minGPT's rule, the one the trainer's results in BENCHMARKS.md were measured with.)
    """
    decay, no_decay = [], []
    for _, attr, owner, p in _named_owned_parameters(module):
        (decay if _decays(attr, owner, p) else no_decay).append(p)
    return [{"params": decay, "weight_decay": float(weight_decay)},
            {"params": no_decay, "weight_decay": 0.0}]


def _params(params_or_module) -> list:
    """A Module means its weight matrices (``decay_parameters``); a Tensor means itself; any
    other iterable is taken as the exact list of tensors to penalize."""
    if isinstance(params_or_module, Module):
        return decay_parameters(params_or_module)
    if getattr(params_or_module, "_is_tensor", False):
        return [params_or_module]
    return list(params_or_module)


def _total(terms) -> Tensor:
    total = None
    for t in terms:
        total = t if total is None else total + t
    if total is None:  # nothing to penalize: a constant zero
        return Tensor(np.zeros((), dtype=np.float32))
    return total


def l1_penalty(params_or_module, weight: float) -> Tensor:
    """λ·Σ|w| over the given parameters, a scalar Tensor to add to the loss.

    ``params_or_module``: a Module (then only its weight matrices, as ``decay_parameters``:
    biases, norms and embeddings are not penalized), a single Tensor, or an iterable of
    Tensors (exactly those; pass ``model.parameters()`` to penalize everything).
    ``weight``: λ. The gradient is λ·sign(w) (0 at w = 0).
    """
    params = _params(params_or_module)
    total = _total(p.abs().sum() for p in params)
    return total * float(weight)


def l2_penalty(params_or_module, weight: float) -> Tensor:
    """(λ/2)·Σw² over the given parameters, a scalar Tensor to add to the loss.

    The gradient is λ·w, so with plain SGD (with or without momentum) this is the same as
    ``weight_decay=λ``; with Adam it is not (use AdamW for decoupled decay; see the module
    docstring). ``params_or_module`` as in ``l1_penalty``.
    """
    params = _params(params_or_module)
    total = _total((p * p).sum() for p in params)
    return total * (0.5 * float(weight))
