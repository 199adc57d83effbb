"""Shared fixtures.

``device``: every op/layer test that takes it runs on NumPy ("cpu") and on CuPy ("cuda"). The
cuda case carries the ``gpu`` marker (``pytest -m gpu`` runs only those) and skips, with the
reason, unless CuPy imports *and* sees a device; nothing here imports CuPy itself.

``torch``: the torch module, or a skip when it is not installed (torch is a test-only reference;
minillm never imports it).

``mk``: make float64 test tensors on the current ``device`` from a seeded generator.
"""
import numpy as np
import pytest

import minillm


def pytest_configure(config):
    # also declared in pyproject.toml; repeated so the marker exists whatever the ini file is
    config.addinivalue_line("markers", "gpu: needs CuPy and a CUDA device (skipped otherwise)")


def _cuda_skip_reason():
    try:
        if minillm.is_cuda_available():
            return None
        from minillm.backend import cuda_unavailable_reason
        return cuda_unavailable_reason() or "CUDA is unavailable"
    except Exception as exc:  # a broken CUDA install must skip, not error
        return f"CUDA check failed: {type(exc).__name__}: {exc}"


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request):
    """"cpu", then "cuda" (marked gpu; skipped without CuPy and a GPU)."""
    if request.param == "cuda":
        reason = _cuda_skip_reason()
        if reason is not None:
            pytest.skip(f"no CUDA: {reason}")
    return request.param


@pytest.fixture
def cuda_device():
    """For tests that only make sense with a GPU (cpu/cuda mixing); mark them `@pytest.mark.gpu`."""
    reason = _cuda_skip_reason()
    if reason is not None:
        pytest.skip(f"no CUDA: {reason}")
    return "cuda"


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


class Maker:
    """Float64 leaf tensors on one device, from one seeded generator.

    ``domain``: "any" (standard normal), "pos" (in [0.5, 2]), "away" (normal, but |x| ≥ 0.2:
    keeps relu/abs/clamp away from their kinks), "nonzero" (±[0.5, 2], for denominators).
    """

    def __init__(self, device, seed=0):
        self.device = device
        self.rng = np.random.default_rng(seed)

    def array(self, *shape, domain="any"):
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        r = self.rng
        if domain == "any":
            a = r.standard_normal(shape)
        elif domain == "pos":
            a = r.uniform(0.5, 2.0, shape)
        elif domain == "away":
            a = r.standard_normal(shape)
            a = np.where(np.abs(a) < 0.2, np.sign(a + 1e-12) * 0.2 + a, a)
        elif domain == "nonzero":
            a = r.uniform(0.5, 2.0, shape) * r.choice([-1.0, 1.0], shape)
        else:
            raise ValueError(domain)
        return np.asarray(a, dtype=np.float64)

    def __call__(self, *shape, domain="any", requires_grad=True):
        return minillm.tensor(self.array(*shape, domain=domain), dtype=minillm.float64,
                              device=self.device, requires_grad=requires_grad)

    def const(self, array, dtype=None):
        """A constant tensor (indices, masks, targets) on this device."""
        return minillm.tensor(np.asarray(array), dtype=dtype, device=self.device)


@pytest.fixture
def mk(device):
    return Maker(device)
