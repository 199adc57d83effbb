"""The special tokens of the masked-LM and span-corruption objectives, shared by all three.

One tokenizer serves every objective (so the three pre-trained backbones read the same ids):
``[PAD]`` (padding, and T5's decoder start), ``[MASK]`` (BERT's mask), ``[CLS]`` (a first token a
classifier may pool), ``[EOS]`` (end of a T5 input or target) and T5's sentinels
``<extra_id_0>``, ``<extra_id_1>``, ... (one per dropped span).
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import List, Tuple

__all__ = ["PAD", "MASK", "CLS", "EOS", "NUM_SENTINELS", "SPECIAL_TOKENS", "sentinel_tokens", "special_ids",
           "train_tokenizer"]

PAD, MASK, CLS, EOS = "[PAD]", "[MASK]", "[CLS]", "[EOS]"
NUM_SENTINELS = 32


def sentinel_tokens(n: int = NUM_SENTINELS) -> List[str]:
    """T5's sentinels ``<extra_id_0>``, ``<extra_id_1>``, ..., ``n`` of them."""
    return [f"<extra_id_{i}>" for i in range(n)]


#: the special tokens every objective's tokenizer gets (so one tokenizer serves all three)
SPECIAL_TOKENS: Tuple[str, ...] = (PAD, MASK, CLS, EOS, *sentinel_tokens())


def special_ids(tokenizer) -> SimpleNamespace:
    """The ids of ``tokenizer``'s special tokens: ``pad``, ``mask``, ``cls``, ``eos``,
    ``sentinels`` (a list, in order) and ``all`` (every special id, sorted)."""
    try:
        ids = SimpleNamespace(pad=tokenizer.special_id(PAD), mask=tokenizer.special_id(MASK),
                              cls=tokenizer.special_id(CLS), eos=tokenizer.special_id(EOS))
    except KeyError:
        raise ValueError("this tokenizer lacks the special tokens of the masked-LM / span-corruption "
                         "objectives; train it with special_tokens=minillm.objectives.SPECIAL_TOKENS") from None
    ids.sentinels = [tokenizer.special_id(s) for s in tokenizer.special_tokens if s.startswith("<extra_id_")]
    ids.all = sorted(tokenizer.special_to_id.values())
    return ids


def train_tokenizer(text: str, vocab_size: int = 1024):
    """A byte-level BPE tokenizer of ``vocab_size`` tokens trained on ``text``, the special
    tokens included."""
    from ..data import BPETokenizer
    return BPETokenizer.train(text, vocab_size, special_tokens=SPECIAL_TOKENS)
