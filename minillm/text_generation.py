"""Text from a trained model: ``generate_text`` (prompt in, strings out) and
``load_for_sampling`` (a checkpoint's model and tokenizer). ``minillm sample`` uses both; the
token-by-token draw (temperature, top-k) is ``minillm/models/sampling.py``.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from . import backend
from .checkpoint import load_checkpoint
from .tensor import tensor

__all__ = ["generate_text", "load_for_sampling"]


def generate_text(model, tokenizer, prompt: str = "\n", max_new_tokens: int = 500, temperature: float = 0.8,
                  top_k: Optional[int] = 200, seed: Optional[int] = None, num_samples: int = 1):
    """Sample ``num_samples`` continuations of ``prompt`` and return them as strings (each
    starting with the prompt). With ``seed`` the sampling is reproducible and the random state
    of the run is restored afterwards."""
    ids = tokenizer.encode(prompt) if prompt else []
    if not ids:
        raise ValueError("generate_text: the prompt must encode to at least one token (the default is '\\n')")
    device = model.device
    saved = backend.get_rng_state() if seed is not None else None
    if seed is not None:
        backend.manual_seed(seed)
    try:
        idx = tensor(np.array([ids] * num_samples, dtype=np.int64), device=device)
        out = model.generate(idx, max_new_tokens, temperature=temperature, top_k=top_k)
    finally:
        if saved is not None:
            backend.set_rng_state(saved)
    return [tokenizer.decode(row) for row in backend.to_numpy(out.data).tolist()]


def load_for_sampling(path, device="cpu"):
    """The model and tokenizer of a checkpoint file, ready for ``generate_text``."""
    from .data import Tokenizer
    from .models.gpt import GPT, GPTConfig
    device = backend.normalize_device(device)
    checkpoint = load_checkpoint(path)
    if not checkpoint.tokenizer:
        raise ValueError(f"checkpoint {str(path)!r} has no tokenizer; it cannot be sampled as text")
    model = GPT(GPTConfig.from_dict(checkpoint.model_config))
    model.load_state_dict(checkpoint.model_state)
    model.to(device)
    model.eval()
    return model, Tokenizer.from_dict(checkpoint.tokenizer), checkpoint
