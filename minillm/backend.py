"""The one place that decides NumPy (CPU) or CuPy (GPU).

Every other module asks this one for its array module (``get_array_module``), for a device's
random generator, or to move arrays between devices. No other file imports CuPy, so a machine
without it (or without a GPU) imports minillm silently and only fails, with a reason, when
someone asks for ``"cuda"``.

Devices are strings, as in PyTorch: ``"cpu"``, ``"cuda"`` (the current GPU) or ``"cuda:N"``.
The default device comes from ``set_default_device`` or the ``MINILLM_DEVICE`` environment
variable, else ``"cpu"``.
"""
from __future__ import annotations

import os

import numpy as np

_cupy = None            # the cupy module once it imported and found a GPU
_cupy_error = None      # why CUDA is not available, for the error message
_cupy_checked = False
_default_device = None  # set by set_default_device; None means "ask the environment"


class DeviceError(RuntimeError):
    """Raised when a device is unknown, unavailable, or two devices meet in one op."""


def _load_cupy():
    """Import CuPy once, lazily, and remember why it failed if it did."""
    global _cupy, _cupy_error, _cupy_checked
    if _cupy_checked:
        return _cupy
    _cupy_checked = True
    try:
        import cupy  # noqa: the only cupy import in minillm
    except Exception as exc:  # ImportError, or a broken CUDA install raising anything
        _cupy_error = f"CuPy is not installed or failed to import ({type(exc).__name__}: {exc}); " \
                      "install it with `pip install -e \".[gpu]\"` (cupy-cuda12x) or the wheel for your CUDA"
        return None
    try:
        # `import cupy` succeeds on machines without a GPU: ask the driver.
        available = cupy.cuda.is_available()
    except Exception as exc:
        available, _cupy_error = False, f"CuPy imported but CUDA failed: {type(exc).__name__}: {exc}"
    if not available:
        _cupy_error = _cupy_error or "CuPy is installed but no CUDA device is available"
        return None
    _cupy = cupy
    return cupy


def is_cuda_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    return _load_cupy() is not None


def cuda_unavailable_reason() -> str | None:
    """Why ``"cuda"`` cannot be used here, or None when it can."""
    return None if is_cuda_available() else _cupy_error


def normalize_device(device) -> str:
    """Turn ``None``/``"cpu"``/``"cuda"``/``"cuda:1"`` into ``"cpu"`` or ``"cuda:N"``.

    ``None`` means the default device. Asking for CUDA where there is none raises DeviceError
    with the reason (CuPy missing, no device, or the original import error).
    """
    if device is None:
        return default_device()
    if not isinstance(device, str):
        device = str(device)
    device = device.strip().lower()
    if device == "cpu":
        return "cpu"
    if device == "cuda" or device.startswith("cuda:"):
        cupy = _load_cupy()
        if cupy is None:
            raise DeviceError(f"device {device!r} requested but CUDA is unavailable: {_cupy_error}")
        index = int(device.split(":", 1)[1]) if ":" in device else cupy.cuda.runtime.getDevice()
        count = cupy.cuda.runtime.getDeviceCount()
        if not 0 <= index < count:
            raise DeviceError(f"device {device!r} requested but only {count} CUDA device(s) exist")
        return f"cuda:{index}"
    raise DeviceError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N'")


def set_default_device(device) -> None:
    """Make ``device`` the default for new tensors (overrides ``MINILLM_DEVICE``)."""
    global _default_device
    _default_device = None if device is None else normalize_device(device)


def default_device() -> str:
    """The device new tensors go to: ``set_default_device``, else ``$MINILLM_DEVICE``, else cpu."""
    if _default_device is not None:
        return _default_device
    env = os.environ.get("MINILLM_DEVICE", "").strip()
    return normalize_device(env) if env else "cpu"


def _data(x):
    """The raw array of a Tensor, or x itself (arrays have a ``.data`` too, hence the flag)."""
    return x.data if getattr(x, "_is_tensor", False) else x


def is_cupy_array(array) -> bool:
    return _cupy is not None and isinstance(array, _cupy.ndarray)


def get_array_module(*arrays_or_tensors):
    """``numpy`` or ``cupy``, whichever holds the given arrays/tensors (numpy if none is on GPU)."""
    if _cupy is not None:
        for x in arrays_or_tensors:
            if isinstance(_data(x), _cupy.ndarray):
                return _cupy
    return np


def xp_of_device(device: str):
    """The array module that holds arrays of ``device`` (already normalized)."""
    return np if device == "cpu" else _load_cupy()


def device_of(array) -> str:
    """``"cpu"`` for NumPy arrays (and scalars), ``"cuda:N"`` for CuPy arrays."""
    if _cupy is not None and isinstance(array, _cupy.ndarray):
        return f"cuda:{array.device.id}"
    return "cpu"


def to_numpy(x) -> np.ndarray:
    """A NumPy copy/view of a Tensor or array, wherever it lives."""
    array = _data(x)
    if _cupy is not None and isinstance(array, _cupy.ndarray):
        return _cupy.asnumpy(array)
    return np.asarray(array)


def to_device(array, device: str):
    """Move a raw array to ``device`` (normalized); returns the same array if already there."""
    if device == "cpu":
        return to_numpy(array)
    cupy = _load_cupy()
    if cupy is None:
        raise DeviceError(f"cannot move an array to {device!r}: {_cupy_error}")
    with cupy.cuda.Device(int(device.split(":")[1])):
        return cupy.asarray(array)


def device_context(device: str):
    """A context manager that makes ``device`` current for CuPy allocations (no-op on CPU)."""
    if device == "cpu":
        import contextlib
        return contextlib.nullcontext()
    return _load_cupy().cuda.Device(int(device.split(":")[1]))


# ---------------------------------------------------------------- random numbers
# One generator per device: dropout masks, initial weights and sampling all draw from these,
# so `manual_seed` makes a run reproducible on either backend.
_generators: dict = {}
_seed = None


def manual_seed(seed: int) -> None:
    """Seed every generator minillm uses (NumPy's, and CuPy's when it is available)."""
    global _seed
    _seed = int(seed)
    _generators.clear()
    np.random.seed(_seed % 2**32)
    if _cupy is not None:
        _cupy.random.seed(_seed)


def generator(device: str = "cpu"):
    """The random Generator of ``device`` (``numpy.random.Generator`` or CuPy's)."""
    gen = _generators.get(device)
    if gen is None:
        seed = _seed if _seed is not None else np.random.SeedSequence().entropy % 2**63
        if device == "cpu":
            gen = np.random.default_rng(seed)
        else:
            cupy = _load_cupy()
            with device_context(device):
                gen = cupy.random.default_rng(seed)
        _generators[device] = gen
    return gen


def get_rng_state() -> dict:
    """The state of every generator, as JSON-friendly data (for checkpoints)."""
    state = {"seed": _seed, "numpy_global": None, "generators": {}}
    for device, gen in _generators.items():
        if device == "cpu":
            state["generators"][device] = gen.bit_generator.state
    return state


def set_rng_state(state: dict) -> None:
    """Restore what ``get_rng_state`` returned (CPU generators; GPU ones are reseeded)."""
    global _seed
    _seed = state.get("seed")
    _generators.clear()
    for device, bg_state in state.get("generators", {}).items():
        gen = generator(device)
        gen.bit_generator.state = bg_state


# ---------------------------------------------------------------- CPU threads for elementwise work
# NumPy runs a ufunc on one core; BLAS and PyTorch use all of them. NumPy releases the GIL inside
# ufuncs, so a fused kernel over a large array can split its rows between threads.
_num_threads = None
_pool = None


def num_threads() -> int:
    """Threads for fused elementwise kernels on CPU: $MINILLM_NUM_THREADS, else the cores (≤ 4)."""
    global _num_threads
    if _num_threads is None:
        env = os.environ.get("MINILLM_NUM_THREADS", "").strip()
        _num_threads = max(1, int(env)) if env else max(1, min(4, len(os.sched_getaffinity(0))
                                                              if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))
    return _num_threads


def parallel_rows(kernel, n_rows: int, n_elements: int, min_elements: int = 1 << 17) -> None:
    """Call ``kernel(rows)`` on slices that cover ``range(n_rows)``, in parallel threads when the
    work is large enough (``n_elements`` ≥ ``min_elements``) to pay for the hand-off."""
    global _pool
    threads = num_threads()
    if threads == 1 or n_rows < 2 or n_elements < min_elements:
        kernel(slice(0, n_rows))
        return
    if _pool is None:
        from concurrent.futures import ThreadPoolExecutor
        _pool = ThreadPoolExecutor(threads - 1, thread_name_prefix="minillm")
    bounds = [n_rows * i // threads for i in range(threads + 1)]
    futures = [_pool.submit(kernel, slice(a, b)) for a, b in zip(bounds[1:-1], bounds[2:])]
    kernel(slice(bounds[0], bounds[1]))
    for f in futures:
        f.result()


def scatter_add(out, index, values) -> None:
    """``out[index] += values`` with repeated indices adding up (unbuffered), on either backend.

    On CuPy this is an atomic add: float16 is not supported there, and float64 atomics need a
    GPU of compute capability 6.0 or newer.
    """
    if _cupy is not None and isinstance(out, _cupy.ndarray):
        _cupy.add.at(out, index, values)
    else:
        np.add.at(out, index, values)


def erf(x):
    """The error function, elementwise, on either backend.

    NumPy has no ``erf``: SciPy's ufunc is used when SciPy is installed, otherwise Python's
    ``math.erf`` element by element (exact but slow; the tanh-approximate GELU avoids it).
    """
    if _cupy is not None and isinstance(x, _cupy.ndarray):
        import cupyx.scipy.special as cupy_special  # noqa: part of CuPy
        return cupy_special.erf(x)
    try:
        from scipy.special import erf as scipy_erf
    except ImportError:
        import math
        return np.frompyfunc(math.erf, 1, 1)(x).astype(x.dtype)
    return scipy_erf(x)
