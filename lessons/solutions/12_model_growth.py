"""Teacher's solutions for lesson 12 (model growth)."""
import math

import numpy as np


def exercise_1(W1, b1, W2, mapping):
    """Net2WiderNet on one hidden layer of an MLP ``y = W2 · relu(W1 x + b1)``.

    ``W1`` (h, d_in), ``b1`` (h,), ``W2`` (d_out, h); ``mapping`` (h',) gives, for each new hidden
    unit j, the old unit it copies (``mapping[j] = j`` for j < h). Returns ``(W1', b1', W2')``:
    the rows of W1 and b1 copied, the columns of W2 copied and divided by how many copies of that
    old unit there are, so the network computes the same function."""
    mapping = np.asarray(mapping)
    counts = np.bincount(mapping, minlength=W1.shape[0])
    return W1[mapping].copy(), b1[mapping].copy(), W2[:, mapping] / counts[mapping]


def exercise_2(d_old, d_new):
    """The factor each query dimension of a widened attention head is multiplied by, when head
    dimension i' copies old dimension i' mod d_old (keys and values are copied unchanged), so that
    softmax(q'·k' / √d_new) equals softmax(q·k / √d_old). Returns an array of d_new factors."""
    g = np.arange(d_new) % d_old
    counts = np.bincount(g, minlength=d_old)
    return math.sqrt(d_new / d_old) / counts[g]


def exercise_3(n_layer, n_embd, vocab_size, block_size):
    """Training FLOPs per token of a GPT (matrix products only, forward + backward = 3 × forward):
    6·N with N = 12·n_layer·n_embd² + vocab_size·n_embd (the tied head), plus attention
    12·n_layer·block_size·n_embd."""
    n = 12 * n_layer * n_embd ** 2 + vocab_size * n_embd
    return 6 * n + 12 * n_layer * block_size * n_embd
