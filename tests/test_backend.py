"""backend.py: array modules, device strings and the default device, seeded generators, and a
silent import that pulls in neither torch nor CuPy."""
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import minillm as mm
from minillm import backend, nn
from minillm.kernels import threads
from minillm.nn import functional as F


@pytest.fixture
def clean_default(monkeypatch):
    """Tests that change the default device leave it as they found it."""
    monkeypatch.setattr(backend, "_default_device", None)
    monkeypatch.delenv("MINILLM_DEVICE", raising=False)


def test_get_array_module_and_to_numpy(device):
    x = mm.tensor([1.0, 2.0], device=device)
    xp = mm.get_array_module(x)
    assert xp is mm.get_array_module(x.data)
    assert (xp is np) == (device == "cpu")
    assert mm.get_array_module() is np and mm.get_array_module(np.ones(2), 3.0, None) is np
    assert mm.get_array_module(np.ones(2), x) is xp       # any GPU array makes it CuPy
    a = mm.to_numpy(x)
    assert isinstance(a, np.ndarray)
    np.testing.assert_array_equal(a, [1.0, 2.0])
    assert isinstance(mm.to_numpy(x.data), np.ndarray)
    np.testing.assert_array_equal(mm.to_numpy([1, 2]), [1, 2])
    assert backend.device_of(x.data) == x.device
    assert backend.device_of(np.float32(1)) == "cpu"
    assert backend.is_cupy_array(x.data) == (device != "cpu")
    moved = backend.to_device(x.data, "cpu")
    assert isinstance(moved, np.ndarray)


def test_normalize_device(device):
    assert backend.normalize_device("cpu") == "cpu"
    assert backend.normalize_device(" CPU ") == "cpu"
    assert backend.normalize_device(None) == backend.default_device()
    if device == "cuda":
        assert backend.normalize_device("cuda") == "cuda:0"
        assert backend.normalize_device("CUDA:0") == "cuda:0"


def test_default_device_from_environment(monkeypatch, clean_default):
    assert backend.default_device() == "cpu"
    assert mm.tensor([1.0]).device == "cpu"
    monkeypatch.setenv("MINILLM_DEVICE", " Cpu ")
    assert backend.default_device() == "cpu"
    monkeypatch.setenv("MINILLM_DEVICE", "")
    assert backend.default_device() == "cpu"
    monkeypatch.setenv("MINILLM_DEVICE", "cuda")
    if mm.is_cuda_available():
        assert backend.default_device() == "cuda:0"
        assert mm.zeros(2).device == "cuda:0" and mm.randn(2).device == "cuda:0"
        assert mm.tensor([1.0]).device == "cuda:0"
        assert mm.tensor(np.ones(2)).device == "cpu"   # an array stays where it is
    else:
        with pytest.raises(mm.DeviceError, match="CUDA is unavailable"):
            mm.zeros(2)
    mm.set_default_device("cpu")                          # overrides the environment
    assert backend.default_device() == "cpu" and mm.zeros(2).device == "cpu"
    mm.set_default_device(None)                           # back to the environment
    monkeypatch.setenv("MINILLM_DEVICE", "cpu")
    assert backend.default_device() == "cpu"


def test_default_device_in_a_fresh_process():
    env = dict(os.environ, MINILLM_DEVICE="cpu")
    out = subprocess.run([sys.executable, "-c", "import minillm; print(minillm.default_device(), "
                          "minillm.zeros(1).device)"], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["cpu", "cpu"]
    env["MINILLM_DEVICE"] = "nonsense"
    out = subprocess.run([sys.executable, "-c", "import minillm; minillm.zeros(1)"], capture_output=True,
                         text=True, env=env)
    assert out.returncode != 0 and "unknown device 'nonsense'" in out.stderr


def test_manual_seed_reproducibility(device):
    def draws():
        x = mm.ones(50, device=device)
        return [mm.randn(3, 4, device=device).numpy(), mm.rand(5, device=device).numpy(),
                mm.randint(0, 10, (6,), device=device).numpy(), F.dropout(x, 0.5).numpy(),
                nn.Linear(3, 2).weight.numpy(), nn.Embedding(4, 2).weight.numpy()]
    mm.manual_seed(123)
    first = draws()
    mm.manual_seed(123)
    second = draws()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    mm.manual_seed(124)
    third = draws()
    assert not np.array_equal(first[0], third[0]) and not np.array_equal(first[3], third[3])
    # the stream moves on: two draws after one seed differ
    mm.manual_seed(5)
    assert not np.array_equal(mm.randn(4, device=device).numpy(), mm.randn(4, device=device).numpy())
    assert mm.randn(2, 3, device=device).dtype == mm.float32
    assert mm.randn(2, dtype=mm.float64, device=device).dtype == mm.float64


def test_rng_state_round_trip():
    mm.manual_seed(9)
    mm.randn(3)
    state = backend.get_rng_state()
    a = mm.randn(5).numpy()
    mm.manual_seed(1000)
    mm.randn(7)
    backend.set_rng_state(state)
    np.testing.assert_array_equal(mm.randn(5).numpy(), a)


def test_import_is_silent_and_lazy():
    """`import minillm` prints nothing, and imports neither torch (a test-only reference) nor
    CuPy (loaded only when a device asks for it)."""
    code = ("import sys, minillm, minillm.nn, minillm.optim; "
            "print(sorted(m for m in ('torch', 'cupy') if m in sys.modules))")
    env = {k: v for k, v in os.environ.items() if k != "MINILLM_DEVICE"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    assert out.stdout == "[]\n"
    bare = subprocess.run([sys.executable, "-c", "import minillm"], capture_output=True, text=True, env=env)
    assert bare.returncode == 0 and bare.stdout == "" and bare.stderr == ""


def test_library_source_never_imports_torch():
    root = pathlib.Path(mm.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            stripped = line.strip()
            if stripped.startswith(("import torch", "from torch")):
                offenders.append(f"{path.relative_to(root)}:{i}")
    assert not offenders, offenders


def test_erf_is_vectorized_and_accurate_in_both_precisions():
    x = np.linspace(-6, 6, 1201)
    expected = np.array([math.erf(v) for v in x])
    np.testing.assert_allclose(backend.erf(x), expected, rtol=1e-14, atol=1e-15)
    out = backend.erf(x.astype(np.float32))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)
    assert isinstance(np.add, type(__import__("scipy.special").special.erf))   # a ufunc, not a Python loop
    phi = 0.5 * (1 + np.array([math.erf(v / math.sqrt(2)) for v in x]))
    np.testing.assert_allclose(F.gelu(mm.tensor(x)).numpy(), x * phi, rtol=1e-12)


def test_scatter_add_repeats(device):
    xp = mm.get_array_module(mm.zeros(1, device=device))
    out = xp.zeros(4)
    backend.scatter_add(out, xp.asarray([0, 2, 2, 0, 2]), xp.asarray([1.0, 2.0, 3.0, 4.0, 5.0]))
    np.testing.assert_array_equal(mm.to_numpy(out), [5.0, 0.0, 10.0, 0.0])


@pytest.mark.parametrize("n_rows", [1, 2, 5, 100])
def test_parallel_rows_covers_every_row_once(monkeypatch, n_rows):
    monkeypatch.setattr(threads, "_num_threads", 3)
    hits = np.zeros(n_rows, dtype=int)

    def kernel(rows):
        hits[rows] += 1
    threads.parallel_rows(kernel, n_rows, n_elements=10**7)
    np.testing.assert_array_equal(hits, 1)
    threads.parallel_rows(kernel, n_rows, n_elements=10)   # small: one call on this thread
    np.testing.assert_array_equal(hits, 2)


def test_num_threads_from_environment(monkeypatch):
    monkeypatch.setattr(threads, "_num_threads", None)
    monkeypatch.setenv("MINILLM_NUM_THREADS", "2")
    assert threads.num_threads() == 2
    monkeypatch.setattr(threads, "_num_threads", None)
    monkeypatch.delenv("MINILLM_NUM_THREADS")
    assert 1 <= threads.num_threads() <= 4


_FAULTS_SCRIPT = """
import resource, numpy as np, minillm
sizes = [(768, 512), (768, 384), (768, 128), (12, 4, 64, 64), (768, 512)]   # a CPU-preset step's arrays
def step():
    arrays = [np.ones(s, np.float32) for s in sizes]
    del arrays
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(minillm.backend._malloc_tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's mallopt")
def test_freed_arrays_are_reused_without_page_faults():
    """With the default setting, arrays of a training step's sizes, freed and allocated again
    step after step, reuse the heap (no page faults); MINILLM_KEEP_FREED_MEMORY=0 leaves glibc as
    it is, which unmaps or trims them and faults every page in again (~19,000 faults here)."""
    import subprocess
    runs = {}
    for setting in ("1", "0"):
        env = dict(os.environ, MINILLM_KEEP_FREED_MEMORY=setting)
        out = subprocess.run([sys.executable, "-c", _FAULTS_SCRIPT], env=env, capture_output=True, text=True,
                             check=True).stdout.split()
        runs[setting] = (out[0], int(out[1]))
    if runs["1"][0] != "True" or os.environ.get("LD_PRELOAD"):
        pytest.skip("not glibc's malloc (or another allocator preloaded): the setting does not apply")
    assert runs["1"][1] < 200, runs
    assert runs["0"][0] == "False" and runs["0"][1] > 5000, runs
