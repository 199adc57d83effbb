"""minillm: a from-scratch deep-learning engine on NumPy/CuPy with hand-written autograd.

Read it in this order: ``backend.py`` (NumPy or CuPy), ``tensor.py`` (Tensor, Function and the
backward pass), ``ops.py`` (every op with its derivative), ``gradcheck.py``, then ``nn/`` and
``optim/``; ``kernels/`` holds the fused versions of a few hot ops, behind one switch.
"""
from ._interrupt import install as _install_interrupt_hook
_install_interrupt_hook()  # the `minillm` command: Ctrl-C during these imports prints one line
from .backend import (DeviceError, default_device, get_array_module, is_cuda_available, manual_seed,
                      set_default_device, to_numpy)
from .tensor import (Function, Tensor, bool_, float16, float32, float64, grad, int32, int64,
                     is_grad_enabled, no_grad, set_grad_enabled, tensor, uint8)
from .ops import (abs, arange, argmax, broadcast_to, cat, chunk, clamp, clip, concat, empty, erf, exp, expand, eye,
                  flatten, full, gather, gelu, log, log_softmax, logsumexp, masked_fill, matmul,
                  max, maximum, mean, min, minimum, ones, ones_like, permute, rand, randint, randn,
                  relu, reshape, sigmoid, softmax, split, sqrt, squeeze, stack, sum, tanh, transpose,
                  tril, tril_mask, triu, triu_mask, unsqueeze, var, where, zeros, zeros_like)
from .gradcheck import GradcheckError, gradcheck, gradgradcheck
from . import kernels  # noqa: E402
from . import nn  # noqa: E402
from . import optim  # noqa: E402
from . import regularizers  # noqa: E402

__version__ = "0.1.0"
