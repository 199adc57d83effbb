"""Threads for the CPU kernels.

NumPy runs a ufunc on one core, while BLAS (and PyTorch) use all of them. NumPy releases the GIL
inside ufuncs, so a kernel over a large array can split its rows between threads.

A ``fork()`` copies the pool object into the child but not its threads: a child (a
``multiprocessing`` worker, a data-loader process) that handed work to the inherited pool would
wait forever. ``os.register_at_fork`` drops the pool in the child, which makes its own on first
use.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

# Below this many elements a kernel runs in the calling thread: handing ~100k floats to another
# thread costs about what computing them does.
MIN_ELEMENTS_PER_THREAD_POOL = 1 << 17
MAX_DEFAULT_THREADS = 4

_num_threads = None
_pool = None


def num_threads() -> int:
    """Threads for the CPU kernels: $MINILLM_NUM_THREADS, else the usable cores (at most 4)."""
    global _num_threads
    if _num_threads is None:
        env = os.environ.get("MINILLM_NUM_THREADS", "").strip()
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        _num_threads = max(1, int(env)) if env else max(1, min(MAX_DEFAULT_THREADS, cores))
    return _num_threads


def _forget_pool_after_fork() -> None:
    global _pool
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def parallel_rows(kernel, n_rows: int, n_elements: int, min_elements: int = MIN_ELEMENTS_PER_THREAD_POOL) -> None:
    """Call ``kernel(rows)`` on slices that cover ``range(n_rows)``, in parallel threads when the
    work is large enough (``n_elements`` ≥ ``min_elements``) to pay for the hand-off."""
    global _pool
    threads = num_threads()
    if threads == 1 or n_rows < 2 or n_elements < min_elements:
        kernel(slice(0, n_rows))
        return
    if _pool is None:
        _pool = ThreadPoolExecutor(threads - 1, thread_name_prefix="minillm")
    bounds = [n_rows * i // threads for i in range(threads + 1)]
    futures = [_pool.submit(kernel, slice(a, b)) for a, b in zip(bounds[1:-1], bounds[2:])]
    kernel(slice(bounds[0], bounds[1]))
    for f in futures:
        f.result()


def over_rows(kernel, array) -> None:
    """Run ``kernel(rows)`` over slices of ``array``'s first axis: threaded for big NumPy arrays,
    in one call for CuPy arrays (one GPU kernel launch beats many)."""
    import numpy as np
    if isinstance(array, np.ndarray) and array.ndim >= 2:
        parallel_rows(kernel, array.shape[0], array.size)
    else:
        kernel(slice(None))
