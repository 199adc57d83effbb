"""The switch between fused kernels and plain formulas, and ``FusedFunction``."""
from __future__ import annotations

import contextlib
import os

from ..tensor import Function, Tensor, grad, is_grad_enabled

_enabled = os.environ.get("MINILLM_FUSED", "1").strip().lower() not in ("0", "false", "no", "off")


def is_enabled() -> bool:
    """Whether ops dispatch to the fused kernels (the default) or run their plain formulas."""
    return _enabled


def set_enabled(flag: bool) -> None:
    """Use the fused kernels (True) or the plain tensor-op formulas (False)."""
    global _enabled
    _enabled = bool(flag)


@contextlib.contextmanager
def enabled_if(flag: bool):
    """``with enabled_if(False):`` runs the block on the plain formulas."""
    previous = is_enabled()
    set_enabled(flag)
    try:
        yield
    finally:
        set_enabled(previous)


class FusedFunction(Function):
    """A Function whose backward is written by hand on raw arrays, for speed.

    Subclasses implement ``forward(*arrays, **options)`` and ``fast_backward(g)`` (arrays, one
    per input, None where no gradient is wanted). ``apply`` takes one more keyword,
    ``reference``: the plain tensor-op formula of the same op (called as
    ``reference(*inputs, **options)``). With ``create_graph=True`` the backward differentiates
    that formula instead, so fused ops have second derivatives without a second hand-written
    rule.
    """

    @classmethod
    def apply(cls, *inputs, reference, **options):
        out = super().apply(*inputs, **options)
        if out._ctx is not None:
            out._ctx.reference, out._ctx.options = reference, options
        return out

    def fast_backward(self, g):
        raise NotImplementedError

    def backward(self, grad_output):
        if is_grad_enabled():  # create_graph=True: differentiate the formula
            positions = [i for i, x in enumerate(self.inputs) if getattr(x, "_is_tensor", False) and x.requires_grad]
            with enabled_if(False):
                out = self.reference(*self.inputs, **self.options)
            grads = grad(out, [self.inputs[i] for i in positions], grad_output, create_graph=True, allow_unused=True)
            result = [None] * len(self.inputs)
            for i, g in zip(positions, grads):
                result[i] = g
            return tuple(result)
        grads = self.fast_backward(grad_output.data)
        grads = grads if isinstance(grads, tuple) else (grads,)
        return tuple(None if g is None else Tensor(g) for g in grads)

