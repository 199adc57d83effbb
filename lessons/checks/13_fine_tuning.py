"""Checks for lesson 13 (fine-tuning). Each calls the student's function first, so an unfinished stub
raises NotImplementedError before any assertion."""
import numpy as np


def exercise_1(fn):
    """ULMFiT's rates agree with minillm.finetune.layerwise_param_groups."""
    import minillm as mm
    from minillm.finetune import layerwise_param_groups
    from minillm.models.gpt import GPT, GPTConfig
    for n_layer, lr, decay in ((2, 1e-3, 2.6), (4, 0.1, 2.0), (1, 5e-4, 1.0)):
        got = [float(v) for v in fn(n_layer + 2, lr, decay)]
        mm.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=n_layer, n_head=1, n_embd=4))
        by_name = {}
        for g in layerwise_param_groups(model, lr, decay):
            by_name[g["name"]] = g["lr"]
        want = [by_name["embeddings"]] + [by_name[f"blocks.{i}"] for i in range(n_layer)] + [by_name["top"]]
        assert len(got) == len(want), f"{n_layer + 2} groups: return {len(want)} rates, got {len(got)}"
        assert np.allclose(got, want, rtol=1e-12), (
            f"lr {lr}, decay {decay}: expected {['%.3g' % w for w in want]} (bottom to top), got "
            f"{['%.3g' % g for g in got]}. The top gets lr; group l gets lr / decay ** (n_groups - 1 - l)")


def exercise_2(fn):
    """The number of trainable groups agrees with minillm.finetune.GradualUnfreezing."""
    import minillm as mm
    from minillm.finetune import GradualUnfreezing
    from minillm.models.gpt import GPT, GPTConfig
    mm.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=3, n_head=1, n_embd=4))
    gu = GradualUnfreezing(model, 3)
    for step in (0, 2, 3, 5, 6, 11, 12, 40):
        want = gu.step(step)
        got = fn(step, 3, 5)
        assert int(got) == want, (f"step {step}, a new group every 3 steps, 5 groups: {want} groups train, you said "
                                  f"{got}. One group at step 0, one more every steps_per_stage, never more than n_groups")


def exercise_3(fn):
    """Trainable parameter count after freeze(model, n)."""
    import minillm as mm
    from minillm.finetune import freeze
    from minillm.models.gpt import GPT, GPTConfig
    for L, E, V, T, n in ((2, 8, 11, 16, 1), (3, 16, 7, 8, 0), (4, 4, 5, 4, 4), (2, 8, 11, 16, 2)):
        mm.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=V, block_size=T, n_layer=L, n_head=1, n_embd=E))
        freeze(model, n)
        want = sum(p.size for p in model.parameters() if p.requires_grad)
        got = fn(L, E, V, T, n)
        assert int(got) == want, (
            f"n_layer {L}, n_embd {E}, vocab {V}, block {T}, freeze {n}: {want:,} parameters train, you said {got}. "
            "A block has 12·E² + 13·E (attention 4E² + 4E, MLP 8E² + 5E, two LayerNorms 4E); the final LayerNorm "
            "2E; the embeddings (tied with the head) are frozen")
