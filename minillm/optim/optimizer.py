"""``Optimizer``: the base class that holds parameter groups and per-parameter state.

As in PyTorch, an optimizer is built from an iterable of Parameters, or of dicts ("parameter
groups") that each hold ``"params"`` plus any hyperparameters that differ from the defaults::

    AdamW([{"params": decay, "weight_decay": 0.1},
           {"params": no_decay, "weight_decay": 0.0}], lr=6e-4)

``param_groups`` is that list of dicts (every group gets every default, ``"lr"`` included, so a
learning-rate scheduler can set ``group["lr"]``). ``state[p]`` is a dict of arrays (momentum
buffers, moving averages) and numbers (the step count) for parameter ``p``.

Subclasses implement ``_init_state(p, group)`` (the state of a parameter before its first
update) and ``_step_group(group)``, which reads the group's hyperparameters once and updates
each of its parameters that has a gradient, in place, on raw arrays.

Device rule: a parameter's state lives on the parameter's device. State is created there on the
first step; if the model is moved afterwards (``Module.to("cuda")``), the next ``step()`` sees
that the parameter's array and its state are on different devices (one ``device_of`` comparison
per parameter) and moves the state over, so training simply continues. ``load_state_dict`` puts
every state array on its parameter's device, in its parameter's dtype. (On several GPUs, make
the parameters' GPU the current device, as with ``torch.cuda.set_device``, since temporaries
are allocated on the current device.)

Speed: ``step()`` runs once per training step over every parameter of the model, so updates
work in place on preallocated state (``out=``, ``*=``), multiply by Python floats (never NumPy
float64 scalars, which would upcast float32 arrays), keep state in the parameter's dtype, and
draw their temporaries from scratch buffers reused across parameters and steps (``_scratch``).
On the GPU every array operation is also a kernel launch, so Adam/AdamW fuse their update into
one CuPy kernel there (``adam.py``).
"""
from __future__ import annotations

import functools

import numpy as np

from .. import backend
from ..tensor import no_grad, set_grad_enabled


def _is_array(x) -> bool:
    return isinstance(x, np.ndarray) or backend.is_cupy_array(x)


def _step_without_grad(step):
    """Run ``step`` with graph recording off (a closure, if given, turns it back on)."""
    @functools.wraps(step)
    def wrapper(self, closure=None):
        with no_grad():
            return step(self, closure)
    return wrapper


class Optimizer:
    """Base class of every optimizer (see the module docstring).

    Args:
        params: an iterable of Parameters, or of dicts with a ``"params"`` entry (groups).
        defaults: hyperparameters used by groups that do not set them (must include ``"lr"``).
    """

    def __init__(self, params, defaults: dict):
        if "lr" not in defaults:
            raise ValueError(f"{type(self).__name__}: defaults must include 'lr'")
        self.defaults = dict(defaults)
        self.state: dict = {}           # Parameter -> {name: array or number}
        self.param_groups: list = []
        self._scratch_buffers: dict = {}  # (slot, device, dtype) -> flat array, see _scratch
        if getattr(params, "_is_tensor", False) or isinstance(params, (set, frozenset, dict)):
            raise TypeError(f"{type(self).__name__}: params must be an ordered iterable (a list) of "
                            f"Parameters or of dicts, got {type(params).__name__}")
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if not isinstance(params[0], dict):
            params = [{"params": params}]
        for group in params:
            self.add_param_group(group)

    def add_param_group(self, param_group: dict) -> None:
        """Add a group (``{"params": [...], **hyperparameters}``); missing settings come from
        the defaults. A parameter may belong to one group only."""
        if not isinstance(param_group, dict):
            raise TypeError(f"a parameter group must be a dict, got {type(param_group).__name__}")
        params = param_group["params"]
        if getattr(params, "_is_tensor", False):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError("a parameter group's params must be an ordered iterable (a list), not a set")
        params = list(params)
        for p in params:
            if not getattr(p, "_is_tensor", False):
                raise TypeError(f"{type(self).__name__} can only optimize Tensors/Parameters, got {type(p).__name__}")
            if p.data.dtype.kind != "f":
                raise TypeError(f"{type(self).__name__} can only optimize floating-point tensors, got {p.dtype}")
        if len({id(p) for p in params}) != len(params):
            raise ValueError("a parameter group contains the same parameter more than once")
        existing = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in existing for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        group = {**self.defaults, **{k: v for k, v in param_group.items() if k != "params"}}
        group["params"] = params
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget every gradient: set ``.grad`` to None (the default, which frees the memory and
        lets the next backward write instead of add), or fill it with zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.data.fill(0)

    @_step_without_grad
    def step(self, closure=None):
        """Update every parameter that has a gradient (those whose ``.grad`` is None are skipped).

        ``closure``, if given, re-evaluates the model and returns the loss (run with gradients
        on); its result is returned, as in PyTorch.
        """
        loss = None
        if closure is not None:
            with set_grad_enabled(True):
                loss = closure()
        for group in self.param_groups:
            half = self._swap_in_float32_masters(group)
            try:
                self._step_group(group)
            finally:
                self._swap_out_float32_masters(half)
        return loss

    # ------------------------------------------------------------------ float16 parameters
    # Updating float16 weights in float16 fails twice: ε = 1e-8 underflows to 0 (Adam divides by
    # √v + 0 and gives inf/NaN), and an update smaller than half a float16 ulp of the weight is
    # rounded away. So, as PyTorch's mixed-precision recipe does with "master weights", each
    # float16 parameter is updated through a float32 copy kept in its state ("master_param"):
    # the update rule runs on the float32 copy, with a float32 gradient and float32 state, and
    # the parameter receives the rounded result.
    def _swap_in_float32_masters(self, group: dict) -> list:
        swapped = []
        for p in group["params"]:
            if p.grad is None or p.data.dtype != np.float16:
                continue
            master = self.state.get(p, {}).get("master_param")
            if master is None or backend.device_of(master) != backend.device_of(p.data):
                master = p.data.astype(np.float32)
            swapped.append((p, p._data, p.grad, master))
            p._data, p.grad = master, type(p.grad)(p.grad.data.astype(np.float32))
        return swapped

    def _swap_out_float32_masters(self, swapped: list) -> None:
        for p, half, grad, master in swapped:
            half[...] = master            # round to float16, in place (the parameter's array)
            p._data, p.grad = half, grad
            self.state.setdefault(p, {})["master_param"] = master

    # ------------------------------------------------------------------ for subclasses
    def _init_state(self, p, group: dict) -> dict:
        """The state of ``p`` before its first update (arrays on ``p``'s device and dtype)."""
        return {}

    def _step_group(self, group: dict) -> None:
        """Update, in place, every parameter of ``group`` whose ``.grad`` is not None."""
        raise NotImplementedError

    def _param_state(self, p, group: dict) -> dict:
        """``state[p]``, created on first use, and moved to ``p``'s device if the model moved."""
        state = self.state.get(p)
        if state is None:
            with backend.device_context(backend.device_of(p.data)):
                state = self.state[p] = self._init_state(p, group)
            return state
        for value in state.values():
            if _is_array(value):  # all arrays of one parameter live together: one check is enough
                if backend.device_of(value) != backend.device_of(p.data):
                    self._move_state(p, state)
                break
        return state

    def _move_state(self, p, state: dict) -> None:
        self._scratch_buffers.clear()  # the model moved: drop the old device's scratch too
        device = backend.device_of(p.data)
        for key, value in state.items():
            if _is_array(value):
                state[key] = backend.to_device(value, device)

    def _gradient(self, param, grad, weight_decay: float, maximize: bool, xp):
        """The gradient the update rule sees: ``±grad + weight_decay·param`` (L2 regularization,
        and ``maximize`` flips the sign first, as in PyTorch). ``grad`` itself when there is
        nothing to add (never modified); otherwise scratch slot 1."""
        if weight_decay != 0:
            d = xp.multiply(param, weight_decay, out=self._scratch(param, 1))
            if maximize:
                d -= grad
            else:
                d += grad
            return d
        if maximize:
            return xp.negative(grad, out=self._scratch(param, 1))
        return grad

    def _scratch(self, like, slot: int = 0):
        """A temporary array shaped like ``like`` (same device and dtype), valid until the next
        call with the same ``slot``. Views of one flat buffer per (slot, device, dtype), as large
        as the largest parameter, so a step allocates nothing after the first."""
        device = backend.device_of(like)
        key = (slot, device, like.dtype)
        buf = self._scratch_buffers.get(key)
        if buf is None or buf.size < like.size:
            xp = backend.get_array_module(like)
            with backend.device_context(device):
                buf = self._scratch_buffers[key] = xp.empty(like.size, dtype=like.dtype)
        return buf[:like.size].reshape(like.shape)

    # ------------------------------------------------------------------ saving and loading
    def state_dict(self) -> dict:
        """The optimizer's state as plain data, for a checkpoint::

            {"state": {index: {name: numpy array or number}},
             "param_groups": [{"lr": ..., ..., "params": [index, ...]}, ...]}

        Parameters are numbered 0, 1, 2, ... in group order. The arrays are NumPy copies (a
        snapshot; GPU state is copied to the host), so they can go to an ``.npz`` file and the
        rest to JSON; no pickle needed.
        """
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p in self.state:
                    state[index[id(p)]] = {k: (np.array(backend.to_numpy(v), copy=True) if _is_array(v) else v)
                                           for k, v in self.state[p].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore what ``state_dict`` returned (possibly after a trip through JSON/``.npz``:
        string indices and lists for tuples are accepted).

        The groups must have the same sizes and every state array the shape of its parameter,
        otherwise ValueError names the group or parameter index and both shapes. Each array is
        copied to its parameter's device and dtype; hyperparameters (lr, ...) come from the
        state dict.
        """
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"load_state_dict: the state dict has {len(saved_groups)} parameter group(s) "
                             f"but the optimizer has {len(self.param_groups)}")
        params = []
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"load_state_dict: parameter group {i} has {len(saved['params'])} "
                                 f"parameter(s) in the state dict but {len(group['params'])} in the optimizer")
            params.extend(zip((int(j) for j in saved["params"]), group["params"]))
        by_index = dict(params)

        new_state = {}
        for key, saved_state in state_dict["state"].items():
            index = int(key)
            if index not in by_index:
                raise ValueError(f"load_state_dict: state for parameter {index}, which no group lists")
            p = by_index[index]
            device = backend.device_of(p.data)
            entry = {}
            for name, value in saved_state.items():
                if isinstance(value, np.generic) or (_is_array(value) and value.ndim == 0 and p.data.ndim != 0):
                    value = value.item()  # a number that went through .npz
                if _is_array(value):
                    if tuple(value.shape) != tuple(p.data.shape):
                        raise ValueError(f"load_state_dict: state {name!r} of parameter {index} has shape "
                                         f"{tuple(value.shape)} but the parameter has shape {tuple(p.data.shape)}")
                    # float state in the parameter's dtype (float32 for a float16 parameter: see above)
                    param_dtype = np.float32 if p.data.dtype == np.float16 else p.data.dtype
                    dtype = param_dtype if value.dtype.kind == "f" else value.dtype
                    value = backend.to_device(value, device)
                    value = value.astype(dtype, copy=True)  # a copy: never alias the caller's arrays
                entry[name] = value
            new_state[p] = entry

        for saved, group in zip(saved_groups, self.param_groups):
            for k, v in saved.items():
                if k == "params":
                    continue
                if isinstance(v, list) and isinstance(group.get(k, self.defaults.get(k)), tuple):
                    v = tuple(v)  # JSON turned betas=(0.9, 0.95) into a list
                group[k] = v
        self.state = new_state

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines.extend(f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params")
        return "\n".join(lines) + "\n)"
