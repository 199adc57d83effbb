"""Teacher's solutions for lesson 02 (attention)."""
import math

import numpy as np

import minillm


def exercise_1(t_q, t_k):
    # query i is at absolute position i + (t_k - t_q); it may see keys j <= that position
    i = np.arange(t_q)[:, None]
    j = np.arange(t_k)[None, :]
    return j <= i + (t_k - t_q)


def exercise_2(q, k, v, mask=None):
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = minillm.masked_fill(scores, ~np.asarray(mask), float("-inf"))
    return minillm.softmax(scores, dim=-1) @ v


def exercise_3(x, num_heads):
    b, t, e = x.shape
    return x.reshape(b, t, num_heads, e // num_heads).transpose(1, 2)
