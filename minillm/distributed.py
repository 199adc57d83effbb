"""Data-parallel training over MPI (``mpi4py``) and, for CuPy arrays, NCCL (``cupy.cuda.nccl``).

    mpirun -n 2 minillm train --batch-size 12 ...      # 2 processes, 6 sequences each
    minillm train --batch-size 12 ...                  # the same run on one process

Every process (a *rank*) holds the whole model. Each step every rank computes the gradient of its
share of the batch, the gradients are averaged over ranks (an all-reduce) and every rank takes
the same optimizer step, so the parameters never diverge. Because the loss of a batch is a mean
over its sequences, the mean of the N shard gradients *is* the gradient of the whole batch
(for equal-sized shards with equal token counts, as in the causal objective):

    ∇ (1/B) Σ_{i<B} ℓ_i  =  (1/N) Σ_r  ∇ (1/(B/N)) Σ_{i ∈ shard r} ℓ_i

The names follow ``torch.distributed``: ``init_process_group``, ``get_rank``,
``get_world_size``, ``all_reduce``, ``broadcast``, ``barrier``.

World detection: a process started by ``mpirun``/``mpiexec`` (Open MPI's ``OMPI_COMM_WORLD_SIZE``
or the PMI variables of MPICH/Hydra and PMIx) imports ``mpi4py`` and joins ``COMM_WORLD``;
anything else is a world of one process, with no import of ``mpi4py`` and no change in
behaviour. ``MINILLM_DISTRIBUTED=0`` forces a single process.

Process groups (what moves the bytes):

* ``SingleProcessGroup`` — world size 1; every collective is the identity;
* ``MPIProcessGroup`` — NumPy arrays go through MPI directly (``Allreduce`` with
  ``MPI.IN_PLACE``). CuPy arrays go through MPI directly only when the MPI library is CUDA-aware
  (``MPI.Query_cuda_support()``); otherwise they are staged through a host copy (correct, but a
  device→host→device copy per bucket: use NCCL on GPUs);
* ``NCCLProcessGroup`` — CuPy arrays through NCCL (``cupy.cuda.nccl.NcclCommunicator``, reached
  through ``backend.nccl()``: ``backend.py`` stays the only file importing CuPy), on the current
  stream, no copy through the host; the NCCL id is broadcast over MPI, and host-side work
  (``all_gather_object``, ``barrier``, ``abort``) stays on MPI. One GPU per rank:
  ``cuda:{local_rank}``.

Gradients are averaged in *buckets* (``GradientReducer``): the gradients are copied into flat
buffers of about ``bucket_mb`` MB, one all-reduce per buffer, and copied back — one collective
per bucket instead of one per tensor, as PyTorch DDP does (Li et al., "PyTorch Distributed",
VLDB 2020, §3.2.3: small all-reduces are latency-bound; DDP's default bucket is 25 MB).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Iterable, List, Optional, Sequence

import numpy as np

from . import backend

__all__ = ["ProcessGroup", "SingleProcessGroup", "MPIProcessGroup", "NCCLProcessGroup", "DistributedError",
           "init_process_group", "get_process_group", "destroy_process_group", "is_initialized", "get_rank",
           "get_world_size", "get_local_rank", "is_main_process", "launched_by_mpi", "all_reduce", "broadcast",
           "barrier", "broadcast_parameters", "GradientReducer", "all_reduce_gradients", "average_scalars",
           "any_rank", "check_same_config", "shard_batch", "check_batch_split", "abort_on_error",
           "mpirun_command", "mpirun_available"]

#: PyTorch DDP's default bucket size (``bucket_cap_mb=25``)
DEFAULT_BUCKET_MB = 25.0

# environment variables set by MPI launchers: Open MPI, MPICH/Hydra (PMI), PMIx (Open MPI 5, Slurm)
_SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE")


class DistributedError(RuntimeError):
    """A data-parallel run cannot go on: mpi4py missing under mpirun, ranks with different
    settings, a collective on the wrong kind of array."""


def launched_by_mpi() -> Optional[int]:
    """The world size the MPI launcher announced in the environment, or None when this process
    was not started by ``mpirun``/``mpiexec`` (or ``MINILLM_DISTRIBUTED=0``)."""
    if os.environ.get("MINILLM_DISTRIBUTED", "").strip() == "0":
        return None
    for name in _SIZE_VARIABLES:
        value = os.environ.get(name)
        if value and value.strip().isdigit():
            return int(value)
    if "PMIX_RANK" in os.environ or "PMI_RANK" in os.environ:
        return 0      # launched, size unknown: ask MPI
    return None


# ====================================================================== process groups
class ProcessGroup:
    """The collectives of one world of ``world_size`` processes. ``rank`` is this process's index
    (0 … world_size−1), ``local_rank`` its index among the processes of its machine, ``device``
    the device its arrays live on (``"cpu"`` or ``"cuda:{local_rank}"``).

    ``all_reduce_(array)`` sums ``array`` over ranks in place (every rank ends with the sum);
    ``broadcast_(array, src)`` overwrites ``array`` with rank ``src``'s, in place;
    ``all_gather_object(obj)`` returns the list of every rank's ``obj`` (picklable, host side).
    """
    name = "base"
    rank, world_size, local_rank, device = 0, 1, 0, "cpu"

    def all_reduce_(self, array) -> None:
        raise NotImplementedError

    def broadcast_(self, array, src: int = 0) -> None:
        raise NotImplementedError

    def all_gather_object(self, obj) -> list:
        raise NotImplementedError

    def barrier(self) -> None:
        raise NotImplementedError

    def abort(self, code: int = 1) -> None:
        """End every process of the job now (``MPI_Abort``): nobody is left waiting in a collective."""
        os._exit(code)

    def __repr__(self):
        return f"{type(self).__name__}(rank={self.rank}, world_size={self.world_size}, device={self.device!r})"


class SingleProcessGroup(ProcessGroup):
    """A world of one: every collective returns its input unchanged."""
    name = "single"

    def __init__(self, device: str = "cpu"):
        self.device = device

    def all_reduce_(self, array) -> None:
        return None

    def broadcast_(self, array, src: int = 0) -> None:
        return None

    def all_gather_object(self, obj) -> list:
        return [obj]

    def barrier(self) -> None:
        return None


def _cuda_aware_mpi(MPI) -> bool:
    """Whether this MPI library accepts device pointers (Open MPI / MPICH ``MPIX_Query_cuda_support``,
    exposed by mpi4py ≥ 4 as ``MPI.Query_cuda_support``). False when it cannot say."""
    try:
        return bool(MPI.Query_cuda_support())
    except Exception:
        return False


class MPIProcessGroup(ProcessGroup):
    """Collectives over an ``mpi4py`` communicator (``COMM_WORLD`` by default).

    NumPy arrays are passed to MPI as they are. CuPy arrays are passed as device buffers when the
    MPI is CUDA-aware (after synchronizing the current stream, since MPI does not know CuPy's
    streams), and otherwise copied to the host, reduced there and copied back.
    """
    name = "mpi"

    def __init__(self, comm=None, device: str = "cpu"):
        from mpi4py import MPI
        self.MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank, self.world_size = self.comm.Get_rank(), self.comm.Get_size()
        # the processes sharing this machine's memory: MPI-3's COMM_TYPE_SHARED split
        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = node.Get_rank(), node.Get_size()
        node.Free()
        self.device = device
        self.cuda_aware = _cuda_aware_mpi(MPI)

    def _through_host(self, array) -> bool:
        return backend.is_cupy_array(array) and not self.cuda_aware

    def all_reduce_(self, array) -> None:
        if self._through_host(array):
            host = backend.to_numpy(array).copy()
            self.comm.Allreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
            array[...] = backend.get_array_module(array).asarray(host)
            return
        if backend.is_cupy_array(array):
            backend.get_array_module(array).cuda.get_current_stream().synchronize()
        self.comm.Allreduce(self.MPI.IN_PLACE, array, op=self.MPI.SUM)

    def broadcast_(self, array, src: int = 0) -> None:
        if self._through_host(array):
            host = backend.to_numpy(array).copy()
            self.comm.Bcast(host, root=src)
            array[...] = backend.get_array_module(array).asarray(host)
            return
        if backend.is_cupy_array(array):
            backend.get_array_module(array).cuda.get_current_stream().synchronize()
        self.comm.Bcast(array, root=src)

    def all_gather_object(self, obj) -> list:
        return self.comm.allgather(obj)

    def barrier(self) -> None:
        self.comm.Barrier()

    def abort(self, code: int = 1) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        self.comm.Abort(code)


class NCCLProcessGroup(ProcessGroup):
    """CuPy arrays reduced by NCCL (``ncclAllReduce`` on the current CUDA stream, in place, no host
    copy); host-side collectives and NumPy arrays go to ``mpi`` (an ``MPIProcessGroup``), which
    also carries the NCCL unique id from rank 0 to the others. Needs one GPU per rank."""
    name = "nccl"

    def __init__(self, mpi: MPIProcessGroup, device: str):
        self.mpi = mpi
        self.rank, self.world_size, self.local_rank = mpi.rank, mpi.world_size, mpi.local_rank
        self.device = device
        self.nccl = backend.nccl()
        uid = self.nccl.get_unique_id() if self.rank == 0 else None
        uid = mpi.comm.bcast(uid, root=0)
        with backend.device_context(device):
            self.comm = self.nccl.NcclCommunicator(self.world_size, uid, self.rank)
        self._dtypes = {np.dtype(np.float16): self.nccl.NCCL_FLOAT16, np.dtype(np.float32): self.nccl.NCCL_FLOAT32,
                        np.dtype(np.float64): self.nccl.NCCL_FLOAT64, np.dtype(np.int32): self.nccl.NCCL_INT32,
                        np.dtype(np.int64): self.nccl.NCCL_INT64}

    def _nccl_args(self, array):
        if not array.flags.c_contiguous:
            raise DistributedError("NCCL collectives need C-contiguous arrays")
        if np.dtype(array.dtype) not in self._dtypes:
            raise DistributedError(f"NCCL: unsupported dtype {array.dtype}")
        stream = backend.get_array_module(array).cuda.get_current_stream().ptr
        return array.data.ptr, array.size, self._dtypes[np.dtype(array.dtype)], stream

    def all_reduce_(self, array) -> None:
        if not backend.is_cupy_array(array):
            return self.mpi.all_reduce_(array)
        ptr, count, dtype, stream = self._nccl_args(array)
        self.comm.allReduce(ptr, ptr, count, dtype, self.nccl.NCCL_SUM, stream)

    def broadcast_(self, array, src: int = 0) -> None:
        if not backend.is_cupy_array(array):
            return self.mpi.broadcast_(array, src)
        ptr, count, dtype, stream = self._nccl_args(array)
        self.comm.bcast(ptr, count, dtype, src, stream)

    def all_gather_object(self, obj) -> list:
        return self.mpi.all_gather_object(obj)

    def barrier(self) -> None:
        self.mpi.barrier()

    def abort(self, code: int = 1) -> None:
        self.mpi.abort(code)


# ====================================================================== the default group
_group: Optional[ProcessGroup] = None


def _device_for_rank(device, local_rank: int, world_size: int) -> str:
    """``"cuda"`` becomes ``"cuda:{local_rank}"`` when several processes share the machine (one
    GPU per rank, wrapping around if there are fewer GPUs); other devices are kept as given."""
    text = "cpu" if device is None else str(device).strip().lower()
    if world_size > 1 and text == "cuda":
        backend.normalize_device("cuda")      # a clear DeviceError when there is no GPU
        count = backend.device_count()
        text = f"cuda:{local_rank % max(count, 1)}"
    device = backend.normalize_device(text)
    if world_size > 1 and device.startswith("cuda:"):
        # this rank's GPU becomes the process's current device (kernels, NCCL, CuPy's memory pool)
        backend.xp_of_device(device).cuda.Device(int(device.split(":")[1])).use()
    return device


def init_process_group(device=None, backend_name: Optional[str] = None) -> ProcessGroup:
    """Join the world this process was launched in and return its group (also the default group
    that ``get_rank`` etc. read). Without an MPI launcher: a ``SingleProcessGroup``, no MPI import.

    ``device``: ``"cpu"``, ``"cuda"`` (→ ``cuda:{local_rank}`` with several ranks) or ``"cuda:N"``.
    ``backend_name``: ``"mpi"`` or ``"nccl"``; None picks NCCL for a CUDA device when CuPy has
    it, MPI otherwise. Calling it again returns the same group (on the device asked for).
    Raises ``DistributedError`` when launched by ``mpirun`` with several processes but
    ``mpi4py`` is missing (N independent runs would overwrite each other's outputs).
    """
    global _group
    announced = launched_by_mpi()
    if announced is None or announced == 1:
        if _group is None or _group.world_size == 1:       # one process: the device asked for, every time
            _group = SingleProcessGroup(backend.normalize_device(device))
        return _group
    if _group is not None and _group.world_size > 1:
        wanted = _device_for_rank(device, _group.local_rank, _group.world_size)
        if wanted == _group.device:
            return _group
        mpi = _group.mpi if isinstance(_group, NCCLProcessGroup) else _group
    else:
        try:
            import mpi4py  # noqa: F401
        except ImportError:
            raise DistributedError(
                f"this process was started by an MPI launcher with {announced or 'several'} processes, but mpi4py "
                f"is not installed: install it with `pip install -e \".[mpi]\"` (or run without mpirun)") from None
        mpi = MPIProcessGroup()
        if mpi.world_size == 1:
            _group = SingleProcessGroup(backend.normalize_device(device))
            return _group
        _install_excepthook(mpi)
    dev = _device_for_rank(device, mpi.local_rank, mpi.world_size)
    use_nccl = dev.startswith("cuda") and backend_name in (None, "nccl")
    if use_nccl:
        try:
            backend.nccl()
        except backend.DeviceError:
            if backend_name == "nccl":
                raise
            use_nccl = False
    if use_nccl:
        _group = NCCLProcessGroup(mpi, dev)
    else:
        mpi.device = dev
        _group = mpi
    return _group


def get_process_group() -> ProcessGroup:
    """The default group (``init_process_group()`` on the CPU when none was made yet)."""
    return _group if _group is not None else init_process_group("cpu")


def destroy_process_group() -> None:
    """Forget the default group (the MPI library itself stays initialized until exit)."""
    global _group
    _group = None


def is_initialized() -> bool:
    return _group is not None


def get_rank() -> int:
    return get_process_group().rank


def get_world_size() -> int:
    return get_process_group().world_size


def get_local_rank() -> int:
    return get_process_group().local_rank


def is_main_process() -> bool:
    """Rank 0: the one process that writes logs, checkpoints, plots and samples."""
    return get_rank() == 0


def all_reduce(array, op: str = "sum", group: Optional[ProcessGroup] = None):
    """Sum (``op="sum"``) or average (``op="avg"``) ``array`` over ranks, in place; returns it."""
    group = group or get_process_group()
    group.all_reduce_(array)
    if op == "avg" and group.world_size > 1:
        array /= group.world_size
    elif op not in ("sum", "avg"):
        raise ValueError(f"all_reduce: op must be 'sum' or 'avg', got {op!r}")
    return array


def broadcast(array, src: int = 0, group: Optional[ProcessGroup] = None):
    """Overwrite ``array`` with rank ``src``'s copy, in place; returns it."""
    (group or get_process_group()).broadcast_(array, src)
    return array


def barrier(group: Optional[ProcessGroup] = None) -> None:
    (group or get_process_group()).barrier()


# ====================================================================== model-level helpers
def broadcast_parameters(model, src: int = 0, group: Optional[ProcessGroup] = None) -> None:
    """Give every rank rank ``src``'s parameters and buffers (in place, one broadcast per tensor:
    it runs once, at start)."""
    group = group or get_process_group()
    if group.world_size == 1:
        return
    for p in model.parameters():
        group.broadcast_(p.data, src)
    for module in model.modules():
        for name in module.__dict__.get("_buffers", []):
            b = getattr(module, name)
            if b is not None and getattr(b, "data", None) is not None and b.data.flags.c_contiguous:
                group.broadcast_(b.data, src)


class GradientReducer:
    """Average the gradients of ``parameters`` over ranks, in place, one all-reduce per bucket.

    The gradients (those that are not None, in parameter order, grouped by dtype and device) are
    laid out in flat buckets of at most ``bucket_mb`` MB (a tensor bigger than that gets a
    bucket of its own). A call copies each gradient into its slice of its bucket buffer,
    all-reduces the buffer (sum), scales by 1/world_size and copies the slices back into the
    gradients. ``extra``: a 0-d array or a 1-d array of a few values (the loss) to average in the
    same collective, appended to the last bucket; the call returns it averaged (same dtype).

    Every rank must hold gradients for the same parameters (true when all run the same model on
    batches of the same shape). ``seconds`` accumulates the wall time spent in the collectives,
    ``calls`` the number of collectives issued.
    """

    def __init__(self, parameters: Iterable, group: Optional[ProcessGroup] = None,
                 bucket_mb: float = DEFAULT_BUCKET_MB):
        self.parameters = list(parameters)
        self.group = group or get_process_group()
        self.bucket_bytes = max(1, int(bucket_mb * 2**20))
        self._layout = None     # (key, buckets): key = which params had grads; buckets = [(buffer, [(p, off, n)])]
        self.seconds, self.calls = 0.0, 0

    def _build(self, live):
        buckets, current, current_key, size = [], [], None, 0
        for p in live:
            g = p.grad.data
            key = (np.dtype(g.dtype), backend.device_of(g))
            nbytes = g.size * g.itemsize
            if current and (key != current_key or size + nbytes > self.bucket_bytes):
                buckets.append((current_key, current))
                current, size = [], 0
            current.append(p)
            current_key, size = key, size + nbytes
        if current:
            buckets.append((current_key, current))
        layout = []
        for (dtype, device), params in buckets:
            xp = backend.xp_of_device(device)
            slots, offset = [], 0
            for p in params:
                slots.append((p, offset, p.grad.data.size))
                offset += p.grad.data.size
            with backend.device_context(device):
                buffer = xp.empty(offset + 8, dtype=dtype)    # + room for the extra values
            layout.append((buffer, slots, offset))
        return layout

    @property
    def num_buckets(self) -> int:
        return len(self._layout[1]) if self._layout else 0

    def __call__(self, extra=None):
        group = self.group
        live = [p for p in self.parameters if p.grad is not None]
        if group.world_size == 1:
            return extra
        key = tuple(id(p) for p in live)
        if self._layout is None or self._layout[0] != key:
            self._layout = (key, self._build(live))
        buckets = self._layout[1]
        extra_flat = None
        if extra is not None:
            extra_flat = extra.reshape(-1)
            if extra_flat.size > 8:
                raise ValueError(f"GradientReducer: at most 8 extra values, got {extra_flat.size}")
        if not buckets:       # no gradients at all: the extra values alone
            if extra is None:
                return None
            buf = extra_flat.astype(np.float64).copy()
            t0 = time.perf_counter()
            group.all_reduce_(buf)
            self.seconds += time.perf_counter() - t0
            self.calls += 1
            return (buf / group.world_size).astype(extra.dtype).reshape(extra.shape)
        scale = 1.0 / group.world_size
        out = None
        for i, (buffer, slots, used) in enumerate(buckets):
            for p, off, n in slots:
                buffer[off:off + n] = p.grad.data.reshape(-1)
            n_total = used
            if i == len(buckets) - 1 and extra_flat is not None:
                buffer[used:used + extra_flat.size] = extra_flat.astype(buffer.dtype)
                n_total = used + extra_flat.size
            view = buffer[:n_total]
            t0 = time.perf_counter()
            group.all_reduce_(view)
            self.seconds += time.perf_counter() - t0
            self.calls += 1
            view *= buffer.dtype.type(scale)
            for p, off, n in slots:
                p.grad.data[...] = buffer[off:off + n].reshape(p.grad.data.shape)
            if n_total > used:
                out = buffer[used:n_total].astype(extra.dtype).reshape(extra.shape)
        return out


def all_reduce_gradients(parameters, group: Optional[ProcessGroup] = None, bucket_mb: float = DEFAULT_BUCKET_MB):
    """One-shot ``GradientReducer(parameters, group, bucket_mb)()``: average every ``.grad`` over
    ranks, in place."""
    GradientReducer(parameters, group, bucket_mb)()


def average_scalars(values: Sequence[float], group: Optional[ProcessGroup] = None) -> List[float]:
    """The mean over ranks of each of ``values`` (floats), in one float64 all-reduce."""
    group = group or get_process_group()
    if group.world_size == 1:
        return [float(v) for v in values]
    buf = np.asarray(values, dtype=np.float64).copy()
    (group.mpi if isinstance(group, NCCLProcessGroup) else group).all_reduce_(buf)
    return [float(v) for v in buf / group.world_size]


def any_rank(flag: bool, group: Optional[ProcessGroup] = None) -> bool:
    """True on every rank when ``flag`` is true on at least one (a stop signal, a failure)."""
    group = group or get_process_group()
    if group.world_size == 1:
        return bool(flag)
    buf = np.array([1 if flag else 0], dtype=np.int64)
    (group.mpi if isinstance(group, NCCLProcessGroup) else group).all_reduce_(buf)
    return bool(buf[0])


def check_same_config(settings: dict, group: Optional[ProcessGroup] = None, what: str = "settings") -> str:
    """Compare a SHA-256 of ``settings`` (JSON, sorted keys) across ranks (one allgather); raise
    ``DistributedError`` naming the ranks whose settings differ from rank 0's. Returns the hash."""
    group = group or get_process_group()
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
    if group.world_size == 1:
        return digest
    digests = group.all_gather_object(digest)
    differ = [r for r, d in enumerate(digests) if d != digests[0]]
    if differ:
        raise DistributedError(f"the {group.world_size} processes were started with different {what}: rank(s) "
                               f"{differ} differ from rank 0 (sha256 {digests[0][:12]} vs {digests[differ[0]][:12]}); "
                               f"start every rank with the same command line")
    return digest


def check_batch_split(batch_size: int, world_size: int, grad_accum: int = 1) -> int:
    """The sequences each rank computes per micro-batch: ``batch_size / (world_size · grad_accum)``.
    Raises ``ValueError`` (a ``ConfigError``) when it is not a whole number."""
    from .train_config import ConfigError
    parts = world_size * grad_accum
    if batch_size % parts:
        raise ConfigError(
            f"--batch-size {batch_size} (the global batch) is not divisible by {world_size} process(es) × "
            f"--grad-accum {grad_accum} = {parts}: every process computes batch_size / (processes × grad_accum) "
            f"sequences per micro-batch; use a batch size that is a multiple of {parts}")
    return batch_size // parts


def shard_batch(arrays: Sequence, rank: int, world_size: int) -> tuple:
    """Rank ``rank``'s contiguous slice of a global batch: rows ``[r·B/N, (r+1)·B/N)`` of every
    array (all batch-first, ``B`` rows; ``B`` divisible by ``N``). World size 1: unchanged."""
    if world_size == 1:
        return tuple(arrays)
    rows = arrays[0].shape[0]
    if rows % world_size:
        raise ValueError(f"shard_batch: {rows} rows do not split into {world_size} equal shards")
    per = rows // world_size
    out = []
    for a in arrays:
        if a.shape[0] != rows:
            raise ValueError(f"shard_batch: arrays of a batch must share their first dimension, got "
                             f"{[x.shape for x in arrays]}")
        out.append(a[rank * per:(rank + 1) * per])
    return tuple(out)


# ====================================================================== failure handling
def _install_excepthook(group: ProcessGroup) -> None:
    """An uncaught exception on any rank prints its traceback and aborts the whole job, so no rank
    waits forever in a collective for a process that is gone."""
    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        if not issubclass(kind, KeyboardInterrupt):
            print(f"rank {group.rank} of {group.world_size} failed: aborting the job", file=sys.stderr, flush=True)
            group.abort(1)
    sys.excepthook = hook


@contextmanager
def abort_on_error(prog: str = "minillm"):
    """Inside a data-parallel run, an exception that escapes the block prints
    ``{prog}: error (rank r of N): message`` and ends the whole job (``MPI_Abort``, status 1).
    ``KeyboardInterrupt`` (mpirun delivers Ctrl-C/SIGTERM to every rank, which agree on the
    iteration to stop at) and ``SystemExit`` pass. A single process: exceptions pass unchanged."""
    try:
        yield
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        group = _group
        announced = launched_by_mpi()
        if group is None and announced is not None and announced != 1:
            # failed before joining the world (a bad flag): join it now, only to end every rank
            try:
                group = MPIProcessGroup()
            except Exception:
                group = None
        if group is None or group.world_size == 1:
            raise
        print(f"{prog}: error (rank {group.rank} of {group.world_size}): {exc}", file=sys.stderr, flush=True)
        group.abort(1)
        raise


# ====================================================================== launching
def mpirun_available() -> bool:
    """``mpi4py`` importable and an ``mpirun`` (or ``mpiexec``) on the PATH."""
    try:
        import importlib.util
        if importlib.util.find_spec("mpi4py") is None:
            return False
    except Exception:
        return False
    return bool(shutil.which("mpirun") or shutil.which("mpiexec"))


def mpirun_command(n: int) -> tuple:
    """``(argv prefix, environment)`` to start ``n`` processes on this machine: Open MPI's
    ``mpirun -n N --oversubscribe`` (more ranks than cores is allowed; as root, the two
    ``OMPI_ALLOW_RUN_AS_ROOT*`` variables), or MPICH's ``mpiexec -n N``."""
    exe = shutil.which("mpirun") or shutil.which("mpiexec")
    if exe is None:
        raise DistributedError("no mpirun/mpiexec on the PATH: install the [mpi] extra (pip install -e \".[mpi]\")")
    env = dict(os.environ)
    try:
        version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        version = ""
    argv = [exe, "-n", str(n)]
    if "Open MPI" in version or "OpenRTE" in version or "PRRTE" in version:
        argv.append("--oversubscribe")
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    for name in _SIZE_VARIABLES + ("PMIX_RANK", "PMI_RANK", "MINILLM_DISTRIBUTED"):
        env.pop(name, None)       # a launcher inside a launched process would inherit the outer world
    return argv, env
