"""In-place weight initializers (PyTorch's ``nn.init`` names), drawing from minillm's seeded generators."""
from __future__ import annotations

import math

import numpy as np

from .. import backend


def _gen(t):
    return backend.generator(t.device)


def normal_(tensor, mean: float = 0.0, std: float = 1.0):
    tensor.data[...] = _gen(tensor).standard_normal(tensor.shape, dtype=np.float32) * std + mean
    return tensor


def uniform_(tensor, a: float = 0.0, b: float = 1.0):
    tensor.data[...] = _gen(tensor).random(tensor.shape, dtype=np.float32) * (b - a) + a
    return tensor


def zeros_(tensor):
    tensor.data[...] = 0
    return tensor


def ones_(tensor):
    tensor.data[...] = 1
    return tensor


def xavier_uniform_(tensor, gain: float = 1.0):
    """Glorot & Bengio (2010): U(−a, a) with a = gain·√(6/(fan_in + fan_out))."""
    fan_out, fan_in = tensor.shape[0], int(np.prod(tensor.shape[1:]))
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -a, a)


def kaiming_uniform_(tensor, a: float = math.sqrt(5)):
    """He et al. (2015) for leaky-ReLU slope ``a``; PyTorch's default Linear init uses a=√5."""
    fan_in = int(np.prod(tensor.shape[1:]))
    bound = math.sqrt(6.0 / ((1 + a * a) * fan_in))
    return uniform_(tensor, -bound, bound)
