"""Data parallelism (minillm/distributed.py, issue 14).

In-process: a single process is unchanged (no mpi4py import, identity collectives, the step as
before), the bucketed reducer issues one collective per bucket and puts every value back in its
place, the grad hook runs before clipping, gradient accumulation equals one big batch.
Under ``mpirun -n 2`` (spawned in a subprocess; skipped without mpi4py and mpirun): 2 ranks ×
batch 6 equal 1 process × batch 12 (float64 parameters to 1e-10 after 20 steps, float32 logged
losses to 1e-4), a rank that fails ends the whole job with its message, ranks started with
different settings are refused.
"""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minillm import backend as minillm_backend
from minillm import distributed
from minillm.checkpoint import load_checkpoint
from minillm.train_config import ConfigError, TrainConfig

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
_spec = importlib.util.spec_from_file_location("_dist_worker", HERE / "_dist_worker.py")
worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(worker)

_NO_MPI = "mpi4py or mpirun missing (pip install -e \".[mpi]\")"
if os.environ.get("MINILLM_REQUIRE_MPI") == "1" and not distributed.mpirun_available():
    raise RuntimeError(f"MINILLM_REQUIRE_MPI=1 (CI) but {_NO_MPI}")
needs_mpi = pytest.mark.skipif(not distributed.mpirun_available(), reason=_NO_MPI)


def _params(out_dir):
    return load_checkpoint(Path(out_dir) / "last.npz").model_state


def _train_losses(out_dir):
    lines = (Path(out_dir) / "log.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r["kind"] == "train"]


def _eval_losses(out_dir):
    lines = (Path(out_dir) / "log.jsonl").read_text().splitlines()
    return [(r["train_loss"], r["val_loss"]) for r in map(json.loads, lines) if r["kind"] == "eval"]


def _max_param_diff(a, b):
    assert a.keys() == b.keys()
    return max(float(np.abs(np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64)).max()) for k in a)


# ---------------------------------------------------------------- one process: nothing changes
def test_single_process_world_does_not_import_mpi4py():
    code = ("import sys; from minillm import distributed as d; g = d.init_process_group('cpu'); "
            "assert (d.get_rank(), d.get_world_size(), g.name) == (0, 1, 'single'), g; "
            "assert 'mpi4py' not in sys.modules; print('ok')")
    env = {k: v for k, v in os.environ.items() if k not in distributed._SIZE_VARIABLES + ("PMIX_RANK", "PMI_RANK")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_single_process_group_follows_the_device_asked_for(monkeypatch):
    for name in distributed._SIZE_VARIABLES + ("PMIX_RANK", "PMI_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.init_process_group("cpu").device == "cpu"
    if minillm_backend.is_cuda_available():                 # a second call is not stuck on the first device
        assert distributed.init_process_group("cuda").device.startswith("cuda:")
    else:
        with pytest.raises(minillm_backend.DeviceError):
            distributed.init_process_group("cuda")
    assert distributed.init_process_group(None).device == minillm_backend.default_device()


def test_single_process_collectives_are_identities():
    group = distributed.SingleProcessGroup()
    a = np.arange(5.0)
    distributed.all_reduce(a, "avg", group)
    distributed.broadcast(a, 0, group)
    assert np.array_equal(a, np.arange(5.0))
    assert distributed.average_scalars([1.5, 2.5], group) == [1.5, 2.5]
    assert group.all_gather_object("x") == ["x"]
    assert distributed.shard_batch((a,), 0, 1)[0] is a


def test_single_process_trainer_has_no_reducer_and_the_whole_batch(tmp_path):
    from minillm.train import Trainer
    trainer = Trainer(TrainConfig(**{**worker.TINY, "out_dir": str(tmp_path / "r")}), log=None)
    assert trainer.world_size == 1 and trainer.grad_reducer is None and trainer.train_step.grad_hook is None
    x, y = trainer.get_batch("train")
    assert x.shape == (12, 16)


def test_training_step_one_batch_is_the_old_step():
    """forward, backward, clip, step by hand == TrainingStep with one batch, bit for bit."""
    import minillm
    from minillm.models.gpt import GPT, GPTConfig
    from minillm.nn.utils import clip_grad_norm_
    from minillm.training_step import TrainingStep, make_optimizer
    rng = np.random.default_rng(0)
    x = minillm.tensor(rng.integers(0, 32, size=(4, 8)))
    y = minillm.tensor(rng.integers(0, 32, size=(4, 8)))
    models = []
    for _ in range(2):
        minillm.manual_seed(3)
        models.append(GPT(GPTConfig(vocab_size=32, block_size=8, n_layer=1, n_head=2, n_embd=16, dropout=0.0)))
    opt_a, opt_b = make_optimizer(models[0], 1e-2, 0.1), make_optimizer(models[1], 1e-2, 0.1)
    step = TrainingStep(models[0], opt_a, lambda a, b: models[0](a, b)[1], lambda it: 1e-2, grad_clip=0.1)
    for it in range(3):
        step(it, (x, y))
        loss = models[1](x, y)[1]
        opt_b.zero_grad()
        loss.backward()
        clip_grad_norm_(models[1].parameters(), 0.1)
        opt_b.step()
    for p, q in zip(models[0].parameters(), models[1].parameters()):
        assert np.array_equal(p.data, q.data)


def test_grad_hook_runs_before_clipping():
    """A hook that multiplies the gradients by 10: the reported (pre-clip) norm is 10× the plain one."""
    import minillm
    from minillm.models.gpt import GPT, GPTConfig
    from minillm.training_step import TrainingStep, make_optimizer
    rng = np.random.default_rng(1)
    x, y = minillm.tensor(rng.integers(0, 32, size=(2, 8))), minillm.tensor(rng.integers(0, 32, size=(2, 8)))
    norms = []
    for factor in (None, 10.0):
        minillm.manual_seed(3)
        model = GPT(GPTConfig(vocab_size=32, block_size=8, n_layer=1, n_head=2, n_embd=16, dropout=0.0))

        def hook(loss, model=model, factor=factor):
            for p in model.parameters():
                p.grad.data[...] *= factor
            return loss * 2
        step = TrainingStep(model, make_optimizer(model, 1e-3, 0.0), lambda a, b, m=model: m(a, b)[1],
                            lambda it: 1e-3, grad_clip=1.0, grad_hook=hook if factor else None)
        norms.append(step(0, (x, y)))
    assert norms[1].grad_norm == pytest.approx(10 * norms[0].grad_norm, rel=1e-5)
    assert norms[1].loss == pytest.approx(2 * norms[0].loss, rel=1e-6)   # the hook's loss is reported


# ---------------------------------------------------------------- the bucketed reducer
class _FakeGroup(distributed.ProcessGroup):
    """A world of 2 where the other rank holds ``other(n)`` in every buffer of n values; counts calls."""
    name = "fake"

    def __init__(self, other):
        self.rank, self.world_size, self.other, self.sizes = 0, 2, other, []

    def all_reduce_(self, array):
        self.sizes.append(array.size)
        array += self.other(array.size).astype(array.dtype)


class _P:
    def __init__(self, grad):
        from minillm.tensor import Tensor
        self.grad = Tensor(grad)


def test_reducer_one_collective_per_bucket_and_values_back_in_place():
    rng = np.random.default_rng(0)
    shapes = [(4, 3), (7,), (2, 2, 2), (5,), (3, 3)]
    grads = [rng.normal(size=s) for s in shapes]
    params = [_P(g.copy()) for g in grads]
    total = sum(g.size for g in grads)
    others = rng.normal(size=total + 8)
    group = _FakeGroup(lambda n: others[:n])
    # a 20-float64 (160-byte) bucket: 12 | 7+8 | 5+9 -> 3 buckets for 5 tensors
    reducer = distributed.GradientReducer(params, group, bucket_mb=160 / 2**20)
    loss = reducer(np.array(3.0))
    assert len(group.sizes) == reducer.num_buckets == 3 < len(shapes)
    assert sum(group.sizes) == total + 1                       # the loss rides in the last bucket
    # rebuild the other rank's gradient per tensor from the bucket layout
    flat_other, offset, expected = [], 0, []
    for size in group.sizes:
        flat_other.append(others[:size])
    other_concat = np.concatenate(flat_other)
    for g in grads:
        expected.append((g.ravel() + other_concat[offset:offset + g.size]) / 2)
        offset += g.size
    for p, e, g in zip(params, expected, grads):
        assert p.grad.data.shape == g.shape
        np.testing.assert_allclose(p.grad.data.ravel(), e, rtol=0, atol=1e-15)
    assert float(loss) == pytest.approx((3.0 + other_concat[-1]) / 2)


def test_reducer_is_a_no_op_on_one_process():
    g = np.arange(6.0).reshape(2, 3)
    p = _P(g.copy())
    out = distributed.GradientReducer([p], distributed.SingleProcessGroup())(np.array(1.0))
    assert np.array_equal(p.grad.data, g) and float(out) == 1.0


def test_shard_batch_rows_and_errors():
    x = np.arange(24).reshape(6, 4)
    parts = [distributed.shard_batch((x, x + 1), r, 3) for r in range(3)]
    assert np.array_equal(np.concatenate([p[0] for p in parts]), x)
    assert np.array_equal(parts[1][1], x[2:4] + 1)
    with pytest.raises(ValueError, match="equal shards"):
        distributed.shard_batch((x,), 0, 4)


def test_batch_not_divisible_is_a_clear_error():
    assert distributed.check_batch_split(12, 2, 3) == 2
    with pytest.raises(ConfigError, match="not divisible by 5 process"):
        distributed.check_batch_split(12, 5)
    with pytest.raises(ConfigError, match="divisible by grad_accum"):
        TrainConfig(batch_size=12, grad_accum=5)


def test_check_same_config_hash():
    group = distributed.SingleProcessGroup()
    assert distributed.check_same_config({"a": 1, "b": 2}, group) == distributed.check_same_config({"b": 2, "a": 1},
                                                                                                   group)

    class Two(distributed.SingleProcessGroup):
        world_size = 2

        def all_gather_object(self, obj):
            return [obj, "0" * 64]
    with pytest.raises(distributed.DistributedError, match=r"rank\(s\) \[1\] differ"):
        distributed.check_same_config({"a": 1}, Two())


# ---------------------------------------------------------------- gradient accumulation == one batch
def test_grad_accum_equals_one_big_batch_float64(tmp_path):
    """3 micro-batches of 4 vs one batch of 12, float64: parameters equal to 1e-10 after 8 steps."""
    worker.run(tmp_path / "k1", "float64", max_iters=8, eval_interval=8)
    worker.run(tmp_path / "k3", "float64", max_iters=8, eval_interval=8, grad_accum=3)
    diff = _max_param_diff(_params(tmp_path / "k1"), _params(tmp_path / "k3"))
    assert diff < 1e-10, diff
    losses = _train_losses(tmp_path / "k1")
    assert losses[0] - losses[-1] > 0.05            # the runs did train (the comparison is not vacuous)
    assert np.allclose(_train_losses(tmp_path / "k1"), _train_losses(tmp_path / "k3"), rtol=0, atol=1e-10)


def test_grad_accum_float32_losses(tmp_path):
    worker.run(tmp_path / "k1", "float32", max_iters=8, eval_interval=8)
    worker.run(tmp_path / "k2", "float32", max_iters=8, eval_interval=8, grad_accum=2)
    a, b = _train_losses(tmp_path / "k1"), _train_losses(tmp_path / "k2")
    assert len(a) == 8 and np.abs(np.subtract(a, b)).max() < 1e-4


# ---------------------------------------------------------------- under mpirun -n 2
def _run(argv, env, timeout):
    """Run ``argv`` in a session of its own; on timeout kill the whole session (mpirun and its
    ranks), then fail."""
    import signal
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"{argv[:4]}... hung for {timeout} s (a rank left waiting in a collective?)\n{stderr[-3000:]}")
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def _mpirun(n, args, timeout=180):
    argv, env = distributed.mpirun_command(n)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return _run(argv + args, env, timeout)


@pytest.fixture(scope="module")
def two_rank_runs(tmp_path_factory):
    """The worker under mpirun -n 2 (float64 and float32 runs), and the same runs in this process."""
    if not distributed.mpirun_available():
        pytest.skip("mpi4py or mpirun missing (pip install -e \".[mpi]\")")
    root = tmp_path_factory.mktemp("dp")
    out = _mpirun(2, [sys.executable, str(HERE / "_dist_worker.py"), str(root / "mpi")])
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    for dtype in ("float64", "float32"):
        worker.run(root / "one" / dtype, dtype)
    return root


@needs_mpi
def test_two_ranks_batch_6_equal_one_process_batch_12_float64(two_rank_runs):
    info = json.loads((two_rank_runs / "mpi" / "float64" / "ranks.json").read_text())
    assert info["world_size"] == 2
    assert info["max_param_diff_to_rank0"] == 0.0            # the ranks never diverge
    assert info["allreduce_calls"] == 20                      # one bucket per step (the model is tiny)
    assert len(set(info["dropout_draws"])) == 2               # dropout streams differ between ranks
    assert info["rows_per_rank"] == [[6], [6]]               # each rank computes half of the batch of 12
    diff = _max_param_diff(_params(two_rank_runs / "mpi" / "float64"), _params(two_rank_runs / "one" / "float64"))
    assert diff < 1e-10, diff
    losses = _train_losses(two_rank_runs / "one" / "float64")
    assert losses[0] - losses[-1] > 0.05            # the runs did train (the comparison is not vacuous)
    assert np.allclose(_eval_losses(two_rank_runs / "mpi" / "float64"), _eval_losses(two_rank_runs / "one" / "float64"),
                       rtol=0, atol=1e-10)


@needs_mpi
def test_two_ranks_float32_logged_losses_equal(two_rank_runs):
    a = _train_losses(two_rank_runs / "mpi" / "float32")
    b = _train_losses(two_rank_runs / "one" / "float32")
    assert len(a) == len(b) == 20
    assert np.abs(np.subtract(a, b)).max() < 1e-4
    ea, eb = np.array(_eval_losses(two_rank_runs / "mpi" / "float32")), np.array(_eval_losses(two_rank_runs / "one" / "float32"))
    assert ea.shape == eb.shape == (3, 2) and np.abs(ea - eb).max() < 1e-4
    # rank 0 alone wrote: one log line per iteration, not two
    assert len((two_rank_runs / "mpi" / "float32" / "log.jsonl").read_text().splitlines()) == 23


_CLI = ["-m", "minillm", "train", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
        "--max-iters", "4", "--eval-interval", "2", "--eval-iters", "1", "--sample-tokens", "0", "--no-progress"]


@needs_mpi
def test_resume_with_another_number_of_processes(tmp_path):
    """10 steps on 1 process, then 10 more on 2 (--resume), then 10 more on 1: the logged losses
    equal those of one uninterrupted 30-step process (float32, 1e-4)."""
    cli = _CLI[:_CLI.index("--max-iters")] + ["--eval-interval", "10", "--eval-iters", "1", "--sample-tokens", "0",
                                             "--no-progress", "--batch-size", "4"]
    whole, parts = str(tmp_path / "whole"), str(tmp_path / "parts")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for out_dir, iters, resume in ((whole, 30, False), (parts, 10, False)):
        done = _run([sys.executable] + cli + ["--max-iters", str(iters), "--out-dir", out_dir]
                    + (["--resume"] if resume else []), env, 120)
        assert done.returncode == 0, done.stderr[-3000:]
    done = _mpirun(2, [sys.executable] + cli + ["--max-iters", "20", "--out-dir", parts, "--resume"])
    assert done.returncode == 0, done.stderr[-3000:]
    done = _run([sys.executable] + cli + ["--max-iters", "30", "--out-dir", parts, "--resume"], env, 120)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = _train_losses(whole), _train_losses(parts)
    assert len(a) == len(b) == 30 and np.abs(np.subtract(a, b)).max() < 1e-4


@needs_mpi
def test_mpirun_batch_not_divisible_ends_the_job_with_the_message(tmp_path):
    out = _mpirun(2, [sys.executable] + _CLI + ["--batch-size", "5", "--out-dir", str(tmp_path / "r")], timeout=120)
    assert out.returncode != 0
    assert "not divisible by 2 process(es)" in out.stderr, out.stderr[-3000:]


@needs_mpi
def test_mpirun_one_failing_rank_ends_the_job_and_mismatched_settings_are_refused(tmp_path):
    """MPMD: rank 1 gets --lr -1 (fails alone, rank 0 would wait in a collective), then a run
    whose ranks differ only in --seed (refused at start by the config hash)."""
    argv, env = distributed.mpirun_command(1)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    base = [sys.executable] + _CLI + ["--batch-size", "4", "--out-dir", str(tmp_path / "r")]
    mpmd = argv + base + [":", "-n", "1"] + base + ["--lr", "-1"]
    out = _run(mpmd, env, 60)
    assert out.returncode != 0
    assert "error (rank 1 of 2)" in out.stderr and "lr must be > 0" in out.stderr, out.stderr[-3000:]
    mpmd = argv + base + ["--seed", "1", ":", "-n", "1"] + base + ["--seed", "2"]
    out = _run(mpmd, env, 60)
    assert out.returncode != 0
    assert "started with different settings" in out.stderr, out.stderr[-3000:]


# ---------------------------------------------------------------- GPUs (skipped without CuPy and a device)
@pytest.mark.gpu
def test_nccl_group_all_reduce_and_reducer_on_one_gpu():
    """A one-rank NCCL communicator (all-reduce = identity) and the reducer on CuPy gradients."""
    from minillm import backend
    if not backend.is_cuda_available():
        pytest.skip("no CUDA device")
    pytest.importorskip("mpi4py")
    try:
        backend.nccl()
    except backend.DeviceError as exc:
        pytest.skip(str(exc))
    group = distributed.NCCLProcessGroup(distributed.MPIProcessGroup(), "cuda:0")
    xp = backend.xp_of_device("cuda:0")
    a = xp.arange(10, dtype=xp.float32)
    group.all_reduce_(a)
    assert backend.to_numpy(a).tolist() == list(range(10))
    p = _P(xp.ones((3, 4), dtype=xp.float32))
    distributed.GradientReducer([p], group)(xp.asarray(2.0, dtype=xp.float32))
    assert float(backend.to_numpy(p.grad.data).sum()) == 12.0


# ---------------------------------------------------------------- the cost model (benchmarks/data_parallel.py)
def test_ring_allreduce_cost_model():
    spec = importlib.util.spec_from_file_location("dp_bench", REPO / "benchmarks" / "data_parallel.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.ring_allreduce_seconds(1, 1e9, 1e9, 1e-3) == 0.0
    assert bench.ring_allreduce_seconds(2, 1e9, 1e9, 0.0) == pytest.approx(1.0)          # 2·1/2·S/B
    assert bench.ring_allreduce_seconds(4, 4e9, 1e9, 1e-6) == pytest.approx(6.0 + 6e-6)  # 2·3/4·4 + 2·3·α
    assert bench.gpu_preset_params() == pytest.approx(10.7e6, rel=0.01)
    rows = bench.cost_model()["rows"]
    assert len(rows) == 2 * 3 * 3
    for r in rows:
        assert 0 < r["efficiency_no_overlap"] <= r["efficiency_overlap"] <= 1
