"""Checkpoints: one ``.npz`` file, no pickle, written atomically.

Layout of a checkpoint file (a plain NumPy ``.npz`` zip archive)::

    __minillm__            uint8 array: UTF-8 JSON metadata (see below)
    model/<name>           one array per parameter/buffer (``blocks.0.attn.in_proj.weight``...)
    optim/<path>           the optimizer's arrays (``optim/state/0/exp_avg``...)
    extra/<path>           arrays found anywhere else in the metadata (rarely any)

The JSON metadata holds ``format`` ("minillm-checkpoint") and ``version``, the optimizer's
non-array state (step counts, hyper-parameters; arrays are replaced by references to their
``optim/...`` entries), and whatever the caller passes: the trainer stores the iteration, the
best validation loss, the model config, the train config, the tokenizer (``to_dict()``) and the
random states (the batch Generator's ``bit_generator.state`` and ``backend.get_rng_state()``).

Everything lives in one file, so the arrays and the metadata can never disagree, and the file is
read with ``allow_pickle=False``: loading a checkpoint never runs code.

Writing is atomic: the archive goes to a temporary file in the same directory, is flushed and
fsync'ed, and only then ``os.replace``-d over the destination. A crash (or Ctrl-C, or a full disk)
at any moment leaves either the previous checkpoint or the new one, never a half-written file.
"""
from __future__ import annotations

import json
import math
import os
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import backend
from .fileio import atomic_write

__all__ = ["FORMAT", "VERSION", "CheckpointError", "Checkpoint", "save_checkpoint", "load_checkpoint",
           "encode_tree", "decode_tree"]

FORMAT = "minillm-checkpoint"
VERSION = 1
META_KEY = "__minillm__"
_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"


class CheckpointError(ValueError):
    """A file that is not a readable minillm checkpoint (the message names the file and why)."""


# ------------------------------------------------------------------ JSON <-> tree with arrays
def _is_array(x) -> bool:
    return isinstance(x, np.ndarray) or backend.is_cupy_array(x)


def encode_tree(obj, prefix: str, arrays: dict):
    """``obj`` as JSON-ready data; every array (NumPy, CuPy, NumPy scalar) is moved into
    ``arrays`` under ``prefix/<path>`` and replaced by a reference ``{"__array__": key}``.

    Dicts with non-string keys (an optimizer's ``{0: {...}}``) and tuples are tagged so that
    ``decode_tree`` gives back the same types.
    """
    if _is_array(obj) or isinstance(obj, np.generic):
        key = prefix
        if key in arrays:
            raise ValueError(f"checkpoint: two arrays map to the key {key!r}")
        arrays[key] = backend.to_numpy(obj) if _is_array(obj) else np.asarray(obj)
        ref = {"__array__": key}
        if isinstance(obj, np.generic):
            ref["scalar"] = True
        return ref
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and not any(k.startswith("__") for k in obj):
            return {k: encode_tree(v, f"{prefix}/{k}", arrays) for k, v in obj.items()}
        items = []
        for k, v in obj.items():
            if isinstance(k, (np.integer, np.floating, np.bool_)):
                k = k.item()
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                raise TypeError(f"checkpoint: cannot store a dict key of type {type(k).__name__} ({k!r})")
            items.append([k, encode_tree(v, f"{prefix}/{k}", arrays)])
        return {"__dict__": items}
    if isinstance(obj, tuple):
        return {"__tuple__": [encode_tree(v, f"{prefix}/{i}", arrays) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [encode_tree(v, f"{prefix}/{i}", arrays) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj  # json writes inf/nan as Infinity/NaN and reads them back
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"checkpoint: cannot store a value of type {type(obj).__name__} at {prefix!r}")


def decode_tree(obj, arrays):
    """The inverse of ``encode_tree`` (``arrays`` maps keys to NumPy arrays)."""
    if isinstance(obj, dict):
        if "__array__" in obj:
            array = arrays[obj["__array__"]]
            return array[()] if obj.get("scalar") else array
        if "__dict__" in obj:
            return {k: decode_tree(v, arrays) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(decode_tree(v, arrays) for v in obj["__tuple__"])
        return {k: decode_tree(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode_tree(v, arrays) for v in obj]
    return obj


def _array_refs(obj):
    """Every array key referenced in an encoded tree."""
    if isinstance(obj, dict):
        if "__array__" in obj:
            yield obj["__array__"]
            return
        values = [v for _, v in obj["__dict__"]] if "__dict__" in obj else \
            obj["__tuple__"] if "__tuple__" in obj else obj.values()
        for v in values:
            yield from _array_refs(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _array_refs(v)


# ------------------------------------------------------------------ the checkpoint object
@dataclass
class Checkpoint:
    """What ``load_checkpoint`` returns: the arrays on the CPU plus the metadata."""
    path: Path
    model_state: "OrderedDict[str, np.ndarray]"
    optimizer_state: object = None
    meta: dict = field(default_factory=dict)

    def __getitem__(self, key):
        return self.meta[key]

    def get(self, key, default=None):
        return self.meta.get(key, default)

    @property
    def iter_num(self) -> int:
        return int(self.meta.get("iter_num", 0))

    @property
    def best_val_loss(self) -> float:
        value = self.meta.get("best_val_loss")
        return math.inf if value is None else float(value)

    @property
    def model_config(self) -> dict:
        return self.meta.get("model_config") or {}

    @property
    def train_config(self) -> dict:
        return self.meta.get("train_config") or {}

    @property
    def tokenizer(self) -> dict | None:
        return self.meta.get("tokenizer")


# ------------------------------------------------------------------ writing
def save_checkpoint(path, model=None, optimizer=None, *, model_state=None, optimizer_state=None,
                    **metadata) -> Path:
    """Write a checkpoint to ``path`` atomically and return the path.

    ``model`` (a Module; or ``model_state``, a mapping name -> array/Tensor) gives the
    ``model/<name>`` arrays; ``optimizer`` (anything with ``state_dict()``; or
    ``optimizer_state``) the ``optim/...`` arrays and metadata. Every other keyword is stored in
    the JSON metadata (arrays found there go to ``extra/...``): JSON types, tuples, NumPy arrays
    and scalars.

    The previous file at ``path`` stays untouched until the new one is completely on disk.
    """
    path = Path(os.fspath(path))
    if model is not None:
        model_state = model.state_dict()
    if optimizer is not None:
        optimizer_state = optimizer.state_dict()
    arrays: dict = {}
    for name, value in (model_state or {}).items():
        value = value.data if getattr(value, "_is_tensor", False) else value
        arrays[f"model/{name}"] = backend.to_numpy(value)
    meta = {"format": FORMAT, "version": VERSION,
            "model_keys": list((model_state or {}).keys())}
    meta["optimizer"] = None if optimizer_state is None else encode_tree(optimizer_state, "optim", arrays)
    for key, value in metadata.items():
        if key in meta:
            raise ValueError(f"save_checkpoint: {key!r} is a reserved metadata name")
        meta[key] = encode_tree(value, f"extra/{key}", arrays)
    arrays[META_KEY] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)

    with atomic_write(path) as f:
        np.savez(f, **arrays)
    return path


# ------------------------------------------------------------------ reading
def _not_a_checkpoint(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"cannot load checkpoint {str(path)!r}: {why}")


def load_checkpoint(path) -> Checkpoint:
    """Read a checkpoint written by ``save_checkpoint`` (arrays come back as NumPy arrays).

    Raises FileNotFoundError for a missing file and CheckpointError (a ValueError) naming the
    file for anything else: not a zip/npz archive, a truncated or corrupted archive, an npz
    without minillm metadata, an unknown format or a newer version.
    """
    path = Path(os.fspath(path))
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {str(path)!r}")
    if path.is_dir():
        raise _not_a_checkpoint(path, "it is a directory")
    with open(path, "rb") as f:
        head = f.read(4)
    if head not in (_ZIP_MAGIC, _EMPTY_ZIP_MAGIC):
        kind = "an empty file" if not head else "not an .npz (zip) archive"
        raise _not_a_checkpoint(path, f"it is {kind}; minillm checkpoints are .npz files written "
                                      "by `minillm train` (or minillm.checkpoint.save_checkpoint)")
    if not zipfile.is_zipfile(path):
        raise _not_a_checkpoint(path, "the zip archive is truncated or corrupted (no central directory); "
                                      "the file was probably cut short by a copy or a full disk")
    try:
        arrays = _read_members(path)
    except CheckpointError:
        raise
    except MemoryError:
        raise _not_a_checkpoint(path, "an array header asks for more memory than there is; the file is "
                                      "corrupted") from None
    except Exception as exc:  # zipfile/numpy raise many types for damaged bytes; all mean the same here
        raise _not_a_checkpoint(path, f"the archive is corrupted or truncated ({type(exc).__name__}: {exc})") \
            from None
    if META_KEY not in arrays:
        names = sorted(arrays)
        raise _not_a_checkpoint(path, f"it is an .npz archive but has no minillm metadata "
                                      f"(no {META_KEY!r} entry; it holds {len(names)} arrays, e.g. {names[:3]})")
    raw = arrays.pop(META_KEY)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise _not_a_checkpoint(path, f"its metadata entry is a {raw.dtype} array of shape {raw.shape}, "
                                      "not UTF-8 bytes")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _not_a_checkpoint(path, f"its metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        fmt = meta.get("format") if isinstance(meta, dict) else None
        raise _not_a_checkpoint(path, f"unknown format {fmt!r} (expected {FORMAT!r})")
    version = meta.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise _not_a_checkpoint(path, f"format version {version!r} is not supported by this minillm "
                                      f"(it reads versions <= {VERSION}); upgrade minillm")
    try:
        return _build(path, meta, arrays)
    except CheckpointError:
        raise
    except Exception as exc:  # metadata of the right format but the wrong shape (a hand-made file)
        raise _not_a_checkpoint(path, f"its metadata is malformed ({type(exc).__name__}: {exc})") from None


def _read_members(path: Path) -> dict:
    """Every member of the archive as a NumPy array, strictly: each member is read to its end
    (so the zip CRC-32 of every byte is checked), must be a complete ``.npy`` file with nothing
    after the array data, and must not need pickle."""
    arrays = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            name = info.filename
            if not name.endswith(".npy"):
                raise _not_a_checkpoint(path, f"member {name!r} is not a .npy array")
            key = name[:-len(".npy")]
            if key in arrays:
                raise _not_a_checkpoint(path, f"member {name!r} appears twice")
            data = zf.read(info)                      # raises BadZipFile on a CRC mismatch
            arrays[key] = _parse_npy(path, name, data)
    return arrays


def _parse_npy(path: Path, name: str, data: bytes) -> np.ndarray:
    import io
    from numpy.lib import format as npy_format
    if not data.startswith(b"\x93NUMPY"):
        raise _not_a_checkpoint(path, f"member {name!r} does not hold .npy bytes")
    f = io.BytesIO(data)
    major, minor = npy_format.read_magic(f)
    read_header = npy_format.read_array_header_1_0 if major == 1 else npy_format.read_array_header_2_0
    shape, _, dtype = read_header(f)
    if dtype.hasobject:
        raise _not_a_checkpoint(path, f"member {name!r} holds Python objects (pickle), which are never loaded")
    expected = f.tell() + math.prod(shape) * dtype.itemsize
    if expected != len(data):
        raise _not_a_checkpoint(path, f"member {name!r} has {len(data)} bytes but its .npy header describes "
                                      f"{expected}; the file is corrupted")
    f.seek(0)
    return npy_format.read_array(f, allow_pickle=False)


def _build(path: Path, meta: dict, arrays: dict) -> "Checkpoint":
    keys = meta.get("model_keys") or [k[len("model/"):] for k in arrays if k.startswith("model/")]
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise _not_a_checkpoint(path, "its metadata lists the model arrays in an unknown form")
    missing = [k for k in keys if f"model/{k}" not in arrays]
    missing += [k for k in _array_refs(meta) if k not in arrays]
    if missing:
        raise _not_a_checkpoint(path, f"arrays listed in the metadata are missing: {missing[:5]}")
    model_state = OrderedDict((k, arrays[f"model/{k}"]) for k in keys)
    optimizer_state = decode_tree(meta.pop("optimizer", None), arrays)
    meta = {k: (v if k in ("format", "version", "model_keys") else decode_tree(v, arrays)) for k, v in meta.items()}
    return Checkpoint(path=path, model_state=model_state, optimizer_state=optimizer_state, meta=meta)
