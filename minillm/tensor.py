"""Tensors and reverse-mode automatic differentiation.

A ``Tensor`` wraps a NumPy or CuPy array. Every differentiable operation is a ``Function``
(see ``ops.py``) with a ``forward`` on raw arrays and a ``backward`` right next to it. When any
input requires a gradient, calling an op records the Function as the output's creator: the graph
is built as the program runs ("define-by-run", as in Chainer and PyTorch).

``loss.backward()`` walks that graph from the loss back to the leaves. Functions are visited in
decreasing *generation* (one more than the newest input), kept in a heap: every consumer of a
tensor is processed before the tensor's creator, so a gradient is complete before it is passed
on, and no recursion is involved (a chain of 10,000 ops is fine).

Backward rules are written with Tensor operations, so with ``create_graph=True`` the backward
pass is itself recorded and can be differentiated again (second derivatives, ``gradgradcheck``).
Without it, backward runs under ``no_grad`` and the Tensor ops are thin wrappers around arrays.

Gradients have the dtype of the tensor they belong to (a float32 leaf gets a float32 ``.grad``
even where a float64 constant took part), and each leaf gets a ``.grad`` of its own.

Each tensor counts the times its ``.data`` was replaced or updated in place through the
attribute (``t.data += 1``, ``t.data = ...``): its *version*. An op remembers the versions of its
inputs, and ``backward`` refuses to use an input that changed since, as PyTorch does: the saved
values would no longer be the ones the derivative needs.

Tensor methods (``t.sum()``, ``t.exp()``, ``t + u``) are written out below; each calls the
function of the same name in ``ops.py``. ``ops.py`` imports this module, so this module does not
import it back: ``ops.py`` hands itself over when it is imported (``_ops`` below).
"""
from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
import weakref

import numpy as np

from . import backend

# ------------------------------------------------------------------ grad mode
_state = threading.local()


def is_grad_enabled() -> bool:
    return getattr(_state, "grad_enabled", True)


@contextlib.contextmanager
def set_grad_enabled(mode: bool):
    """Context manager: record the graph (True) or not (False) inside the block."""
    previous = is_grad_enabled()
    _state.grad_enabled = bool(mode)
    try:
        yield
    finally:
        _state.grad_enabled = previous


def no_grad():
    """``with no_grad():`` runs ops without recording a graph (evaluation, optimizer steps)."""
    return set_grad_enabled(False)


# ------------------------------------------------------------------ dtypes
float32, float64, float16 = np.float32, np.float64, np.float16
int32, int64, uint8, bool_ = np.int32, np.int64, np.uint8, np.bool_


def _as_array(data, dtype=None, device=None):
    """The raw array behind ``tensor(...)``: floats default to float32 (float64/float16 arrays
    keep their dtype, as gradchecks need float64), integers to int64, on ``device``."""
    if getattr(data, "_is_tensor", False):
        data = data.data
    if isinstance(data, np.generic):
        data = np.asarray(data)
    is_array = _is_array(data)
    source = backend.device_of(data) if is_array else "cpu"
    device = backend.normalize_device(device) if device is not None else \
        (source if is_array else backend.default_device())
    if dtype is None:
        probe = data if is_array else np.asarray(data)
        dtype = probe.dtype if (is_array or probe.dtype.kind != "f") else float32
        if probe.dtype.kind not in "fiub":
            raise TypeError(f"tensor(): unsupported data of dtype {probe.dtype}")
    if device != source:
        data = backend.to_device(data, device)
    with backend.device_context(device):
        return backend.xp_of_device(device).asarray(data, dtype=dtype)


class Tensor:
    """An n-dimensional array that remembers how it was computed.

    Attributes:
        data: the NumPy/CuPy array.
        grad: a Tensor of the same shape, filled by ``backward()`` (None until then).
        requires_grad: whether gradients flow to this tensor.
    """
    _is_tensor = True
    __array_priority__ = 1000  # so `ndarray * Tensor` calls Tensor.__rmul__
    __slots__ = ("_data", "_version", "grad", "requires_grad", "_ctx", "_retain_grad", "name", "__weakref__")

    def __init__(self, data, requires_grad: bool = False, dtype=None, device=None, name=None):
        if isinstance(data, np.generic):  # NumPy reductions return scalars: keep their dtype
            data = np.asarray(data)
        self._data = data if (dtype is None and device is None and _is_array(data)) \
            else _as_array(data, dtype, device)
        self._version = 0
        if requires_grad and self._data.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {self._data.dtype}")
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._ctx = None          # the Function that produced this tensor (None for leaves)
        self._retain_grad = False
        self.name = name

    @property
    def data(self):
        """The NumPy/CuPy array. Assigning it (``t.data = a``, ``t.data += 1``) bumps the version."""
        return self._data

    @data.setter
    def data(self, array):
        self._data = array
        self._version += 1

    # ---------------------------------------------------------------- basic facts
    shape = property(lambda self: tuple(self.data.shape))
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: int(self.data.size))
    device = property(lambda self: backend.device_of(self.data))
    is_leaf = property(lambda self: self._ctx is None)
    # PyTorch's names: .T reverses every dim, .mT swaps the last two (a batch of matrices)
    T = property(lambda self: self.permute(tuple(range(self.ndim - 1, -1, -1))) if self.ndim >= 2 else self)
    mT = property(lambda self: self.transpose(-2, -1))

    def dim(self) -> int:
        return self.data.ndim

    def numel(self) -> int:
        return int(self.data.size)

    def __len__(self):
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return len(self.data)

    def numpy(self) -> np.ndarray:
        """The values as a NumPy array (copied from the GPU if needed)."""
        return backend.to_numpy(self.data)

    def tolist(self):
        return self.numpy().tolist()

    def item(self):
        """The value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.data.reshape(()).item()

    def __repr__(self):
        body = np.array2string(self.numpy(), precision=4, separator=", ", threshold=20, prefix="tensor(")
        extras = []
        if self.device != "cpu":
            extras.append(f"device='{self.device}'")
        if self.dtype != float32 and self.dtype.kind == "f" or self.dtype.kind not in "fib":
            extras.append(f"dtype={self.dtype}")
        if self._ctx is not None:
            extras.append(f"grad_fn=<{type(self._ctx).__name__}>")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + body + "".join(", " + e for e in extras) + ")"

    # ---------------------------------------------------------------- graph utilities
    def detach(self) -> "Tensor":
        """The same values, cut from the graph (shares memory)."""
        return Tensor(self.data)

    def requires_grad_(self, mode: bool = True) -> "Tensor":
        if mode and self.data.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {self.data.dtype}")
        self.requires_grad = mode
        return self

    def retain_grad(self) -> None:
        """Keep ``.grad`` on this non-leaf tensor after backward (leaves always keep theirs)."""
        self._retain_grad = True

    def zero_grad(self) -> None:
        self.grad = None

    def clone(self) -> "Tensor":
        return _ops.clone(self)

    def to(self, device=None, dtype=None) -> "Tensor":
        """This tensor on ``device`` and/or as ``dtype`` (differentiable; self if nothing changes)."""
        out = self
        if device is not None and backend.normalize_device(device) != self.device:
            out = _ops.to_device(out, backend.normalize_device(device))
        if dtype is not None and np.dtype(dtype) != out.dtype:
            out = _ops.cast(out, np.dtype(dtype))
        return out

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def float(self):
        return self.to(dtype=float32)

    def double(self):
        return self.to(dtype=float64)

    def long(self):
        return self.to(dtype=int64)

    def backward(self, gradient=None, retain_graph: bool = False, create_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``.

        ``gradient`` is required when self is not a scalar (it is the vector in the
        vector-Jacobian product). ``create_graph=True`` records the backward pass so the
        gradients can be differentiated again.
        """
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward() on a tensor of shape {self.shape} needs an explicit `gradient` "
                    "of the same shape (only scalars get an implicit gradient of 1)")
            gradient = Tensor(self.data.dtype.type(1) * backend.get_array_module(self.data).ones_like(self.data))
        elif not getattr(gradient, "_is_tensor", False):
            gradient = Tensor(_as_array(gradient, self.dtype, self.device))
        if gradient.shape != self.shape:
            raise ValueError(f"backward(): gradient has shape {gradient.shape} but the tensor has {self.shape}")
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad: "
                               "no input of the computation had requires_grad=True")
        run_backward([self], [gradient], retain_graph=retain_graph or create_graph, create_graph=create_graph)

    # ---------------------------------------------------------------- operators and methods
    # Each calls the function of the same name in ops.py, where its backward sits under its forward.
    def __add__(self, other): return _ops.add(self, other)
    def __radd__(self, other): return _ops.add(other, self)
    def __sub__(self, other): return _ops.sub(self, other)
    def __rsub__(self, other): return _ops.sub(other, self)
    def __mul__(self, other): return _ops.mul(self, other)
    def __rmul__(self, other): return _ops.mul(other, self)
    def __truediv__(self, other): return _ops.div(self, other)
    def __rtruediv__(self, other): return _ops.div(other, self)
    def __pow__(self, other): return _ops.pow(self, other)
    def __rpow__(self, other): return _ops.pow(other, self)
    def __matmul__(self, other): return _ops.matmul(self, other)
    def __rmatmul__(self, other): return _ops.matmul(other, self)
    def __neg__(self): return _ops.neg(self)
    def __abs__(self): return _ops.abs(self)
    def __getitem__(self, index): return _ops.getitem(self, index)

    def exp(self): return _ops.exp(self)
    def log(self): return _ops.log(self)
    def sqrt(self): return _ops.sqrt(self)
    def tanh(self): return _ops.tanh(self)
    def sigmoid(self): return _ops.sigmoid(self)
    def relu(self): return _ops.relu(self)
    def gelu(self, approximate="none"): return _ops.gelu(self, approximate)
    def abs(self): return _ops.abs(self)
    def neg(self): return _ops.neg(self)
    def pow(self, exponent): return _ops.pow(self, exponent)
    def matmul(self, other): return _ops.matmul(self, other)
    def clamp(self, min=None, max=None): return _ops.clamp(self, min, max)  # noqa: A002
    clip = clamp
    def maximum(self, other): return _ops.maximum(self, other)
    def minimum(self, other): return _ops.minimum(self, other)

    def sum(self, dim=None, keepdim=False): return _ops.sum(self, dim, keepdim)
    def mean(self, dim=None, keepdim=False): return _ops.mean(self, dim, keepdim)
    def var(self, dim=None, keepdim=False, correction=1, unbiased=None):
        return _ops.var(self, dim, keepdim, correction, unbiased)
    def max(self, dim=None, keepdim=False): return _ops.max(self, dim, keepdim)
    def min(self, dim=None, keepdim=False): return _ops.min(self, dim, keepdim)
    def argmax(self, dim=None, keepdim=False): return _ops.argmax(self, dim, keepdim)
    def logsumexp(self, dim, keepdim=False): return _ops.logsumexp(self, dim, keepdim)
    def softmax(self, dim=-1): return _ops.softmax(self, dim)
    def log_softmax(self, dim=-1): return _ops.log_softmax(self, dim)

    def reshape(self, *shape): return _ops.reshape(self, *shape)
    view = reshape
    def flatten(self, start_dim=0, end_dim=-1): return _ops.flatten(self, start_dim, end_dim)
    def transpose(self, dim0=-2, dim1=-1): return _ops.transpose(self, dim0, dim1)
    def permute(self, *dims): return _ops.permute(self, *dims)
    def squeeze(self, dim=None): return _ops.squeeze(self, dim)
    def unsqueeze(self, dim): return _ops.unsqueeze(self, dim)
    def expand(self, *shape): return _ops.expand(self, *shape)
    broadcast_to = expand
    def split(self, split_size_or_sections, dim=0): return _ops.split(self, split_size_or_sections, dim)
    def chunk(self, chunks, dim=0): return _ops.chunk(self, chunks, dim)
    def gather(self, dim, index): return _ops.gather(self, dim, index)
    def masked_fill(self, mask, value): return _ops.masked_fill(self, mask, value)
    def tril(self, diagonal=0): return _ops.tril(self, diagonal)
    def triu(self, diagonal=0): return _ops.triu(self, diagonal)

    # comparisons give boolean tensors, elementwise as in PyTorch (not differentiable); a tensor
    # still hashes by identity, so it can be a dict key (optimizer state), but `t in list` and
    # `a == b` are elementwise: compare identities with `is`
    def __eq__(self, other): return Tensor(self.data == _raw(other))
    def __ne__(self, other): return Tensor(self.data != _raw(other))
    def __lt__(self, other): return Tensor(self.data < _raw(other))
    def __le__(self, other): return Tensor(self.data <= _raw(other))
    def __gt__(self, other): return Tensor(self.data > _raw(other))
    def __ge__(self, other): return Tensor(self.data >= _raw(other))
    eq, ne, lt, le, gt, ge = __eq__, __ne__, __lt__, __le__, __gt__, __ge__
    __hash__ = object.__hash__

    def __bool__(self):
        if self.data.size != 1:
            raise ValueError(f"the truth value of a tensor of shape {self.shape} is ambiguous")
        return bool(self.data.reshape(()).item())

    def __float__(self): return float(self.item())
    def __int__(self): return int(self.item())


_ops = None  # the module minillm.ops, set by ops.py when it is imported (see the module docstring)


def _raw(x):
    return x.data if getattr(x, "_is_tensor", False) else x


def _is_array(x) -> bool:
    return isinstance(x, np.ndarray) or backend.is_cupy_array(x)


def tensor(data, requires_grad: bool = False, dtype=None, device=None) -> Tensor:
    """Make a leaf Tensor (a copy of ``data``). Floats become float32 unless float64 is given."""
    array = _as_array(data, dtype, device)
    if array is data or (getattr(data, "_is_tensor", False) and array is data.data):
        array = array.copy()
    return Tensor(array, requires_grad=requires_grad)


# ------------------------------------------------------------------ functions and the graph
class Function:
    """One differentiable operation: ``forward`` on arrays, ``backward`` on Tensors.

    Subclasses implement ``forward(self, *arrays, **options) -> array`` (saving what backward
    needs on ``self``) and ``backward(self, grad) -> grad or tuple of grads`` (one per input,
    None for inputs without a gradient), written with Tensor ops so it can be differentiated
    again. ``self.inputs`` are the input Tensors and ``self.output`` the output Tensor.
    """
    def __init__(self):
        self.inputs = ()
        self.generation = 0
        self._output_ref = None

    @property
    def output(self) -> Tensor:
        return self._output_ref()

    @classmethod
    def apply(cls, *inputs, **options) -> Tensor:
        fn = cls()
        tensors = [x if getattr(x, "_is_tensor", False) else None for x in inputs]
        arrays = [x.data if t is not None else x for x, t in zip(inputs, tensors)]
        _check_devices(cls, arrays, options)
        try:
            result = fn.forward(*arrays, **options)
        except ValueError as exc:  # NumPy's/CuPy's broadcast error names neither the op nor, clearly, the shapes
            if "could not be broadcast" not in str(exc):
                raise
            shapes = [tuple(a.shape) for a in arrays if hasattr(a, "shape")]
            raise ValueError(f"{cls.__name__}: shapes {shapes} do not broadcast together") from None
        out = Tensor(result)
        if is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
            fn.inputs = tuple(inputs)
            fn.input_versions = tuple(t._version if t is not None else None for t in tensors)
            fn.generation = 1 + max((t._ctx.generation for t in tensors if t is not None and t._ctx is not None),
                                    default=0)
            fn._output_ref = weakref.ref(out)
            out.requires_grad = True
            out._ctx = fn
        return out

    def forward(self, *arrays, **options):
        raise NotImplementedError

    def backward(self, grad):
        raise NotImplementedError

    def release(self) -> None:
        """Drop the inputs and everything forward saved (after a backward without retain_graph)."""
        keep = {"generation": self.generation, "_output_ref": self._output_ref}
        self.__dict__.clear()
        self.__dict__.update(keep, inputs=None)

    def needs_grad(self, i: int) -> bool:
        """Whether input ``i`` wants a gradient (skip work for constants and frozen weights)."""
        x = self.inputs[i]
        return getattr(x, "_is_tensor", False) and x.requires_grad

    def __repr__(self):
        return f"<{type(self).__name__}>"


def _check_devices(fn_cls, arrays, options) -> None:
    """Refuse to mix NumPy and CuPy arrays in one op (inputs, and arrays passed by keyword such
    as masks and indices), naming the op and both devices."""
    first = None
    extra = []
    for value in options.values():
        extra.extend(value if isinstance(value, tuple) else (value,))
    for a in list(arrays) + [getattr(v, "data", v) if getattr(v, "_is_tensor", False) else v for v in extra]:
        if isinstance(a, np.ndarray):
            kind = "cpu"
        elif backend.is_cupy_array(a):
            kind = backend.device_of(a)
        else:
            continue
        if first is None:
            first = kind
        elif kind != first:
            op = fn_cls.__name__
            raise backend.DeviceError(
                f"{op}: inputs are on different devices ({first} and {kind}); move them with .to(device) first")


def run_backward(outputs, grad_outputs, retain_graph=False, create_graph=False, inputs=None):
    """The backward pass: propagate ``grad_outputs`` from ``outputs`` through the graph.

    With ``inputs=None`` the gradients are accumulated into each leaf's ``.grad`` (and into
    non-leaves that called ``retain_grad``). With a list of ``inputs``, nothing is written to
    ``.grad``; the gradients of those tensors are returned instead (that is ``grad()``).
    """
    pending = {}        # id(tensor) -> [tensor, summed gradient so far]
    wanted = {id(t): i for i, t in enumerate(inputs)} if inputs is not None else None
    results = [None] * len(inputs) if inputs is not None else None
    heap, queued, order = [], set(), itertools.count()

    def add_grad(t, g):
        if wanted is not None and id(t) in wanted and t._ctx is None:
            i = wanted[id(t)]
            results[i] = g if results[i] is None else results[i] + g
        elif t._ctx is None:  # a leaf: accumulate into .grad
            if wanted is None and t.grad is None:
                # a copy of its own (contiguous, writable): backward rules may hand one gradient
                # to several inputs, or a read-only broadcast view, and optimizers and clipping
                # update .grad in place
                t.grad = _ops.clone(g) if create_graph else Tensor(g.data.copy())
            elif wanted is None:
                t.grad = t.grad + g if create_graph else Tensor(t.grad.data + g.data)
        else:
            slot = pending.get(id(t))
            if slot is None:
                pending[id(t)] = [t, g]
            else:
                slot[1] = slot[1] + g
            fn = t._ctx
            if id(fn) not in queued:
                queued.add(id(fn))
                heapq.heappush(heap, (-fn.generation, next(order), fn))

    for out, g in zip(outputs, grad_outputs):
        if out.requires_grad:
            add_grad(out, g)

    with set_grad_enabled(create_graph):
        while heap:
            _, _, fn = heapq.heappop(heap)
            if fn.inputs is None:
                raise RuntimeError(
                    f"{type(fn).__name__}: trying to backward through the graph a second time; its "
                    "saved arrays were freed. Call backward(retain_graph=True) the first time")
            _check_versions(fn)
            out = fn.output
            t, grad = pending.pop(id(out))
            if out._retain_grad and wanted is None:
                out.grad = grad if out.grad is None else out.grad + grad
            if wanted is not None and id(out) in wanted:
                results[wanted[id(out)]] = grad
            input_grads = fn.backward(grad)
            if not isinstance(input_grads, tuple):
                input_grads = (input_grads,)
            for x, gx in zip(fn.inputs, input_grads):
                if gx is None or not getattr(x, "_is_tensor", False) or not x.requires_grad:
                    continue
                if not getattr(gx, "_is_tensor", False):
                    gx = Tensor(gx)
                if gx.shape != x.shape:
                    # Broadcasting in the forward pass is undone here, in one place, by summing
                    # the gradient over the broadcast axes.
                    gx = _ops.sum_to(gx, x.shape)
                if gx.shape != x.shape:
                    raise RuntimeError(f"{type(fn).__name__}.backward returned a gradient of shape "
                                       f"{gx.shape} for an input of shape {x.shape}")
                if gx.dtype != x.dtype:  # e.g. a float32 input times a float64 constant
                    gx = _ops.cast(gx, x.dtype)
                add_grad(x, gx)
            if not retain_graph:
                fn.release()  # free the saved activations as soon as they are used
    return results


def _check_versions(fn) -> None:
    """Refuse to differentiate through an input whose values changed after the op used them."""
    for i, (x, version) in enumerate(zip(fn.inputs, getattr(fn, "input_versions", ()))):
        if version is not None and x._version != version:
            raise RuntimeError(
                f"{type(fn).__name__}: input {i} (shape {x.shape}) was modified in place after the op used it "
                f"(version {version}, now {x._version}), so its gradient would be wrong; change a copy "
                "(t.clone() or t.detach().clone()) or modify it before the forward pass")


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=False):
    """Gradients of ``outputs`` with respect to ``inputs`` (a list), returned, not stored.

    As ``torch.autograd.grad``: ``grad_outputs`` defaults to ones for scalar outputs;
    ``create_graph=True`` makes the results differentiable.
    """
    outputs = [outputs] if getattr(outputs, "_is_tensor", False) else list(outputs)
    single = getattr(inputs, "_is_tensor", False)
    inputs = [inputs] if single else list(inputs)
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif getattr(grad_outputs, "_is_tensor", False):
        grad_outputs = [grad_outputs]
    gos = []
    for out, g in zip(outputs, grad_outputs):
        if g is None:
            if out.data.size != 1:
                raise RuntimeError(f"grad(): output of shape {out.shape} needs an explicit grad_output")
            g = Tensor(backend.get_array_module(out.data).ones_like(out.data))
        gos.append(g)
    retain = create_graph if retain_graph is None else retain_graph
    results = run_backward(outputs, gos, retain_graph=retain, create_graph=create_graph, inputs=inputs)
    for i, (x, r) in enumerate(zip(inputs, results)):
        if r is None and not allow_unused:
            raise RuntimeError(f"grad(): input {i} (shape {x.shape}) was not used to compute the outputs; "
                               "pass allow_unused=True to get None")
    return results[0] if single else results
