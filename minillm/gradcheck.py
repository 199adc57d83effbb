"""Finite-difference checks that backward rules are right.

``gradcheck`` compares the analytic vector-Jacobian product vᵀJ (from ``backward``) with central
differences (f(x+εe_i) − f(x−εe_i)) / 2ε, projected on the same ``v``, for every input element.

``v`` is a *random* output gradient, not ones: checking ``f(x).sum()`` is blind to any error
that adds a constant along a normalized dimension. For softmax, for example, every column of the
Jacobian sums to zero, so a wrong backward that is off by a per-row constant still gives the
right gradient of ``softmax(x).sum()`` (which is always 1). The same blindness hides mistakes in
layer norm and batch norm.
"""
from __future__ import annotations

import numpy as np

from . import backend
from .tensor import Tensor, grad as autograd_grad


class GradcheckError(AssertionError):
    """A backward rule disagrees with finite differences (the message says where)."""


def _as_tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _check_inputs(inputs):
    for i, x in enumerate(inputs):
        if getattr(x, "_is_tensor", False) and x.requires_grad and x.dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} has dtype {x.dtype}; finite differences need float64 "
                            "(make it with minillm.tensor(..., dtype=minillm.float64))")


def _weighted_output(fn, inputs, vs):
    """Σ_k Σ v_k ⊙ f(inputs)_k as a float (grad mode stays on: for gradgradcheck, f itself
    calls backward)."""
    outs = _as_tuple(fn(*inputs))
    return float(sum(float((backend.to_numpy(o.data) * v).sum()) for o, v in zip(outs, vs)))


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0, raise_exception=True) -> bool:
    """Check ``fn``'s gradients against central differences at ``inputs``.

    Args:
        fn: callable taking the inputs and returning a Tensor (or a tuple of Tensors).
        inputs: Tensors (float64 where ``requires_grad``) and any other arguments.
        eps: finite-difference step. atol, rtol: |analytic − numeric| ≤ atol + rtol·|numeric|.
        seed: seed of the random output gradient ``v``.
    Returns True, or raises GradcheckError naming the input, the element index, both values
    and the difference (returns False instead with ``raise_exception=False``).
    """
    inputs = _as_tuple(inputs)
    _check_inputs(inputs)
    targets = [(i, x) for i, x in enumerate(inputs) if getattr(x, "_is_tensor", False) and x.requires_grad]
    if not targets:
        raise ValueError("gradcheck: no input has requires_grad=True")
    outs = _as_tuple(fn(*inputs))
    rng = np.random.default_rng(seed)
    vs = [rng.standard_normal(o.shape) for o in outs]
    xp = backend.get_array_module(*[x for _, x in targets])
    v_tensors = [Tensor(xp.asarray(v, dtype=o.dtype)) for v, o in zip(vs, outs)]
    analytic = autograd_grad([o for o in outs if o.requires_grad],
                             [x for _, x in targets],
                             [v for v, o in zip(v_tensors, outs) if o.requires_grad],
                             allow_unused=True)
    for (i, x), a in zip(targets, analytic):
        a = np.zeros(x.shape) if a is None else backend.to_numpy(a.data)
        numeric = np.zeros(x.shape)
        flat = x.data.reshape(-1)  # a view: perturb in place, restore after
        for k in range(flat.size):
            original = flat[k].item()
            flat[k] = original + eps
            plus = _weighted_output(fn, inputs, vs)
            flat[k] = original - eps
            minus = _weighted_output(fn, inputs, vs)
            flat[k] = original
            numeric.reshape(-1)[k] = (plus - minus) / (2 * eps)
        bad = np.abs(a - numeric) > atol + rtol * np.abs(numeric)
        if bad.any():
            k = np.unravel_index(np.argmax(np.abs(a - numeric) * bad), x.shape)
            message = (f"gradcheck failed for input {i} (shape {x.shape}) at index {tuple(int(j) for j in k)}: "
                       f"analytic {a[k]:.8g}, numeric {numeric[k]:.8g}, difference {abs(a[k] - numeric[k]):.3g} "
                       f"(tolerance {atol + rtol * abs(numeric[k]):.3g}; {int(bad.sum())} of {bad.size} "
                       "elements outside it)")
            if raise_exception:
                raise GradcheckError(message)
            return False
    return True


def gradgradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0, raise_exception=True) -> bool:
    """Check second derivatives: gradcheck of x ↦ vᵀ∂f/∂x (built with ``create_graph=True``)."""
    inputs = _as_tuple(inputs)
    _check_inputs(inputs)
    outs = _as_tuple(fn(*inputs))
    rng = np.random.default_rng(seed + 1)
    xp = backend.get_array_module(*[x for x in inputs if getattr(x, "_is_tensor", False)])
    vs = [Tensor(xp.asarray(rng.standard_normal(o.shape), dtype=o.dtype)) for o in outs]
    positions = [i for i, x in enumerate(inputs) if getattr(x, "_is_tensor", False) and x.requires_grad]

    def first_derivative(*args):
        outputs = _as_tuple(fn(*args))
        grads = autograd_grad(list(outputs), [args[i] for i in positions], vs,
                              create_graph=True, allow_unused=True)
        return tuple(g for g in grads if g is not None)

    return gradcheck(first_derivative, inputs, eps, atol, rtol, seed + 2, raise_exception)
