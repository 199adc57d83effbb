"""Teacher's solutions for lesson 13 (fine-tuning)."""


def exercise_1(n_groups, lr, decay):
    """ULMFiT (Howard & Ruder 2018, §3.2): η^(l−1) = η^l / decay, the top group at lr; bottom to top."""
    return [lr / decay ** (n_groups - 1 - l) for l in range(n_groups)]


def exercise_2(step, steps_per_stage, n_groups):
    """ULMFiT's gradual unfreezing (§3.3): the top group at step 0, one more every steps_per_stage."""
    return min(n_groups, 1 + step // steps_per_stage)


def exercise_3(n_layer, n_embd, vocab_size, block_size, n):
    """Parameters that still train after freeze(model, n): the top n_layer − n blocks and ln_f.
    A block: attention in_proj 3E² + 3E, out_proj E² + E, MLP fc 4E² + 4E, proj 4E² + E, two
    LayerNorms 4E, i.e. 12E² + 13E."""
    E = n_embd
    return (n_layer - n) * (12 * E * E + 13 * E) + 2 * E
