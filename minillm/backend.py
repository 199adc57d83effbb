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
# so `manual_seed` makes a run reproducible on either backend. Each device's generator is seeded
# from (seed, device index, key), so `cuda:0` and `cuda:1` draw different streams.
#
# A CPU generator's state can be saved and restored exactly. CuPy's cannot be read out, so a GPU
# generator is instead *re-keyed* whenever its state is taken (`get_rng_state`, i.e. at every
# checkpoint): it is replaced by a fresh generator seeded from (seed, device, key + 1), and the key
# is what the checkpoint stores. A resumed run rebuilds the same generator from the key, and the
# uninterrupted run re-keyed at the same moment, so both draw the same masks afterwards.
_generators: dict = {}
_gpu_keys: dict = {}   # device -> how many times its generator was re-keyed
_seed = None


def manual_seed(seed: int) -> None:
    """Seed every generator minillm uses (NumPy's global one too, and CuPy's when available)."""
    global _seed
    _seed = int(seed)
    _generators.clear()
    _gpu_keys.clear()
    np.random.seed(_seed % 2**32)
    if _cupy is not None:
        _cupy.random.seed(_seed)


def _device_seed(device: str, key: int = 0):
    base = _seed if _seed is not None else np.random.SeedSequence().entropy % 2**63
    if device == "cpu":
        return base
    return np.random.SeedSequence([base, 1 + int(device.split(":")[1]), key]).generate_state(2)


def generator(device: str = "cpu"):
    """The random Generator of ``device`` (``numpy.random.Generator`` or CuPy's)."""
    gen = _generators.get(device)
    if gen is None:
        if device == "cpu":
            gen = np.random.default_rng(_device_seed(device))
        else:
            cupy = _load_cupy()
            seed = int(_device_seed(device, _gpu_keys.get(device, 0))[0])
            with device_context(device):
                gen = cupy.random.default_rng(seed)
        _generators[device] = gen
    return gen


def get_rng_state() -> dict:
    """The state of every generator, as JSON-friendly data (for checkpoints). GPU generators are
    re-keyed (see above), so their key is their state."""
    state = {"seed": _seed, "generators": {}, "gpu_keys": {}}
    for device, gen in list(_generators.items()):
        if device == "cpu":
            state["generators"][device] = gen.bit_generator.state
        else:
            _gpu_keys[device] = _gpu_keys.get(device, 0) + 1
            del _generators[device]          # rebuilt from the new key on its next draw
    state["gpu_keys"] = dict(_gpu_keys)
    return state


def set_rng_state(state: dict) -> None:
    """Restore what ``get_rng_state`` returned."""
    global _seed
    _seed = state.get("seed")
    _generators.clear()
    _gpu_keys.clear()
    _gpu_keys.update(state.get("gpu_keys", {}))
    for device, bg_state in state.get("generators", {}).items():
        generator(device).bit_generator.state = bg_state


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
    """The error function, elementwise, on either backend: SciPy's ufunc on the CPU (SciPy is a
    dependency for this: NumPy has none, and a Python-level loop over ``math.erf`` is ~9× slower),
    CuPy's on the GPU. Keeps float32 as float32."""
    if _cupy is not None and isinstance(x, _cupy.ndarray):
        import cupyx.scipy.special as cupy_special  # noqa: part of CuPy
        return cupy_special.erf(x)
    from scipy.special import erf as scipy_erf
    return scipy_erf(x)


def device_count() -> int:
    """The number of CUDA devices CuPy sees (0 without CuPy or a GPU)."""
    cupy = _load_cupy()
    return 0 if cupy is None else int(cupy.cuda.runtime.getDeviceCount())


def nccl():
    """CuPy's NCCL bindings, ``cupy.cuda.nccl`` (``NcclCommunicator``, ``get_unique_id``, the
    ``NCCL_*`` constants), for ``minillm.distributed``; DeviceError with the reason when CuPy, a
    GPU or CuPy's NCCL support is missing. Kept here so that no other file imports CuPy."""
    cupy = _load_cupy()
    if cupy is None:
        raise DeviceError(f"NCCL needs CuPy and a GPU: {_cupy_error}")
    try:
        from cupy.cuda import nccl as cupy_nccl  # noqa: part of CuPy
    except Exception as exc:
        raise DeviceError(f"CuPy has no NCCL support here ({type(exc).__name__}: {exc}); install NCCL "
                          f"(pip install nvidia-nccl-cu12) or use the MPI backend") from None
    if not getattr(cupy_nccl, "available", True):
        raise DeviceError("CuPy was built without NCCL; install NCCL (pip install nvidia-nccl-cu12) or use MPI")
    return cupy_nccl


# ---------------------------------------------------------------------------- host memory
# A training step allocates and frees the same large arrays (activations, gradients) every step.
# glibc serves an allocation above its mmap threshold with a fresh mmap and returns it to the OS on
# free, so every step pays a page fault per 4 KiB of every such array: 2,500–3,700 faults per step
# at the CPU preset, 5–9 ms of system time (benchmarks/page_faults.py); PyTorch's process takes
# ~570 at the same step. Raising the mmap threshold to glibc's maximum (32 MiB) and the trim threshold
# keeps freed blocks in the heap for the next step; the cost is that the process keeps its peak
# heap rather than shrinking between steps. The trim threshold is 1 GiB: at 6/6/384, block 256, a
# step's arrays are ~20 MiB each and its heap some hundreds of MiB, and with a 64 MiB threshold glibc
# still gave the top of the heap back after each step (5,900 faults and 45 ms of system time per
# step, benchmarks/page_faults.py --config gpt6). MINILLM_KEEP_FREED_MEMORY=0 leaves malloc as it is.
GLIBC_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
GLIBC_TRIM_THRESHOLD = 1024 * 1024 * 1024
_malloc_tuned = None


def keep_freed_memory_for_reuse() -> bool:
    """Ask glibc to reuse freed large blocks instead of unmapping them (Linux/glibc only; called
    once at import). Returns whether the setting took effect."""
    global _malloc_tuned
    if _malloc_tuned is not None:
        return _malloc_tuned
    _malloc_tuned = False
    if os.environ.get("MINILLM_KEEP_FREED_MEMORY", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    try:
        import ctypes
        import platform
        if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
            return False
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3   # <malloc.h>
        _malloc_tuned = bool(libc.mallopt(m_mmap_threshold, GLIBC_MMAP_THRESHOLD_MAX)
                             and libc.mallopt(m_trim_threshold, GLIBC_TRIM_THRESHOLD))
    except (OSError, AttributeError):
        pass
    return _malloc_tuned


keep_freed_memory_for_reuse()
