"""Tokenizers: characters (as nanoGPT's shakespeare_char) and byte-level BPE.

Common interface (:class:`Tokenizer`)::

    ids = tok.encode(text)              # list[int]
    arr = tok.encode_array(text)        # np.ndarray, smallest unsigned dtype that fits
    text = tok.decode(ids)
    tok.vocab_size
    tok.save("tok.json"); tok2 = load_tokenizer("tok.json")   # or Tokenizer.load(...)
    d = tok.to_dict(); tok3 = Tokenizer.from_dict(d)          # embeddable in a checkpoint

Both tokenizers accept *special tokens* (``[PAD]``, ``[MASK]``, ``[CLS]``,
``<extra_id_0>``, ...).  They get their own ids at the end of the vocabulary,
never take part in BPE merges, and a special token's literal text inside ``text``
is encoded as that token only with ``encode(text, allow_special=True)``; by
default it is encoded as ordinary text, so untrusted input cannot inject control
tokens.

Byte-level BPE
--------------
Byte-pair encoding (Sennrich, Haddow & Birch 2016, "Neural Machine Translation of
Rare Words with Subword Units") starts from a base vocabulary and repeatedly adds
the most frequent adjacent pair of symbols as a new symbol.  GPT-2 (Radford et al.
2019, "Language Models are Unsupervised Multitask Learners") runs it on the *UTF-8
bytes* of the text: the 256 bytes are the base vocabulary, so every string can be
encoded with no unknown token and ``decode(encode(x)) == x`` for any unicode
``x``.  Text is first *pre-tokenized* with a regex into words (letters with an
optional leading space, numbers, punctuation runs, whitespace) and merges never
cross a word boundary.  GPT-2's pattern uses ``\\p{L}``/``\\p{N}`` from the
third-party ``regex`` module; :data:`GPT2_SPLIT_PATTERN` approximates them with the
standard library ``re`` (letters = ``[^\\W\\d_]``, numbers = ``\\d``).

Training works on word *counts* (Shakespeare has ~1M words but only ~40k distinct
ones) and updates the pair counts incrementally: merging ``(a, b)`` only revisits
the words that contain that pair, and a lazy max-heap yields the next most
frequent pair (ties broken by the smallest pair of ids, so training is fully
deterministic).  Encoding merges each word by merge rank (lowest first) and
caches the result per distinct word.
"""
from __future__ import annotations

import heapq
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple, Type

import numpy as np

__all__ = [
    "Tokenizer",
    "CharTokenizer",
    "BPETokenizer",
    "load_tokenizer",
    "GPT2_SPLIT_PATTERN",
]

#: GPT-2's pre-tokenization pattern, approximated with the standard-library ``re``:
#: contractions, letters with an optional leading space, digits with an optional
#: leading space, other symbols with an optional leading space, then whitespace
#: (a run of spaces before a word leaves its last space to that word).  Every
#: character of the input is matched by exactly one alternative, so the pieces
#: concatenate back to the text.
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+"""


def _small_uint_dtype(vocab_size: int) -> np.dtype:
    if vocab_size <= 1 << 8:
        return np.dtype(np.uint8)
    if vocab_size <= 1 << 16:
        return np.dtype(np.uint16)
    return np.dtype(np.int32)


class Tokenizer:
    """Base class: subclasses implement ``_encode_ordinary``, ``_decode_bytes``/``decode``,
    ``vocab_size``, ``_to_dict`` and ``_from_dict``; special tokens are handled here."""

    type: str = ""
    _registry: Dict[str, Type["Tokenizer"]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.type:
            Tokenizer._registry[cls.type] = cls

    # -- special tokens -----------------------------------------------------------------------
    def _init_special(self, special_tokens: Iterable[str], first_id: int) -> None:
        special = list(special_tokens or ())
        for s in special:
            if not isinstance(s, str) or not s:
                raise ValueError(f"special tokens must be non-empty strings, got {s!r}")
        if len(set(special)) != len(special):
            raise ValueError(f"duplicate special tokens: {special}")
        self.special_tokens: Tuple[str, ...] = tuple(special)
        self.special_to_id: Dict[str, int] = {s: first_id + i for i, s in enumerate(special)}
        self.id_to_special: Dict[int, str] = {i: s for s, i in self.special_to_id.items()}
        # longest first, so "<extra_id_10>" wins over "<extra_id_1>"
        self._special_re = (re.compile("|".join(re.escape(s) for s in
                                                sorted(special, key=len, reverse=True)))
                            if special else None)

    def special_id(self, token: str) -> int:
        """The id of a special token, e.g. ``tok.special_id("[MASK]")``."""
        try:
            return self.special_to_id[token]
        except KeyError:
            raise KeyError(f"{token!r} is not a special token of this tokenizer "
                           f"(special tokens: {list(self.special_tokens)})") from None

    # -- encoding -----------------------------------------------------------------------------
    def _encode_ordinary(self, text: str, offset: int = 0) -> List[int]:
        raise NotImplementedError

    def encode(self, text: str, allow_special: bool = False) -> List[int]:
        """Token ids of ``text``.  Special tokens' literal text becomes their id only
        with ``allow_special=True``; otherwise it is encoded as ordinary text."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        if not allow_special or self._special_re is None:
            return self._encode_ordinary(text)
        ids: List[int] = []
        pos = 0
        for m in self._special_re.finditer(text):
            if m.start() > pos:
                ids.extend(self._encode_ordinary(text[pos:m.start()], offset=pos))
            ids.append(self.special_to_id[m.group()])
            pos = m.end()
        if pos < len(text):
            ids.extend(self._encode_ordinary(text[pos:], offset=pos))
        return ids

    def encode_array(self, text: str, allow_special: bool = False) -> np.ndarray:
        """Like :meth:`encode` but a 1-D NumPy array of the smallest dtype that holds
        every id (``uint8``, ``uint16`` or ``int32``)."""
        return np.asarray(self.encode(text, allow_special=allow_special),
                          dtype=_small_uint_dtype(self.vocab_size))

    def decode(self, ids) -> str:
        raise NotImplementedError

    def _check_ids(self, ids) -> List[int]:
        """``ids`` (list, tuple, NumPy/CuPy array, scalar) as a list of in-range ints."""
        if hasattr(ids, "tolist"):  # NumPy/CuPy arrays and scalars
            ids = ids.tolist()
        if isinstance(ids, int):
            ids = [ids]
        ids = list(ids)
        n = self.vocab_size
        if ids and (min(ids) < 0 or max(ids) >= n):
            for pos, i in enumerate(ids):
                if not 0 <= i < n:
                    raise ValueError(f"token id {i} at position {pos} is out of range "
                                     f"for a vocabulary of {n} tokens")
        return ids

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def __len__(self) -> int:
        return self.vocab_size

    # -- serialization ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """A JSON-serializable description (with a ``"type"`` field) of the tokenizer."""
        d = {"type": self.type, "version": 1}
        d.update(self._to_dict())
        d["special_tokens"] = list(self.special_tokens)
        return d

    def _to_dict(self) -> dict:
        raise NotImplementedError

    @classmethod
    def from_dict(cls, d: dict) -> "Tokenizer":
        """Rebuild a tokenizer from :meth:`to_dict` output, dispatching on ``d["type"]``."""
        if not isinstance(d, dict) or "type" not in d:
            raise ValueError("not a tokenizer description: expected a dict with a 'type' field")
        kind = d["type"]
        sub = Tokenizer._registry.get(kind)
        if sub is None:
            raise ValueError(f"unknown tokenizer type {kind!r}; known: {sorted(Tokenizer._registry)}")
        if cls is not Tokenizer and not issubclass(sub, cls):
            raise ValueError(f"expected a {cls.type!r} tokenizer, got {kind!r}")
        return sub._from_dict(d)

    @classmethod
    def _from_dict(cls, d: dict) -> "Tokenizer":
        raise NotImplementedError

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_json(cls, s: str) -> "Tokenizer":
        return cls.from_dict(json.loads(s))

    def save(self, path) -> None:
        """Write the tokenizer as UTF-8 JSON (atomically: temp file + rename)."""
        path = Path(os.fspath(path))
        if path.parent and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path) -> "Tokenizer":
        """Read a tokenizer saved with :meth:`save` (any type, dispatching on ``"type"``)."""
        path = Path(os.fspath(path))
        if not path.exists():
            raise FileNotFoundError(f"tokenizer file not found: {str(path)!r}")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"tokenizer file {str(path)!r} is not valid JSON: {e}") from None
        return cls.from_dict(d)

    def __eq__(self, other) -> bool:
        return isinstance(other, Tokenizer) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.to_json())


def load_tokenizer(path) -> Tokenizer:
    """Load any tokenizer saved with ``save`` (dispatches on its ``"type"`` field)."""
    return Tokenizer.load(path)


# ============================================================================ characters

class CharTokenizer(Tokenizer):
    """One token per character: the sorted unique characters of a text (as nanoGPT's
    ``data/shakespeare_char/prepare.py``), then any special tokens."""

    type = "char"

    def __init__(self, chars: Sequence[str], special_tokens: Iterable[str] = ()):
        chars = list(chars)
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"a CharTokenizer vocabulary holds single characters, got {c!r}")
        if len(set(chars)) != len(chars):
            raise ValueError("duplicate characters in the vocabulary")
        self.chars: Tuple[str, ...] = tuple(chars)
        self.stoi: Dict[str, int] = {c: i for i, c in enumerate(chars)}
        self.itos: Dict[int, str] = dict(enumerate(chars))
        self._init_special(special_tokens, first_id=len(chars))
        self._id_to_str: List[str] = list(chars) + list(self.special_tokens)
        # code point -> id lookup table for the vectorized encode_array (-1: not in vocabulary)
        top = max((ord(c) for c in chars), default=-1)
        self._lut = np.full(top + 2, -1, dtype=np.int32)  # last slot: any larger code point
        for i, c in enumerate(chars):
            self._lut[ord(c)] = i

    @classmethod
    def from_text(cls, text: str, special_tokens: Iterable[str] = ()) -> "CharTokenizer":
        if not text:
            raise ValueError("cannot build a character vocabulary from an empty text")
        return cls(sorted(set(text)), special_tokens=special_tokens)

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + len(self.special_tokens)

    def _oov_error(self, text: str, offset: int) -> ValueError:
        for pos, c in enumerate(text):
            if c not in self.stoi:
                return ValueError(
                    f"character {c!r} (U+{ord(c):04X}) at position {offset + pos} is not in the "
                    f"vocabulary of this CharTokenizer ({len(self.chars)} characters); build the "
                    f"vocabulary from a text that contains it, or use a byte-level BPETokenizer")
        return ValueError("character not in the vocabulary")  # pragma: no cover

    def _encode_ordinary(self, text: str, offset: int = 0) -> List[int]:
        stoi = self.stoi
        try:
            return [stoi[c] for c in text]
        except KeyError:
            raise self._oov_error(text, offset) from None

    def encode_array(self, text: str, allow_special: bool = False) -> np.ndarray:
        dtype = _small_uint_dtype(self.vocab_size)
        if allow_special and self._special_re is not None and self._special_re.search(text):
            return np.asarray(self.encode(text, allow_special=True), dtype=dtype)
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        # vectorized: code points -> ids through a lookup table
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        codes = np.minimum(codes, len(self._lut) - 1)
        ids = self._lut[codes]
        if len(ids) and ids.min() < 0:
            raise self._oov_error(text, 0)
        return ids.astype(dtype)

    def decode(self, ids) -> str:
        ids = self._check_ids(ids)
        return "".join(map(self._id_to_str.__getitem__, ids))

    def _to_dict(self) -> dict:
        return {"chars": "".join(self.chars)}

    @classmethod
    def _from_dict(cls, d: dict) -> "CharTokenizer":
        return cls(list(d["chars"]), special_tokens=d.get("special_tokens", ()))

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size}, special_tokens={list(self.special_tokens)})"


# ============================================================================ byte-level BPE

def _merge_word(word: List[int], a: int, b: int, new: int) -> List[int]:
    out: List[int] = []
    i, n = 0, len(word)
    while i < n:
        if i < n - 1 and word[i] == a and word[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


class BPETokenizer(Tokenizer):
    """Byte-level BPE (GPT-2 style) trained from scratch; see the module docstring.

    Ids: ``0..255`` are the bytes, ``256 + k`` is the ``k``-th merge, and the special
    tokens come last.  ``vocab_size = 256 + len(merges) + len(special_tokens)``.
    """

    type = "bpe"

    def __init__(self, merges: Sequence[Tuple[int, int]] = (), special_tokens: Iterable[str] = (),
                 pattern: str = GPT2_SPLIT_PATTERN, cache_size: int = 1 << 20):
        self.merges: List[Tuple[int, int]] = [(int(a), int(b)) for a, b in merges]
        vocab: List[bytes] = [bytes([i]) for i in range(256)]
        ranks: Dict[Tuple[int, int], int] = {}
        for k, (a, b) in enumerate(self.merges):
            new = 256 + k
            if not (0 <= a < new and 0 <= b < new):
                raise ValueError(f"merge {k} ({a}, {b}) refers to an id not yet defined")
            if (a, b) in ranks:
                raise ValueError(f"merge {k} ({a}, {b}) is a duplicate")
            ranks[(a, b)] = new
            vocab.append(vocab[a] + vocab[b])
        self.ranks = ranks  # pair -> merged id (a lower id means an earlier merge)
        self._vocab = vocab
        self.pattern = pattern
        self._split_re = re.compile(pattern)
        self._init_special(special_tokens, first_id=len(vocab))
        for s in self.special_tokens:
            vocab_bytes = s.encode("utf-8")
            self._vocab.append(vocab_bytes)
        self._cache: Dict[str, List[int]] = {}
        self._cache_size = cache_size

    # -- training -----------------------------------------------------------------------------
    @classmethod
    def train(cls, text: str, vocab_size: int = 512, special_tokens: Iterable[str] = (),
              min_frequency: int = 2, pattern: str = GPT2_SPLIT_PATTERN,
              verbose: bool = False) -> "BPETokenizer":
        """Learn merges on ``text`` until ``vocab_size`` tokens (bytes + merges +
        special tokens), stopping early when no pair occurs ``min_frequency`` times.

        Special tokens appearing literally in ``text`` are cut out before counting, so
        merges never cross or include them.
        """
        special_tokens = list(special_tokens or ())
        n_merges = vocab_size - 256 - len(special_tokens)
        if n_merges < 0:
            raise ValueError(f"vocab_size={vocab_size} is smaller than the 256 byte tokens plus "
                             f"{len(special_tokens)} special tokens")
        split_re = re.compile(pattern)
        if special_tokens:
            special_re = re.compile("|".join(re.escape(s) for s in
                                             sorted(special_tokens, key=len, reverse=True)))
            chunks = special_re.split(text)
        else:
            chunks = [text]
        word_counts: Counter = Counter()
        for chunk in chunks:
            word_counts.update(split_re.findall(chunk))

        words: List[List[int]] = [list(w.encode("utf-8")) for w in word_counts]
        freqs: List[int] = list(word_counts.values())
        pair_counts: Dict[Tuple[int, int], int] = {}
        where: Dict[Tuple[int, int], set] = {}
        for wi, (w, f) in enumerate(zip(words, freqs)):
            for pair in zip(w, w[1:]):
                pair_counts[pair] = pair_counts.get(pair, 0) + f
                s = where.get(pair)
                if s is None:
                    where[pair] = {wi}
                else:
                    s.add(wi)
        heap = [(-c, p) for p, c in pair_counts.items()]
        heapq.heapify(heap)

        merges: List[Tuple[int, int]] = []
        while len(merges) < n_merges and heap:
            neg, pair = heapq.heappop(heap)
            count = pair_counts.get(pair, 0)
            if count != -neg:  # stale entry: every count change pushed a fresh one
                continue
            if count < min_frequency:
                break
            new = 256 + len(merges)
            merges.append(pair)
            a, b = pair
            changed = set()
            for wi in where.pop(pair, ()):
                w = words[wi]
                f = freqs[wi]
                nw = _merge_word(w, a, b, new)
                words[wi] = nw
                old_pairs = list(zip(w, w[1:]))
                new_pairs = list(zip(nw, nw[1:]))
                for p in old_pairs:
                    pair_counts[p] -= f
                for p in new_pairs:
                    pair_counts[p] = pair_counts.get(p, 0) + f
                changed.update(old_pairs)
                changed.update(new_pairs)
                old_set, new_set = set(old_pairs), set(new_pairs)
                for p in old_set - new_set:
                    s = where.get(p)
                    if s is not None:
                        s.discard(wi)
                for p in new_set - old_set:
                    s = where.get(p)
                    if s is None:
                        where[p] = {wi}
                    else:
                        s.add(wi)
            pair_counts.pop(pair, None)
            changed.discard(pair)
            for p in changed:
                c = pair_counts.get(p, 0)
                if c > 0:
                    heapq.heappush(heap, (-c, p))
                else:
                    pair_counts.pop(p, None)
                    where.pop(p, None)
            if verbose and len(merges) % 100 == 0:
                print(f"merge {len(merges)}/{n_merges}: {pair} -> {new} (count {count})")
        return cls(merges, special_tokens=special_tokens, pattern=pattern)

    # -- encoding -----------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self._vocab)

    def _encode_word(self, word: str) -> List[int]:
        ids = list(word.encode("utf-8"))
        ranks = self.ranks
        while len(ids) > 1:
            best = None
            best_rank = None
            for pair in zip(ids, ids[1:]):
                r = ranks.get(pair)
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = pair, r
            if best is None:
                break
            ids = _merge_word(ids, best[0], best[1], best_rank)
        return ids

    def _encode_ordinary(self, text: str, offset: int = 0) -> List[int]:
        cache = self._cache
        out: List[int] = []
        for word in self._split_re.findall(text):
            ids = cache.get(word)
            if ids is None:
                ids = self._encode_word(word)
                if len(cache) >= self._cache_size:
                    cache.clear()
                cache[word] = ids
            out.extend(ids)
        return out

    def token_bytes(self, i: int) -> bytes:
        """The bytes a token id stands for (a special token: its UTF-8 text)."""
        return self._vocab[i]

    def decode(self, ids) -> str:
        ids = self._check_ids(ids)
        return b"".join(map(self._vocab.__getitem__, ids)).decode("utf-8", errors="replace")

    # -- serialization ------------------------------------------------------------------------
    def _to_dict(self) -> dict:
        return {"pattern": self.pattern, "merges": [list(m) for m in self.merges]}

    @classmethod
    def _from_dict(cls, d: dict) -> "BPETokenizer":
        return cls([tuple(m) for m in d["merges"]], special_tokens=d.get("special_tokens", ()),
                   pattern=d.get("pattern", GPT2_SPLIT_PATTERN))

    def __repr__(self) -> str:
        return (f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
                f"special_tokens={list(self.special_tokens)})")
