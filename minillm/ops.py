"""The differentiable operations: each ``Function`` has its forward (on arrays) and, right below
it, its backward (on Tensors, so it can be differentiated again).

Notation in the backward rules: ``g`` is dL/d(output); a rule returns dL/d(input) for each input.
Broadcasting is undone by the engine (``sum_to``), so a rule may return a gradient of the
broadcast shape.
"""
from __future__ import annotations

import math

import numpy as np

from . import backend
import sys as _sys

from . import kernels
from .kernels.gelu import GELU_TANH_C, GELU_TANH_K  # 0.044715 and √(2/π), GPT-2's constants
from .tensor import Function, Tensor

__all__ = [
    "add", "sub", "mul", "div", "pow", "neg", "matmul", "exp", "log", "sqrt", "tanh", "sigmoid",
    "relu", "gelu", "erf", "abs", "clamp", "clip", "maximum", "minimum", "where", "sum", "mean",
    "var", "max", "min", "logsumexp", "reshape", "view", "transpose", "permute", "squeeze",
    "unsqueeze", "expand", "broadcast_to", "sum_to", "cat", "concat", "stack", "split", "chunk",
    "getitem", "gather", "masked_fill", "tril", "triu", "softmax", "log_softmax", "flatten",
    "argmax", "zeros", "ones", "zeros_like", "ones_like", "full", "arange", "randn", "rand",
    "randint", "empty", "tril_mask", "triu_mask", "eye", "clone", "to_device", "cast",
]


def _t(x):
    return x if getattr(x, "_is_tensor", False) else None


def _xp(*xs):
    return backend.get_array_module(*xs)


def _dims(dim, ndim):
    """Normalize ``dim`` (None, int or tuple, negatives allowed) to a sorted tuple of axes."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    out = []
    for d in dims:
        if not -ndim <= d < (ndim or 1):
            raise IndexError(f"dim {d} is out of range for a tensor with {ndim} dimensions")
        out.append(d % (ndim or 1))
    return tuple(sorted(out))


def _const(array):
    """A constant Tensor (no gradient) around an array, e.g. a mask used in a backward rule."""
    return Tensor(array)


# ================================================================ elementwise arithmetic
class Add(Function):
    def forward(self, a, b):
        return a + b

    def backward(self, g):
        return g, g


class Sub(Function):
    def forward(self, a, b):
        return a - b

    def backward(self, g):
        return g, (-g if self.needs_grad(1) else None)


class Mul(Function):
    def forward(self, a, b):
        return a * b

    def backward(self, g):
        a, b = self.inputs
        return (g * b if self.needs_grad(0) else None), (g * a if self.needs_grad(1) else None)


class Div(Function):
    def forward(self, a, b):
        return a / b

    def backward(self, g):
        a, b = self.inputs
        ga = g / b if self.needs_grad(0) else None
        # d(a/b)/db = -a/b^2 = -out/b
        gb = -g * self.output / b if self.needs_grad(1) else None
        return ga, gb


class Neg(Function):
    def forward(self, a):
        return -a

    def backward(self, g):
        return -g


class Pow(Function):
    """a ** b for a tensor base and a tensor or scalar exponent."""

    def forward(self, a, b):
        # float32 `x**3` goes through a slow general pow; small integer powers are multiplies.
        if isinstance(b, (int, float)):
            if b == 2:
                return a * a
            if b == 3:
                return a * a * a
            if b == 1:
                return a.copy()
            if b == 0.5:
                return _xp(a).sqrt(a)
            if b == -1:
                return 1 / a
        return a ** b

    def backward(self, g):
        a, b = self.inputs
        ga = g * b * a ** (b - 1) if self.needs_grad(0) else None
        gb = g * self.output * log(a) if self.needs_grad(1) else None
        return ga, gb


class Exp(Function):
    def forward(self, a):
        return _xp(a).exp(a)

    def backward(self, g):
        return g * self.output


class Log(Function):
    def forward(self, a):
        return _xp(a).log(a)

    def backward(self, g):
        return g / self.inputs[0]


class Sqrt(Function):
    def forward(self, a):
        return _xp(a).sqrt(a)

    def backward(self, g):
        return g * 0.5 / self.output


class Tanh(Function):
    def forward(self, a):
        return _xp(a).tanh(a)

    def backward(self, g):
        y = self.output
        return g * (1 - y * y)


class Sigmoid(Function):
    def forward(self, a):
        xp = _xp(a)
        # 1/(1+exp(-a)) overflows for very negative a; tanh form is stable everywhere
        return xp.tanh(a * 0.5) * 0.5 + 0.5

    def backward(self, g):
        y = self.output
        return g * y * (1 - y)


class ReLU(Function):
    def forward(self, a):
        self.positive = a > 0
        return _xp(a).maximum(a, 0).astype(a.dtype, copy=False)  # not a·(a > 0): −inf·0 is nan

    def backward(self, g):
        return g * _const(self.positive.astype(g.dtype))


class Erf(Function):
    def forward(self, a):
        return backend.erf(a)

    def backward(self, g):
        a = self.inputs[0]
        return g * (2 / math.sqrt(math.pi)) * exp(-(a * a))


class Abs(Function):
    def forward(self, a):
        self.sign = _xp(a).sign(a)
        return _xp(a).abs(a)

    def backward(self, g):
        return g * _const(self.sign)


class Clamp(Function):
    def forward(self, a, min=None, max=None):
        xp = _xp(a)
        inside = xp.ones(a.shape, dtype=bool)
        if min is not None:
            inside &= a >= min
        if max is not None:
            inside &= a <= max
        self.inside = inside
        return xp.clip(a, min, max)

    def backward(self, g):
        return g * _const(self.inside.astype(g.dtype))


class Maximum(Function):
    def forward(self, a, b):
        xp = _xp(a, b)
        # where a == b the gradient is split evenly, as in PyTorch
        self.weight_a = (a > b).astype(np.result_type(a, b)) + 0.5 * (a == b)
        return xp.maximum(a, b)

    def backward(self, g):
        w = _const(self.weight_a.astype(g.dtype))
        return (g * w if self.needs_grad(0) else None), (g * (1 - w) if self.needs_grad(1) else None)


class Where(Function):
    def forward(self, condition, a, b):
        self.condition = condition
        return _xp(condition, a, b).where(condition, a, b)

    def backward(self, g):
        cond = _const(self.condition)
        ga = where(cond, g, 0.0) if self.needs_grad(1) else None
        gb = where(cond, 0.0, g) if self.needs_grad(2) else None
        return None, ga, gb


# ================================================================ reductions
class Sum(Function):
    def forward(self, a, dim=None, keepdim=False):
        self.in_shape, self.dims, self.keepdim = a.shape, _dims(dim, a.ndim), keepdim
        return a.sum(axis=self.dims, keepdims=keepdim)

    def backward(self, g):
        if not self.keepdim:
            g = g.reshape(_keepdim_shape(self.in_shape, self.dims))
        return g.expand(self.in_shape)


def _keepdim_shape(shape, dims):
    return tuple(1 if i in dims else s for i, s in enumerate(shape))


class Max(Function):
    """max over ``dim`` (amax): ties share the gradient evenly, as ``torch.amax``."""

    def forward(self, a, dim=None, keepdim=False):
        self.in_shape, self.dims, self.keepdim = a.shape, _dims(dim, a.ndim), keepdim
        m = a.max(axis=self.dims, keepdims=True)
        is_max = (a == m).astype(a.dtype)
        self.weight = is_max / is_max.sum(axis=self.dims, keepdims=True)
        return m if keepdim else m.reshape(tuple(s for i, s in enumerate(a.shape) if i not in self.dims))

    def backward(self, g):
        if not self.keepdim:
            g = g.reshape(_keepdim_shape(self.in_shape, self.dims))
        return g.expand(self.in_shape) * _const(self.weight.astype(g.dtype))


class LogSumExp(Function):
    def forward(self, a, dim=None, keepdim=False):
        xp = _xp(a)
        self.in_shape, self.dims, self.keepdim = a.shape, _dims(dim, a.ndim), keepdim
        m = a.max(axis=self.dims, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0)  # all -inf rows give -inf, not nan
        out = xp.log(xp.exp(a - m).sum(axis=self.dims, keepdims=True)) + m
        return out if keepdim else out.reshape(tuple(s for i, s in enumerate(a.shape) if i not in self.dims))

    def backward(self, g):
        out = self.output
        if not self.keepdim:
            shape = _keepdim_shape(self.in_shape, self.dims)
            g, out = g.reshape(shape), out.reshape(shape)
        # d logsumexp / da = softmax(a)
        return g * exp(self.inputs[0] - out)


# ================================================================ shapes
class Reshape(Function):
    def forward(self, a, shape):
        self.in_shape = a.shape
        try:
            return a.reshape(shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape a tensor of shape {a.shape} ({a.size} elements) "
                             f"to {tuple(shape)}") from None

    def backward(self, g):
        return g.reshape(self.in_shape)


class Permute(Function):
    def forward(self, a, dims):
        self.dims = tuple(d % a.ndim for d in dims)
        if sorted(self.dims) != list(range(a.ndim)):
            raise ValueError(f"permute: dims {dims} are not a permutation of {a.ndim} dimensions")
        return a.transpose(self.dims)

    def backward(self, g):
        return g.permute(tuple(int(d) for d in np.argsort(self.dims)))


class Expand(Function):
    def forward(self, a, shape):
        self.in_shape = a.shape
        shape = tuple(s if s != -1 else a.shape[i - (len(shape) - a.ndim)] for i, s in enumerate(shape))
        try:
            return _xp(a).broadcast_to(a, shape)
        except ValueError:
            raise ValueError(f"expand: cannot broadcast shape {a.shape} to {shape}") from None

    def backward(self, g):
        return sum_to(g, self.in_shape)


class SumTo(Function):
    """Sum a broadcast array back down to ``shape`` (the reverse of broadcasting)."""

    def forward(self, a, shape):
        self.in_shape = a.shape
        lead = a.ndim - len(shape)
        if lead < 0 or any(s != 1 and s != a.shape[lead + i] for i, s in enumerate(shape)):
            raise ValueError(f"sum_to: shape {a.shape} does not broadcast from {shape}")
        axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape) if s == 1 and a.shape[lead + i] != 1)
        out = a.sum(axis=axes, keepdims=True) if axes else a
        return out.reshape(shape)

    def backward(self, g):
        return g.expand(self.in_shape)


class Concat(Function):
    def forward(self, *arrays, dim=0):
        if not arrays:
            raise ValueError("cat: needs at least one tensor")
        self.dim = dim % arrays[0].ndim
        self.sizes = [a.shape[self.dim] for a in arrays]
        try:
            return _xp(*arrays).concatenate(arrays, axis=self.dim)
        except ValueError:
            raise ValueError(f"cat: shapes {[a.shape for a in arrays]} differ outside dim {dim}") from None

    def backward(self, g):
        grads, start = [], 0
        for i, size in enumerate(self.sizes):
            index = (slice(None),) * self.dim + (slice(start, start + size),)
            grads.append(g[index] if self.needs_grad(i) else None)
            start += size
        return tuple(grads)


def _check_index(index, op="indexing"):
    """Turn Tensor indices into arrays and refuse floating-point ones."""
    items = index if isinstance(index, tuple) else (index,)
    out = []
    for item in items:
        if getattr(item, "_is_tensor", False):
            item = item.data
        if hasattr(item, "dtype") and item.dtype.kind not in "iub":
            raise TypeError(f"{op}: indices must be integers or booleans, got dtype {item.dtype}")
        if isinstance(item, list):
            item = np.asarray(item)
            if item.dtype.kind not in "iub":
                raise TypeError(f"{op}: indices must be integers or booleans, got {item.dtype}")
        out.append(item)
    return tuple(out) if isinstance(index, tuple) else out[0]


def _is_basic(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, (int, slice, type(None), type(Ellipsis))) for i in items)


class GetItem(Function):
    """``x[index]`` with ints, slices, None, Ellipsis, integer or boolean arrays."""

    def forward(self, a, index):
        self.in_shape, self.index = a.shape, index
        try:
            return a[index]
        except IndexError as exc:
            raise IndexError(f"indexing a tensor of shape {a.shape}: {exc}") from None

    def backward(self, g):
        return IndexAdd.apply(g, shape=self.in_shape, index=self.index)


class IndexAdd(Function):
    """Scatter-add ``g`` into zeros of ``shape`` at ``index``: the gradient of ``x[index]``.

    Repeated indices must add up (an embedding row used twice gets both gradients), so advanced
    indices use an unbuffered add. ``np.add.at`` is slow; for the common case of one integer
    array on the first axis (an embedding lookup) the rows are sorted and summed by segment.
    """

    def forward(self, g, shape, index):
        self.index = index
        xp = _xp(g)
        out = xp.zeros(shape, dtype=g.dtype)
        if _is_basic(index):
            out[index] = g   # basic indexing never repeats an element
        elif (xp is np and not isinstance(index, tuple) and index.dtype.kind in "iu" and len(shape) >= 1):
            flat_idx = index.reshape(-1)
            flat_idx = np.where(flat_idx < 0, flat_idx + shape[0], flat_idx)  # -1 and n-1: one row
            rows = g.reshape(flat_idx.size, *shape[1:])
            order = np.argsort(flat_idx, kind="stable")
            sorted_idx = flat_idx[order]
            starts = np.flatnonzero(np.r_[True, sorted_idx[1:] != sorted_idx[:-1]])
            out[sorted_idx[starts]] = np.add.reduceat(rows[order], starts, axis=0)
        else:
            backend.scatter_add(out, index, g)
        return out

    def backward(self, g):
        return g[self.index]


class Gather(Function):
    """``torch.gather``: out[..., j, ...] = a[..., index[..., j, ...], ...] along ``dim``."""

    def forward(self, a, index, dim):
        if index.dtype.kind not in "iu":
            raise TypeError(f"gather: index must be an integer tensor, got dtype {index.dtype}")
        if index.ndim != a.ndim:
            raise ValueError(f"gather: index has {index.ndim} dims but input has {a.ndim} (shape {a.shape})")
        self.dim, self.index, self.in_shape = dim % a.ndim, index, a.shape
        n = a.shape[self.dim]
        if index.size and (int(index.min()) < 0 or int(index.max()) >= n):  # negatives would wrap silently
            bad = int(index.min()) if int(index.min()) < 0 else int(index.max())
            raise IndexError(f"gather: index {bad} is out of range for dim {self.dim} of size {n} (input shape {a.shape})")
        return _xp(a).take_along_axis(a, index, axis=self.dim)

    def backward(self, g):
        return ScatterAddAlongDim.apply(g, index=self.index, dim=self.dim, shape=self.in_shape), None


class ScatterAddAlongDim(Function):
    """The gradient of gather: add ``g`` into zeros of ``shape`` at ``index`` along ``dim``."""

    def forward(self, g, index, dim, shape):
        self.index, self.dim = index, dim
        xp = _xp(g)
        out = xp.zeros(shape, dtype=g.dtype)
        full_index = list(xp.ogrid[tuple(slice(s) for s in index.shape)])
        full_index[dim] = index
        backend.scatter_add(out, tuple(full_index), g)
        return out

    def backward(self, g):
        return gather(g, self.dim, Tensor(self.index))


# ================================================================ matrices and probabilities
class MatMul(Function):
    def forward(self, a, b):
        if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} are not aligned "
                             f"({a.shape[-1] if a.ndim else '?'} != {b.shape[-2] if b.ndim >= 2 else '?'})")
        try:
            return a @ b
        except ValueError:
            raise ValueError(f"matmul: batch shapes of {a.shape} and {b.shape} do not broadcast") from None

    def backward(self, g):
        a, b = self.inputs
        ga = g @ b.transpose(-1, -2) if self.needs_grad(0) else None
        gb = a.transpose(-1, -2) @ g if self.needs_grad(1) else None
        return ga, gb


class Softmax(Function):
    def forward(self, a, dim=-1):
        xp = _xp(a)
        self.dim = dim
        e = a - a.max(axis=dim, keepdims=True)
        xp.exp(e, out=e)
        e /= e.sum(axis=dim, keepdims=True)
        return e

    def backward(self, g):
        y = self.output
        # Jacobian-vector product of softmax: y ⊙ (g − Σ g⊙y)
        return y * (g - (g * y).sum(self.dim, keepdim=True))


class LogSoftmax(Function):
    def forward(self, a, dim=-1):
        xp = _xp(a)
        self.dim = dim
        shifted = a - a.max(axis=dim, keepdims=True)
        shifted -= xp.log(xp.exp(shifted).sum(axis=dim, keepdims=True))
        return shifted

    def backward(self, g):
        return g - exp(self.output) * g.sum(self.dim, keepdim=True)


# ================================================================ dtype, device, copies
class Cast(Function):
    def forward(self, a, dtype):
        self.in_dtype = a.dtype
        return a.astype(dtype)

    def backward(self, g):
        return g.to(dtype=self.in_dtype)


class ToDevice(Function):
    def forward(self, a, device):
        self.in_device = backend.device_of(a)
        return backend.to_device(a, device)

    def backward(self, g):
        return g.to(self.in_device)


class Clone(Function):
    def forward(self, a):
        return a.copy()

    def backward(self, g):
        return g


# ================================================================ public functions
def add(a, b): return Add.apply(a, b)
def sub(a, b): return Sub.apply(a, b)
def mul(a, b): return Mul.apply(a, b)
def div(a, b): return Div.apply(a, b)
def neg(a): return Neg.apply(a)
def exp(a): return Exp.apply(a)
def log(a): return Log.apply(a)
def sqrt(a): return Sqrt.apply(a)
def tanh(a): return Tanh.apply(a)
def sigmoid(a): return Sigmoid.apply(a)
def relu(a): return ReLU.apply(a)
def erf(a): return Erf.apply(a)
def abs(a): return Abs.apply(a)  # noqa: A001 (PyTorch name)
def clone(a): return Clone.apply(a)
def to_device(a, device): return ToDevice.apply(a, device=device)
def cast(a, dtype): return Cast.apply(a, dtype=dtype)


def pow(a, b):  # noqa: A001 (PyTorch name)
    """a ** b. A tensor exponent with a scalar base works too (``2 ** x``)."""
    if _t(a) is None:  # scalar ** tensor = exp(b · log a)
        return exp(_t(b) * math.log(a)) if isinstance(a, (int, float)) else Pow.apply(Tensor(a), b)
    return Pow.apply(a, b)


def gelu(x, approximate="none"):
    """GELU (Hendrycks & Gimpel, 2016): x·Φ(x) with Φ the standard normal CDF,
    Φ(x) = ½(1 + erf(x/√2)); ``approximate="tanh"`` is GPT-2's ½x(1 + tanh(√(2/π)(x + 0.044715x³))).
    Shape unchanged. The fused kernel (``minillm/kernels/gelu.py``) computes the same."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    if kernels.is_enabled():
        return kernels.GELU.apply(x, approximate=approximate, reference=_gelu_formula)
    return _gelu_formula(x, approximate)


def _gelu_formula(x, approximate="none"):
    if approximate == "tanh":
        return 0.5 * x * (1 + tanh((x + GELU_TANH_C * x * x * x) * GELU_TANH_K))
    return 0.5 * x * (1 + erf(x * (1 / math.sqrt(2))))


def clamp(x, min=None, max=None):  # noqa: A002 (PyTorch names)
    if min is None and max is None:
        raise ValueError("clamp: give at least one of min and max")
    return Clamp.apply(x, min=min, max=max)


clip = clamp


def maximum(a, b): return Maximum.apply(a, b)
def minimum(a, b): return -maximum(-a, -b)


def where(condition, a, b):
    """Elementwise ``a`` where ``condition`` else ``b`` (condition is not differentiable)."""
    condition = condition.data if _t(condition) is not None else condition
    return Where.apply(condition, a, b)


def sum(x, dim=None, keepdim=False):  # noqa: A001 (PyTorch name)
    return Sum.apply(x, dim=dim, keepdim=keepdim)


def mean(x, dim=None, keepdim=False):
    """Mean over ``dim`` (all dims if None); the mean of no elements is nan, as in PyTorch."""
    dims = _dims(dim, x.ndim)
    count = int(np.prod([x.shape[d] for d in dims])) if dims else 1
    return sum(x, dim, keepdim) * (1.0 / count if count else float("nan"))


def var(x, dim=None, keepdim=False, correction=1, unbiased=None):
    """Variance over ``dim``; ``correction=1`` (Bessel) as torch.var, 0 for the population one."""
    if unbiased is not None:
        correction = 1 if unbiased else 0
    dims = _dims(dim, x.ndim)
    count = int(np.prod([x.shape[d] for d in dims])) if dims else 1
    centered = x - mean(x, dims, keepdim=True)
    return sum(centered * centered, dims, keepdim) * (1.0 / (count - correction if count > correction else 1))


def max(x, dim=None, keepdim=False):  # noqa: A001 (PyTorch name)
    """Largest value over ``dim`` (all dims if None); ties share the gradient (torch.amax)."""
    return Max.apply(x, dim=dim, keepdim=keepdim)


def min(x, dim=None, keepdim=False):  # noqa: A001
    return -max(-x, dim, keepdim)


def argmax(x, dim=None, keepdim=False):
    """Index of the largest value (an int64 tensor, not differentiable)."""
    xp = _xp(x.data)
    if dim is None:
        return Tensor(xp.asarray(x.data.argmax(), dtype=np.int64))
    out = x.data.argmax(axis=dim)
    return Tensor(xp.expand_dims(out, dim) if keepdim else out)


def logsumexp(x, dim, keepdim=False):
    return LogSumExp.apply(x, dim=dim, keepdim=keepdim)


def reshape(x, *shape):
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    if -1 not in shape and int(np.prod(shape)) != x.size:
        raise ValueError(f"reshape: cannot reshape a tensor of shape {x.shape} ({x.size} elements) to {shape}")
    return Reshape.apply(x, shape=shape)


view = reshape


def flatten(x, start_dim=0, end_dim=-1):
    end = end_dim % x.ndim
    return reshape(x, x.shape[:start_dim] + (-1,) + x.shape[end + 1:])


def transpose(x, dim0=-2, dim1=-1):
    dims = list(range(x.ndim))
    dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
    return Permute.apply(x, dims=tuple(dims))


def permute(x, *dims):
    dims = tuple(dims[0]) if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
    return Permute.apply(x, dims=dims)


def squeeze(x, dim=None):
    if dim is None:
        return reshape(x, tuple(s for s in x.shape if s != 1))
    dims = _dims(dim, x.ndim)
    return reshape(x, tuple(s for i, s in enumerate(x.shape) if not (i in dims and s == 1)))


def unsqueeze(x, dim):
    dim = dim % (x.ndim + 1)
    return reshape(x, x.shape[:dim] + (1,) + x.shape[dim:])


def expand(x, *shape):
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    if tuple(shape) == x.shape:
        return x
    return Expand.apply(x, shape=tuple(shape))


broadcast_to = expand


def sum_to(x, shape):
    """Sum ``x`` over broadcast axes so that it has ``shape`` (undoes broadcasting)."""
    if tuple(x.shape) == tuple(shape):
        return x
    return SumTo.apply(x, shape=tuple(shape))


def cat(tensors, dim=0):
    return Concat.apply(*tensors, dim=dim)


concat = cat


def stack(tensors, dim=0):
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) > 1:
        raise ValueError(f"stack: all tensors need the same shape, got {sorted(shapes)}")
    return cat([unsqueeze(t, dim) for t in tensors], dim)


def split(x, split_size_or_sections, dim=0):
    """Pieces of ``x`` along ``dim``: equal ``split_size`` pieces or the listed section sizes."""
    n = x.shape[dim]
    if isinstance(split_size_or_sections, int):
        sizes = [split_size_or_sections] * (n // split_size_or_sections)
        if n % split_size_or_sections:
            sizes.append(n % split_size_or_sections)
    else:
        sizes = list(split_size_or_sections)
        if builtins_sum(sizes) != n:
            raise ValueError(f"split: sections {sizes} do not add up to size {n} of dim {dim}")
    pieces, start, dim = [], 0, dim % x.ndim
    for size in sizes:
        pieces.append(getitem(x, (slice(None),) * dim + (slice(start, start + size),)))
        start += size
    return pieces


def chunk(x, chunks, dim=0):
    return split(x, -(-x.shape[dim] // chunks), dim)


def getitem(x, index):
    return GetItem.apply(x, index=_check_index(index))


def gather(x, dim, index):
    index = index.data if _t(index) is not None else index
    return Gather.apply(x, index, dim=dim)


def masked_fill(x, mask, value):
    """``x`` with ``value`` wherever the boolean ``mask`` (broadcastable) is True."""
    mask = mask.data if _t(mask) is not None else mask
    if mask.dtype != np.bool_:
        raise TypeError(f"masked_fill: mask must be boolean, got dtype {mask.dtype}")
    return where(mask, value, x)


def softmax(x, dim=-1):
    return Softmax.apply(x, dim=dim)


def log_softmax(x, dim=-1):
    return LogSoftmax.apply(x, dim=dim)


def tril_mask(rows, cols=None, diagonal=0, device=None):
    """Boolean (rows, cols) array, True on and below the ``diagonal`` (a causal mask)."""
    xp = backend.xp_of_device(backend.normalize_device(device))
    return xp.tri(rows, cols, k=diagonal, dtype=bool)


def triu_mask(rows, cols=None, diagonal=0, device=None):
    """Boolean (rows, cols) array, True on and above the ``diagonal``."""
    return ~tril_mask(rows, cols, diagonal - 1, device)


def tril(x, diagonal=0):
    """Zero the elements of ``x`` above the ``diagonal`` (last two dims)."""
    return where(tril_mask(x.shape[-2], x.shape[-1], diagonal, x.device), x, 0.0)


def triu(x, diagonal=0):
    return where(triu_mask(x.shape[-2], x.shape[-1], diagonal, x.device), x, 0.0)


def matmul(a, b):
    """Matrix product with NumPy's broadcasting rules; 1-D operands are promoted and squeezed."""
    if _t(a) is None:
        a = Tensor(a)
    if _t(b) is None:
        b = Tensor(b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: both operands need at least 1 dimension, got shapes {a.shape} and {b.shape}")
    squeeze_a, squeeze_b = a.ndim == 1, b.ndim == 1
    out = MatMul.apply(unsqueeze(a, 0) if squeeze_a else a, unsqueeze(b, -1) if squeeze_b else b)
    if squeeze_b:
        out = squeeze(out, -1)
    if squeeze_a:
        out = squeeze(out, -1 if squeeze_b else -2)  # 1-D @ 1-D: (1, 1) -> (1,) -> ()
    return out


# ---------------------------------------------------------------- tensor factories
def _factory(fn, shape, dtype, device, requires_grad):
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)
    device = backend.normalize_device(device)
    xp = backend.xp_of_device(device)
    with backend.device_context(device):
        array = fn(xp, shape, np.float32 if dtype is None else dtype)
    return Tensor(array, requires_grad=requires_grad)


def zeros(*shape, dtype=None, device=None, requires_grad=False):
    return _factory(lambda xp, s, d: xp.zeros(s, d), shape, dtype, device, requires_grad)


def ones(*shape, dtype=None, device=None, requires_grad=False):
    return _factory(lambda xp, s, d: xp.ones(s, d), shape, dtype, device, requires_grad)


def empty(*shape, dtype=None, device=None, requires_grad=False):
    return _factory(lambda xp, s, d: xp.empty(s, d), shape, dtype, device, requires_grad)


def full(shape, fill_value, dtype=None, device=None, requires_grad=False):
    return _factory(lambda xp, s, d: xp.full(s, fill_value, d), (shape,), dtype, device, requires_grad)


def eye(n, m=None, dtype=None, device=None):
    return _factory(lambda xp, s, d: xp.eye(n, m, dtype=d), ((),), dtype, device, False)


def zeros_like(x, dtype=None):
    return zeros(x.shape, dtype=dtype or x.dtype, device=x.device)


def ones_like(x, dtype=None):
    return ones(x.shape, dtype=dtype or x.dtype, device=x.device)


def arange(start, end=None, step=1, dtype=None, device=None):
    if end is None:
        start, end = 0, start
    device = backend.normalize_device(device)
    xp = backend.xp_of_device(device)
    with backend.device_context(device):
        array = xp.arange(start, end, step)
    if dtype is not None:
        array = array.astype(dtype)
    elif array.dtype.kind == "f":
        array = array.astype(np.float32)
    return Tensor(array)


def randn(*shape, dtype=None, device=None, requires_grad=False):
    """Standard normal samples from the device's seeded generator."""
    device = backend.normalize_device(device)
    def make(xp, s, d):
        return backend.generator(device).standard_normal(s, dtype=np.float32).astype(d, copy=False)
    return _factory(make, shape, dtype, device, requires_grad)


def rand(*shape, dtype=None, device=None, requires_grad=False):
    """Uniform [0, 1) samples from the device's seeded generator."""
    device = backend.normalize_device(device)
    def make(xp, s, d):
        return backend.generator(device).random(s, dtype=np.float32).astype(d, copy=False)
    return _factory(make, shape, dtype, device, requires_grad)


def randint(low, high, shape, device=None):
    device = backend.normalize_device(device)
    with backend.device_context(device):
        return Tensor(backend.generator(device).integers(low, high, size=tuple(shape)).astype(np.int64))


import builtins as _builtins  # noqa: E402  (after the PyTorch-named sum/max/min/abs above)

builtins_sum = _builtins.sum


# ---------------------------------------------------------------- Tensor methods
# tensor.py writes out Tensor's methods as calls into this module; it cannot import this module
# (which imports it), so this module hands itself over once it is fully defined.
_sys.modules[Tensor.__module__]._ops = _sys.modules[__name__]
