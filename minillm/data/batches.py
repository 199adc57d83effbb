"""Token arrays on disk (a cache keyed by text + tokenizer) and nanoGPT-style batches."""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Iterator, Tuple, Union

import numpy as np

from ..fileio import atomic_write

from .tokenizers import Tokenizer

__all__ = ["default_cache_dir", "cache_key", "encode_cached", "get_batch", "sequential_batches"]

_CACHE_FORMAT = 1  # bump to invalidate every cached array


def default_cache_dir() -> Path:
    """Where :func:`encode_cached` keeps its arrays when no ``cache_dir`` is given.

    ``$MINILLM_CACHE_DIR`` if set; otherwise ``data/cache`` in the source checkout
    (the repository that holds this package, when installed with ``pip install -e``);
    otherwise ``~/.cache/minillm``.
    """
    env = os.environ.get("MINILLM_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parents[2]
    if (repo / "data").is_dir() and ((repo / "pyproject.toml").exists() or (repo / "setup.cfg").exists()):
        return repo / "data" / "cache"
    return Path.home() / ".cache" / "minillm"


def cache_key(text: str, tokenizer: Tokenizer, allow_special: bool = False) -> str:
    """sha256 over (cache format, ``allow_special``, tokenizer JSON, text): any change
    gives a new key."""
    h = hashlib.sha256()
    h.update(f"minillm-token-cache-v{_CACHE_FORMAT}:{int(bool(allow_special))}\0".encode())
    h.update(tokenizer.to_json().encode("utf-8"))
    h.update(b"\0")
    h.update(text.encode("utf-8", errors="surrogatepass"))
    return h.hexdigest()


def encode_cached(text: str, tokenizer: Tokenizer,
                  cache_dir: Union[str, os.PathLike, None] = None,
                  allow_special: bool = False) -> np.ndarray:
    """``tokenizer.encode_array(text, allow_special)``, cached on disk as ``.npy``.

    The file name holds a hash of the text and of the tokenizer's JSON, so the
    second run with the same text and tokenizer loads the array at once, and a
    different text or tokenizer never hits a stale file.  Arrays are read with
    ``allow_pickle=False`` and written atomically (temporary file + ``os.replace``),
    so an interrupted run never leaves a truncated cache entry; an unreadable entry
    is re-encoded.  ``cache_dir``: explicit argument, else ``$MINILLM_CACHE_DIR``,
    else :func:`default_cache_dir`.  If the directory cannot be written the array
    is still returned (with a warning).
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    cache = Path(os.fspath(cache_dir)).expanduser() if cache_dir is not None else default_cache_dir()
    key = cache_key(text, tokenizer, allow_special)
    path = cache / f"{tokenizer.type}-{key[:24]}.npy"
    if path.exists():
        try:
            arr = np.load(path, allow_pickle=False)
            if arr.ndim == 1 and np.issubdtype(arr.dtype, np.integer):
                return arr
        except (OSError, ValueError, EOFError):
            pass
        warnings.warn(f"ignoring unreadable token cache {str(path)!r}; re-encoding", RuntimeWarning)
    arr = tokenizer.encode_array(text, allow_special=allow_special)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as f:
            np.save(f, arr, allow_pickle=False)
    except OSError as e:
        warnings.warn(f"could not write token cache in {str(cache)!r}: {e}", RuntimeWarning)
    return arr


def _check_data(data, block_size: int) -> np.ndarray:
    data = np.asarray(data)
    if data.ndim != 1:
        raise ValueError(f"data must be a 1-D array of token ids, got shape {data.shape}")
    if block_size < 1:
        raise ValueError(f"block_size must be positive, got {block_size}")
    if len(data) <= block_size:
        raise ValueError(
            f"file too short for one block of {block_size} tokens: the data has {len(data)} "
            f"tokens and a batch needs at least {block_size + 1} (inputs plus the shifted target); "
            f"use a longer text or a smaller block_size")
    return data


def get_batch(data, batch_size: int, block_size: int,
              rng: Union[np.random.Generator, int, None]) -> Tuple[np.ndarray, np.ndarray]:
    """A random batch as nanoGPT's ``get_batch``: ``B`` offsets ``i`` drawn uniformly
    from ``[0, len(data) - block_size)``, ``x = data[i:i+T]``, ``y = data[i+1:i+T+1]``.

    Returns two ``int64`` arrays of shape ``(batch_size, block_size)``.  ``rng`` is a
    ``numpy.random.Generator`` (an int seeds a new one), so batches are reproducible.
    """
    data = _check_data(data, block_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    ix = rng.integers(0, len(data) - block_size, size=batch_size)
    idx = ix[:, None] + np.arange(block_size)
    x = data[idx].astype(np.int64)
    y = data[idx + 1].astype(np.int64)
    return x, y


def sequential_batches(data, batch_size: int, block_size: int,
                       drop_last: bool = False) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Non-overlapping ``(x, y)`` windows covering ``data`` in order, ``batch_size`` at a
    time (the last batch may be smaller unless ``drop_last``): a deterministic pass for
    evaluation.  Every token except the first is a target exactly once, up to the final
    partial window, which is dropped."""
    data = _check_data(data, block_size)
    n_windows = (len(data) - 1) // block_size
    starts = np.arange(n_windows) * block_size
    for b in range(0, n_windows, batch_size):
        s = starts[b:b + batch_size]
        if drop_last and len(s) < batch_size:
            break
        idx = s[:, None] + np.arange(block_size)
        yield data[idx].astype(np.int64), data[idx + 1].astype(np.int64)
