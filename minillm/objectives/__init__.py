"""Pre-training objectives: how to make a batch from raw text, what the loss is, which model.

=========  ====================  ==========================================  ==================
objective  model                 input → target                              file
=========  ====================  ==========================================  ==================
causal     GPT (decoder)         x₁..x_T → x₂..x_{T+1} (next token)          ``causal.py``
mlm        BERT (encoder)        15% chosen, 80/10/10 corrupted → originals  ``masked_lm.py``
span       T5 (encoder-decoder)  spans → sentinels; the decoder writes them  ``span_corruption.py``
=========  ====================  ==========================================  ==================

``base.py`` holds the ``Objective`` record and the ``OBJECTIVES`` registry (filled here, in this
order); ``special_tokens.py`` the ``[PAD]``, ``[MASK]``, ``[CLS]``, ``[EOS]`` and sentinel tokens
that one shared tokenizer carries. The batch functions are NumPy only and draw every random
number from a ``numpy.random.Generator`` passed by the caller; their inputs are never modified.
The trainer (``minillm train --objective causal|mlm|span``) and :func:`minillm.pretrain.pretrain`
both take their batches and losses from here.
"""
from .base import OBJECTIVES, Objective, as_generator, register_objective
from .causal import CAUSAL, causal_batch, causal_loss
from .masked_lm import MASKED_LM, make_mlm_batch, mask_tokens, mlm_batch, mlm_loss
from .span_corruption import (SPAN_CORRUPTION, make_span_batch, random_spans_noise_mask, reconstruct, span_batch,
                              span_corruption, span_corruption_batch, span_loss)
from .special_tokens import (CLS, EOS, MASK, NUM_SENTINELS, PAD, SPECIAL_TOKENS, sentinel_tokens, special_ids,
                             train_tokenizer)

for _objective in (CAUSAL, MASKED_LM, SPAN_CORRUPTION):
    register_objective(_objective)
del _objective

__all__ = [
    # the registry
    "Objective", "OBJECTIVES", "register_objective", "as_generator",
    # causal LM
    "CAUSAL", "causal_batch", "causal_loss",
    # masked LM
    "MASKED_LM", "mask_tokens", "make_mlm_batch", "mlm_batch", "mlm_loss",
    # span corruption
    "SPAN_CORRUPTION", "random_spans_noise_mask", "span_corruption", "span_corruption_batch", "reconstruct",
    "make_span_batch", "span_batch", "span_loss",
    # special tokens
    "PAD", "MASK", "CLS", "EOS", "NUM_SENTINELS", "SPECIAL_TOKENS", "sentinel_tokens", "special_ids",
    "train_tokenizer",
]
