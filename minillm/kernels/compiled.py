"""Compiled CPU loops for the fused kernels (numba): the optional ``[fast]`` path.

NumPy computes an op like layer norm as a chain of whole-array passes (mean, subtract, square,
mean, scale, multiply, add), each reading and writing the whole array. PyTorch runs one C++ loop
per row instead. This module is that one loop per row, written in Python and compiled by numba
(``pip install "minillm[fast]"``). Which ops it covers, and why only those:

* layer norm, forward and backward, float32 and float64: one pass per row for the statistics
  and one for the output, the row staying in cache.
* GELU (tanh form), float32: one pass forward, one backward. numba's ``exp``/``tanh`` are not
  vectorized (the PyPI llvmlite has no SVML), and NumPy's float32 ``exp`` is ~10× faster than
  a scalar loop of them, so tanh is evaluated as a rational function (Eigen's float32
  ``generic_fast_tanh_float``, a 13/6 odd/even polynomial pair, accurate to a few float32 ulp)
  that the compiler vectorizes. float64 and the exact (erf) form stay on NumPy.
* the softmax inside causal attention, float32, forward and backward: one pass per query row over
  the keys it may see (the masked half of the score matrix is never read), with Cephes' float32
  ``exp`` written so that it vectorizes. The products around it stay on BLAS; other masks (padding)
  and float64 stay on NumPy.

* the Adam/AdamW update (without amsgrad), float32 and float64: one pass over θ, g, m and v with
  the CUDA kernel's arithmetic (``adam.py``), where NumPy's in-place form makes about ten.

Everything else (the products, cross-entropy) stays on NumPy/BLAS. The loops run
without the GIL (``nogil=True``) and are split over rows by ``threads.py``'s pool, the same pool
the NumPy path uses, so there is no second threading runtime (numba's own ``parallel=True``
layers are not safe across ``fork``, nor when two Python threads call a kernel at once).

The switch: ``MINILLM_COMPILED=0`` in the environment, or ``compiled.set_enabled(False)`` /
``with compiled.enabled_if(False):``, runs the NumPy passes even where numba is installed. The
tests run every kernel both ways and require the same results (``tests/test_compiled.py``).
The loops themselves are in ``numba_loops.py``.
numba compiles a kernel the first time it meets a dtype and layout, and caches the machine code
on disk (``cache=True``), so later processes start without compiling.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import warnings

import numpy as np

_available = importlib.util.find_spec("numba") is not None   # the [fast] extra; imported on first use
_enabled = _available and os.environ.get("MINILLM_COMPILED", "1").strip().lower() not in (
    "0", "false", "no", "off")


def is_available() -> bool:
    """Whether numba is installed (the ``[fast]`` extra)."""
    return _available


def is_enabled() -> bool:
    """Whether the fused kernels use the compiled loops where they have one."""
    return _enabled


def set_enabled(flag: bool) -> None:
    """Use the compiled loops (True; needs numba) or NumPy's passes (False)."""
    global _enabled
    if flag and not _available:
        raise RuntimeError("compiled kernels need numba: pip install 'minillm[fast]'")
    _enabled = bool(flag)


@contextlib.contextmanager
def enabled_if(flag: bool):
    """``with enabled_if(False):`` runs the block on NumPy's passes."""
    previous = _enabled
    set_enabled(flag)
    try:
        yield
    finally:
        set_enabled(previous)


# Below this many elements an op keeps NumPy's passes: importing numba and loading its cached
# machine code costs ~1 s once per process, which a small model (a test, a lesson's toy) never
# earns back. The CPU preset's smallest compiled array, a layer norm input, has 98k elements.
MIN_ELEMENTS = 1 << 14


def usable(*arrays, dtypes=(np.float32, np.float64), elements=None) -> bool:
    """True if the compiled path is on, every array is a NumPy array of one of ``dtypes``, the op
    touches at least ``MIN_ELEMENTS`` elements (``elements``, by default the first array's size),
    and the loops load (see ``_load``)."""
    return (_enabled and (arrays[0].size if elements is None else elements) >= MIN_ELEMENTS
            and all(isinstance(a, np.ndarray) and a.dtype in dtypes for a in arrays)
            and _load() is not None)


_loops = None        # the numba_loops module, once imported
_load_error = None   # why it could not be, if it could not


def _load():
    """Import ``numba_loops`` on first use. numba can be installed and still fail to load (built
    for another NumPy, or no writable place for its cache): then warn once and run NumPy's passes
    for the rest of the process instead of failing the step."""
    global _loops, _load_error, _enabled
    if _loops is None and _load_error is None:
        try:
            _loops = importlib.import_module(__name__.rsplit(".", 1)[0] + ".numba_loops")
        except Exception as exc:   # noqa: BLE001 - any failure to load means "use NumPy"
            _load_error, _enabled = exc, False
            warnings.warn(f"minillm: numba is installed but its loops could not be loaded "
                          f"({type(exc).__name__}: {exc}); using NumPy's kernels instead "
                          f"(MINILLM_COMPILED=0 silences this)", RuntimeWarning, stacklevel=3)
    return _loops


def kernel(name):
    """The compiled loop ``name`` from ``numba_loops.py`` (imported on first use, so that importing
    minillm does not load numba and LLVM)."""
    return getattr(_load(), name)
