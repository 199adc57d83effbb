"""``Module`` and ``Parameter``: the containers that hold a model's weights.

As in PyTorch, a Module's parameters, buffers and sub-modules are ordinary attributes; the
Module finds them by walking its ``__dict__`` in definition order, so ``named_parameters`` gives
names like ``blocks.0.attn.in_proj.weight``.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .. import backend
from ..tensor import Tensor, _as_array


class Parameter(Tensor):
    """A Tensor that is a learnable weight of a Module (``requires_grad=True`` by default)."""
    __slots__ = ()

    def __init__(self, data, requires_grad: bool = True):
        if getattr(data, "_is_tensor", False):
            data = data.data
        super().__init__(_as_array(data), requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of every layer and model: subclasses set attributes in ``__init__`` and
    implement ``forward``; calling the module runs ``forward`` and then any forward hooks."""

    def __init__(self):
        self.training = True
        self._buffers = []          # names of non-learnable state tensors (running stats)
        self._forward_hooks = {}

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not implement forward()")

    def __call__(self, *args, **kwargs):
        out = self.forward(*args, **kwargs)
        for hook in list(self.__dict__.get("_forward_hooks", {}).values()):
            if getattr(hook, "_with_kwargs", False):
                result = hook.fn(self, args, kwargs, out)
            else:
                result = hook(self, args, out)
            if result is not None:
                out = result
        return out

    def register_forward_hook(self, hook, *, with_kwargs: bool = False):
        """Call ``hook(module, inputs, output)`` after every forward (with ``with_kwargs=True``:
        ``hook(module, inputs, kwargs, output)``, as PyTorch); it may return a new output.
        Returns a handle whose ``remove()`` unregisters the hook."""
        hooks = self.__dict__.setdefault("_forward_hooks", {})
        key = object()
        if with_kwargs:
            class _KwargsHook:
                _with_kwargs = True

                def __init__(self, fn):
                    self.fn = fn
            hook = _KwargsHook(hook)
        hooks[key] = hook

        class Handle:
            def remove(self_inner):
                hooks.pop(key, None)
        return Handle()

    def register_buffer(self, name: str, tensor) -> None:
        """Keep ``tensor`` as state saved in ``state_dict`` and moved by ``to``, but not trained."""
        if "_buffers" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before register_buffer")
        setattr(self, name, tensor)
        if name not in self._buffers:
            self._buffers.append(name)

    # ------------------------------------------------------------------ traversal
    def named_children(self):
        for name, value in self.__dict__.items():
            if isinstance(value, Module):
                yield name, value

    def children(self):
        return (m for _, m in self.named_children())

    def named_modules(self, prefix: str = ""):
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return (m for _, m in self.named_modules())

    def named_parameters(self, prefix: str = "", recurse: bool = True):
        seen = set()
        for module_name, module in (self.named_modules(prefix) if recurse else [(prefix, self)]):
            for name, value in module.__dict__.items():
                if isinstance(value, Parameter) and id(value) not in seen:
                    seen.add(id(value))  # a tied weight is listed once
                    yield (f"{module_name}.{name}" if module_name else name), value

    def parameters(self, recurse: bool = True):
        return (p for _, p in self.named_parameters(recurse=recurse))

    def named_buffers(self, prefix: str = ""):
        for module_name, module in self.named_modules(prefix):
            for name in module.__dict__.get("_buffers", []):
                value = getattr(module, name)
                if value is not None:
                    yield (f"{module_name}.{name}" if module_name else name), value

    def buffers(self):
        return (b for _, b in self.named_buffers())

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    # ------------------------------------------------------------------ modes and devices
    def train(self, mode: bool = True):
        for m in self.modules():
            m.training = mode
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True):
        """Freeze (False) or unfreeze (True) every parameter of this module."""
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad.data[...] = 0

    def to(self, device=None, dtype=None):
        """Move (in place) every parameter, gradient and buffer to ``device`` / cast to ``dtype``.
        Parameters keep their identity, so an optimizer built before the move still holds them."""
        device = backend.normalize_device(device) if device is not None else None
        def convert(array):
            if device is not None and backend.device_of(array) != device:
                array = backend.to_device(array, device)
            if dtype is not None and array.dtype.kind == "f":
                array = array.astype(dtype)
            return array
        for p in self.parameters():
            p.data = convert(p.data)
            if p.grad is not None:
                p.grad = Tensor(convert(p.grad.data))
        for module in self.modules():
            for name in module.__dict__.get("_buffers", []):
                b = getattr(module, name)
                if b is not None:
                    b.data = convert(b.data)
        return self

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    @property
    def device(self) -> str:
        first = next(self.parameters(), None)
        return first.device if first is not None else "cpu"

    def apply(self, fn):
        """Call ``fn(module)`` on every sub-module (children first) and on self."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------ saving and loading
    def state_dict(self) -> "OrderedDict[str, Tensor]":
        """Every parameter and buffer by dotted name (tensors sharing memory with the model)."""
        state = OrderedDict()
        for name, p in self.named_parameters():
            state[name] = Tensor(p.data)
        for name, b in self.named_buffers():
            state[name] = Tensor(b.data)
        return state

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy values from ``state_dict`` (tensors or arrays) into this module, in place.

        With ``strict`` every key must match: missing or unexpected keys raise KeyError listing
        them. A shape mismatch always raises ValueError naming the key and both shapes; integer
        values for a floating-point parameter raise TypeError, NaN or infinite ones ValueError.
        Returns ``(missing_keys, unexpected_keys)``.
        """
        own = OrderedDict(list(self.named_parameters()) + list(self.named_buffers()))
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict for {type(self).__name__}: missing keys {missing}, "
                           f"unexpected keys {unexpected}")
        for name, target in own.items():
            if name not in state_dict:
                continue
            value = state_dict[name]
            value = value.data if getattr(value, "_is_tensor", False) else value
            if tuple(value.shape) != target.shape:
                raise ValueError(f"load_state_dict: {name!r} has shape {tuple(value.shape)} in the state "
                                 f"dict but {target.shape} in the model")
            kind = np.dtype(value.dtype).kind
            if target.dtype.kind == "f" and kind != "f":
                raise TypeError(f"load_state_dict: {name!r} holds {np.dtype(value.dtype)} values in the state dict "
                                f"but the model's {name!r} is {target.dtype}: a floating-point array is needed")
            if kind == "f" and not bool(backend.get_array_module(value).isfinite(value).all()):
                raise ValueError(f"load_state_dict: {name!r} holds NaN or infinite values")
            array = backend.to_device(value, target.device).astype(target.dtype, copy=False)
            target.data[...] = array
        return missing, unexpected

    # ------------------------------------------------------------------ printing
    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [f"({name}): " + repr(child).replace("\n", "\n  ") for name, child in self.named_children()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"


class Sequential(Module):
    """Apply the given modules one after another."""

    def __init__(self, *modules):
        super().__init__()
        for i, m in enumerate(modules):
            setattr(self, str(i), m)

    def __iter__(self):
        return iter(list(self.children()))

    def __len__(self):
        return len(list(self.children()))

    def __getitem__(self, i):
        return list(self.children())[i]

    def forward(self, x):
        for m in self.children():
            x = m(x)
        return x


class ModuleList(Module):
    """A list of modules whose parameters the parent sees (``blocks.0.…``, ``blocks.1.…``)."""

    def __init__(self, modules=()):
        super().__init__()
        self._length = 0
        for m in modules:
            self.append(m)

    def append(self, module):
        setattr(self, str(self._length), module)
        self._length += 1
        return self

    def __iter__(self):
        return (getattr(self, str(i)) for i in range(self._length))

    def __len__(self):
        return self._length

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [getattr(self, str(j)) for j in range(self._length)[i]]
        if not -self._length <= i < self._length:
            raise IndexError(f"ModuleList index {i} out of range for length {self._length}")
        return getattr(self, str(i % self._length))

    def forward(self, *args, **kwargs):
        raise TypeError("ModuleList is a container; call its modules instead")
