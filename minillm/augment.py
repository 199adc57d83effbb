"""Text data augmentation: EDA and corpus-derived synonyms (NumPy only).

This module implements the four operations of *EDA* -- "Easy Data Augmentation"
(Wei & Zou, 2019, "EDA: Easy Data Augmentation Techniques for Boosting
Performance on Text Classification Tasks", EMNLP-IJCNLP):

* **SR** synonym replacement -- replace ``n`` random non-stop words by synonyms,
* **RI** random insertion    -- insert a synonym of a random word at a random place, ``n`` times,
* **RS** random swap         -- swap two random words, ``n`` times,
* **RD** random deletion     -- delete each word independently with probability ``p``,

with the paper's parameterisation ``n = max(1, int(alpha * len(words)))``
(alpha_sr, alpha_ri, alpha_rs) and ``p = p_rd``.

The paper takes synonyms from WordNet. WordNet cannot be downloaded here, so
three offline sources share one interface, ``synonyms(word) -> list[str]``:

* :class:`SynonymTable` -- a small hand-written table of common English and
  Early-Modern English words (``thou -> you``, ``hath -> has``, ``slay -> kill``...),
* :class:`EmbeddingSynonyms` -- nearest neighbours of word vectors learned on the
  corpus itself: windowed co-occurrence counts -> positive PMI -> truncated SVD
  (Levy & Goldberg, 2014, "Neural Word Embedding as Implicit Matrix
  Factorization"; Levy, Goldberg & Dagan, 2015, "Improving Distributional
  Similarity with Lessons Learned from Word Embeddings"),
* :class:`CombinedSynonyms` -- the ordered union of several sources.

:func:`contextual_replacement` is the hook for *contextual augmentation*
(Kobayashi, 2018; Wu et al., 2019 "Conditional BERT contextual augmentation"):
a masked language model proposes the replacement words.

Sentences are tokenised into words, punctuation and line breaks. The EDA
operations only ever pick *word* tokens, so punctuation and line breaks stay
where they were; replacements copy the capitalisation of the word they replace.

Every random choice goes through a :class:`numpy.random.Generator`, so all
results are reproducible from a seed.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Callable, Iterable, Mapping, Sequence, Union

import numpy as np

__all__ = [
    "STOP_WORDS",
    "ARCHAIC_FUNCTION_WORDS",
    "SYNONYM_GROUPS",
    "SYNONYM_TABLE",
    "tokenize",
    "detokenize",
    "is_word",
    "synonym_replacement",
    "random_insertion",
    "random_swap",
    "random_deletion",
    "contextual_replacement",
    "eda",
    "augment_dataset",
    "SynonymTable",
    "EmbeddingSynonyms",
    "CombinedSynonyms",
]

# ---------------------------------------------------------------------------
# Stop words
# ---------------------------------------------------------------------------

# The stop-word list of the reference EDA implementation (Wei & Zou, 2019,
# github.com/jasonwei20/eda_nlp, itself NLTK's English list), plus a few
# Early-Modern English particles and contracted forms. Stop words are never
# *replaced* (SR, contextual replacement) nor used as the source word of an
# insertion (RI).
STOP_WORDS = frozenset("""
i me my myself we our ours ourselves you your yours yourself yourselves he him
his himself she her hers herself it its itself they them their theirs
themselves what which who whom this that these those am is are was were be
been being have has had having do does did doing a an the and but if or
because as until while of at by for with about against between into through
during before after above below to from up down in out on off over under again
further then once here there when where why how all any both each few more
most other some such no nor not only own same so than too very s t can will
just don should now
o oh ay ah 'tis 'twas 'twere 'twill 'twould 'gainst 'em let us shall would
could may might must 'll 'd 's 't
""".split())

# Early-Modern English pronouns and verb forms. They ARE replaceable by EDA
# (``thou -> you`` is a meaningful modernising paraphrase, and the hand-written
# table has such entries), but they are excluded from the *embedding*
# neighbours: in Shakespeare they co-occur with everything, and "thy" is not a
# synonym of "king".
ARCHAIC_FUNCTION_WORDS = frozenset("""
thou thee thy thine ye hath doth dost hast art shalt wilt wouldst couldst
shouldst canst didst hadst mayst mightst wast wert 'tis tis
""".split())

# ---------------------------------------------------------------------------
# Hand-written synonym table
# ---------------------------------------------------------------------------

# Groups of (mostly) interchangeable words. Every word of a group maps to the
# other members of the group (a word in several groups gets their union).
# Verbs are grouped with forms of the same tense/person so that a replacement
# stays grammatical in most contexts.
SYNONYM_GROUPS: tuple = (
    # Early-Modern English <-> modern English
    ("thou", "you"), ("thee", "you"), ("ye", "you"), ("thy", "your"),
    ("thine", "yours"), ("hath", "has"), ("doth", "does"), ("dost", "do"),
    ("hast", "have"), ("shalt", "shall"), ("wilt", "will"),
    ("wherefore", "why"), ("whither", "where"), ("hither", "here"),
    ("thither", "there"), ("ere", "before"), ("oft", "often", "frequently"),
    ("anon", "soon", "shortly", "presently"),
    ("perchance", "perhaps", "haply", "maybe", "mayhap"),
    ("yea", "yes", "ay"), ("nay", "no"), ("alack", "alas"),
    ("forsooth", "truly", "indeed", "verily"), ("betwixt", "between"),
    ("naught", "nothing"), ("aught", "anything"), ("ne'er", "never"),
    ("e'er", "ever"), ("o'er", "over"), ("sirrah", "fellow"),
    ("prithee", "pray", "please"), ("tidings", "news"),
    ("liege", "sovereign", "lord"),
    # people
    ("king", "monarch", "sovereign"), ("lady", "dame", "madam"),
    ("friend", "companion", "comrade"), ("enemy", "foe", "adversary"),
    ("villain", "rogue", "knave", "rascal", "scoundrel"),
    ("wench", "maid", "lass", "girl"), ("fool", "idiot", "dolt"),
    ("child", "babe", "infant"), ("father", "sire"),
    ("servant", "attendant", "servitor"), ("soldier", "warrior"),
    ("master", "lord"),
    # adjectives
    ("good", "fine"), ("fair", "beautiful", "lovely", "comely"),
    ("great", "grand", "mighty"), ("strong", "mighty", "powerful"),
    ("small", "little", "tiny"), ("big", "large"),
    ("happy", "glad", "merry", "joyful"), ("sad", "sorrowful", "mournful", "woeful"),
    ("angry", "wrathful", "furious"), ("brave", "valiant", "bold", "courageous"),
    ("quick", "swift", "fast", "speedy"), ("slow", "sluggish"),
    ("old", "aged", "ancient"), ("young", "youthful"), ("rich", "wealthy"),
    ("poor", "needy"), ("weak", "feeble", "frail"), ("strange", "odd", "curious"),
    ("true", "faithful", "loyal"), ("wise", "sage", "prudent"),
    ("foolish", "silly", "witless"), ("gentle", "mild", "tender"),
    ("cruel", "merciless", "pitiless"), ("dear", "beloved", "precious"),
    ("sick", "ill", "unwell"), ("tired", "weary"),
    ("wicked", "evil", "vile"), ("quiet", "silent", "still"),
    ("holy", "sacred", "blessed"), ("honest", "truthful", "upright"),
    # nouns
    ("fear", "dread", "terror"), ("love", "affection"),
    ("grief", "sorrow", "woe"), ("joy", "delight", "gladness"),
    ("mercy", "pity", "compassion"), ("anger", "wrath", "rage", "fury"),
    ("honour", "honor"), ("shame", "disgrace", "dishonour"),
    ("death", "demise"), ("sword", "blade", "rapier"),
    ("house", "home", "dwelling"), ("land", "country", "realm"),
    ("kingdom", "realm"), ("city", "town"), ("ship", "vessel", "boat"),
    ("horse", "steed"), ("money", "gold", "coin"), ("letter", "note", "epistle"),
    ("morning", "morn", "dawn"), ("evening", "eve", "dusk"),
    ("face", "visage", "countenance"), ("gift", "present"),
    ("crown", "diadem"), ("beauty", "loveliness"), ("mind", "wit"),
    ("quarrel", "brawl", "dispute"), ("war", "warfare"),
    # verbs
    ("kill", "slay", "murder"), ("killed", "slain", "murdered"),
    ("die", "perish"), ("speak", "talk"), ("spoke", "said"),
    ("see", "behold", "view"), ("come", "approach"),
    ("go", "depart"), ("begin", "start", "commence"),
    ("answer", "reply"), ("ask", "inquire"), ("help", "aid", "assist"),
    ("hate", "loathe", "detest"), ("think", "believe", "suppose"),
    ("want", "desire", "wish"), ("give", "grant", "bestow"),
    ("stay", "remain", "tarry", "abide"), ("wait", "tarry"),
    ("weep", "cry", "sob"), ("sleep", "slumber"), ("swear", "vow"),
    ("promise", "vow", "pledge"), ("hold", "keep"), ("fight", "combat"),
    ("seek", "search"), ("leave", "quit"), ("fly", "flee"),
)


def _table_from_groups(groups: Iterable[Sequence[str]]) -> dict:
    table: dict = {}
    for group in groups:
        for w in group:
            lst = table.setdefault(w, [])
            for s in group:
                if s != w and s not in lst:
                    lst.append(s)
    return {w: tuple(v) for w, v in table.items()}


#: word -> tuple of synonyms (lower case), built from :data:`SYNONYM_GROUPS`.
SYNONYM_TABLE: Mapping[str, tuple] = _table_from_groups(SYNONYM_GROUPS)

# ---------------------------------------------------------------------------
# Tokenisation
# ---------------------------------------------------------------------------

# A word: letters, optionally joined by apostrophes/hyphens (``know't``,
# ``bewitch'd``, ``love-tokens``), optionally with a leading apostrophe for
# the Early-Modern contractions ('tis, 'gainst...). Then numbers, line breaks
# and runs of one punctuation character ("--", "...").
_LETTERS = r"[^\W\d_]"
_WORD = (rf"(?:'(?=(?:tis|twas|twere|twill|twould|gainst|em)\b))?"
         rf"{_LETTERS}+(?:['\u2019\-]{_LETTERS}+)*")
_TOKEN_RE = re.compile(rf"\n|{_WORD}|\d+(?:[.,]\d+)*|([^\w\s])\1*", re.IGNORECASE)
_WORD_RE = re.compile(_WORD, re.IGNORECASE)
_NO_SPACE_BEFORE = set(".,;:!?)]}%\u2019")
_NO_SPACE_AFTER = set("([{\u2018$")


def tokenize(text: str) -> list:
    """Split ``text`` into word, number, punctuation and ``"\\n"`` tokens."""
    return [m.group(0) for m in _TOKEN_RE.finditer(text)]


def is_word(token: str) -> bool:
    """True for alphabetic word tokens (the only tokens EDA operates on)."""
    return bool(_WORD_RE.fullmatch(token))


def detokenize(tokens: Sequence[str]) -> str:
    """Join tokens with single spaces, except before closing punctuation,
    after opening brackets, around line breaks, and inside ``"..."`` quotes."""
    out: list = []
    prev = None
    in_quote = False
    for tok in tokens:
        space = True
        if prev is None or prev == "\n" or tok == "\n":
            space = False
        elif tok[0] in _NO_SPACE_BEFORE:
            space = False
        elif prev[-1] in _NO_SPACE_AFTER:
            space = False
        if tok == '"':
            if in_quote:
                space = False
            in_quote = not in_quote
        elif prev == '"' and in_quote:
            space = False
        if space:
            out.append(" ")
        out.append(tok)
        prev = tok
    return "".join(out)


def _match_case(template: str, word: str) -> str:
    """Give ``word`` the capitalisation pattern of ``template``."""
    if len(template) > 1 and template.isupper():
        return word.upper()
    if template[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def _lower(word: str) -> str:
    return word.lower().replace("\u2019", "'")


# ---------------------------------------------------------------------------
# Synonym sources
# ---------------------------------------------------------------------------

SynonymSource = Union[None, Mapping, Callable[[str], Sequence[str]], "SynonymTable",
                      "EmbeddingSynonyms", "CombinedSynonyms"]


def _synonym_fn(source) -> Callable[[str], list]:
    """Turn a synonym source (object with ``.synonyms``, mapping, callable or
    ``None``) into a function ``word -> list of synonyms``."""
    if source is None:
        return lambda w: []
    if hasattr(source, "synonyms"):
        return lambda w: list(source.synonyms(w))
    if isinstance(source, Mapping):
        return lambda w: list(source.get(_lower(w), ()))
    if callable(source):
        return lambda w: list(source(w))
    raise TypeError(f"unsupported synonym source: {type(source).__name__}")


class SynonymTable:
    """Synonyms from a hand-written table (default :data:`SYNONYM_TABLE`).

    ``synonyms(word)`` looks the lower-cased word up and returns its
    synonyms in lower case (callers restore the capitalisation)."""

    def __init__(self, table: Mapping[str, Sequence[str]] | None = None):
        self.table = dict(SYNONYM_TABLE if table is None else table)

    def synonyms(self, word: str) -> list:
        w = _lower(word)
        return [s for s in self.table.get(w, ()) if s != w]

    def __contains__(self, word: str) -> bool:
        return _lower(word) in self.table

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        return f"SynonymTable({len(self)} entries)"


class CombinedSynonyms:
    """Ordered, de-duplicated union of several synonym sources
    (e.g. ``CombinedSynonyms(SynonymTable(), EmbeddingSynonyms.fit(text))``)."""

    def __init__(self, *sources):
        self.sources = [s for s in sources if s is not None]
        self._fns = [_synonym_fn(s) for s in self.sources]

    def synonyms(self, word: str) -> list:
        w = _lower(word)
        out: list = []
        for fn in self._fns:
            for s in fn(word):
                if _lower(s) != w and s not in out:
                    out.append(s)
        return out

    def __repr__(self) -> str:
        return f"CombinedSynonyms({', '.join(map(repr, self.sources))})"


def _randomized_svd(M: np.ndarray, k: int, rng: np.random.Generator,
                    oversample: int = 10, n_iter: int = 4):
    """Rank-``k`` truncated SVD of ``M`` by randomized range finding with power
    iterations (Halko, Martinsson & Tropp, 2011, Alg. 4.4)."""
    n = M.shape[1]
    r = min(k + oversample, min(M.shape))
    Q = M @ rng.standard_normal((n, r)).astype(M.dtype)
    Q, _ = np.linalg.qr(Q)
    for _ in range(n_iter):
        Z, _ = np.linalg.qr(M.T @ Q)
        Q, _ = np.linalg.qr(M @ Z)
    B = Q.T @ M
    Ub, S, Vt = np.linalg.svd(B, full_matrices=False)
    U = Q @ Ub
    return U[:, :k], S[:k], Vt[:k]


class EmbeddingSynonyms:
    """Synonyms as nearest neighbours of word vectors learned on the corpus.

    Build with :meth:`fit`. The vectors are the PPMI-SVD embeddings of
    Levy & Goldberg (2014), who showed that skip-gram with negative sampling
    implicitly factorises a shifted PMI matrix, and that an explicit truncated
    SVD of the *positive* PMI matrix is a strong, cheap alternative; with the
    improvements of Levy, Goldberg & Dagan (2015): context-distribution
    smoothing (``cds=0.75``) and eigenvalue weighting ``W = U * S**0.5``.

    ``neighbors(word, k)`` returns the ``k`` most cosine-similar words;
    ``synonyms(word)`` keeps those of the ``k`` (default ``self.k``) whose
    similarity is at least ``self.threshold``, excluding stop words,
    archaic function words and the word itself.
    """

    def __init__(self, vocab: Sequence[str], vectors: np.ndarray, counts=None,
                 k: int = 5, threshold: float = 0.5):
        self.vocab = list(vocab)
        self.index = {w: i for i, w in enumerate(self.vocab)}
        v = np.asarray(vectors, dtype=np.float32)
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        self.vectors = v / np.maximum(norms, 1e-12)  # unit rows: dot = cosine
        self.counts = None if counts is None else np.asarray(counts)
        self.k = int(k)
        self.threshold = float(threshold)
        self._excluded = np.array([w in STOP_WORDS or w in ARCHAIC_FUNCTION_WORDS
                                   for w in self.vocab], dtype=bool)

    # -- construction --------------------------------------------------------
    @classmethod
    def fit(cls, text: str, vocab_size: int = 5000, dim: int = 64, window: int = 4,
            min_count: int = 5, seed: int = 0, *, dynamic_window: bool = True,
            cds: float = 0.75, eig_weight: float = 0.5, ignore_upper: bool = True,
            k: int = 5, threshold: float = 0.5, n_iter: int = 4
            ) -> "EmbeddingSynonyms":
        """Learn word vectors from ``text``.

        1. tokenise and lower-case; keep the ``vocab_size`` most frequent words
           seen at least ``min_count`` times. With ``ignore_upper`` words
           written entirely in capitals (2+ letters) are skipped: in the
           tinyshakespeare format these are the speaker headings
           (``KING RICHARD III:``), which would otherwise make "king" a
           neighbour of every royal name;
        2. count symmetric co-occurrences of vocabulary words at distance
           ``d = 1..window`` (skipped and out-of-vocabulary words keep their
           slot, as in word2vec without sub-sampling); with ``dynamic_window``
           a pair at distance ``d`` counts ``(window - d + 1) / window``, the
           expected weight of word2vec's randomly shrunk window (Levy et al.
           2015, "dyn");
        3. PPMI(w, c) = max(0, log P(w, c) / (P(w) P_cds(c))) with
           ``P_cds(c) ~ count(c)**cds`` (Levy et al. 2015, smoothing);
        4. randomized truncated SVD ``PPMI ~ U S V^T``; vectors ``U S**eig_weight``.
        """
        rng = np.random.default_rng(seed)
        raw = _WORD_RE.findall(text.replace("\u2019", "'"))
        if ignore_upper:
            words = [w.lower() if not (len(w) > 1 and w.isupper()) else "" for w in raw]
        else:
            words = [w.lower() for w in raw]
        counter = Counter(words)
        counter.pop("", None)
        vocab = [w for w, c in counter.most_common(vocab_size) if c >= min_count]
        V = len(vocab)
        if V < 2:
            raise ValueError("text too small: fewer than 2 words reach min_count")
        index = {w: i for i, w in enumerate(vocab)}
        ids = np.fromiter((index.get(w, -1) for w in words), dtype=np.int64,
                          count=len(words))
        # (2) co-occurrence counts: pair codes w * V + c, counted with np.unique
        codes, weights = [], []
        for d in range(1, window + 1):
            a, b = ids[:-d], ids[d:]
            ok = (a >= 0) & (b >= 0)
            a, b = a[ok], b[ok]
            wd = (window - d + 1) / window if dynamic_window else 1.0
            codes += [a * V + b, b * V + a]  # symmetric window
            weights += [np.full(2 * len(a), wd)]
        codes = np.concatenate(codes)
        uniq, inverse = np.unique(codes, return_inverse=True)
        cnt = np.bincount(inverse.ravel(), weights=np.concatenate(weights),
                          minlength=len(uniq))
        rows, cols = uniq // V, uniq % V
        # (3) positive PMI on the non-zero entries only
        total = cnt.sum()
        row_sum = np.bincount(rows, weights=cnt, minlength=V)
        col_sum = np.bincount(cols, weights=cnt, minlength=V)
        p_w = row_sum / total
        col_s = col_sum ** cds
        p_c = col_s / col_s.sum()
        pmi = np.log(cnt / total) - np.log(p_w[rows]) - np.log(p_c[cols])
        keep = pmi > 0
        M = np.zeros((V, V), dtype=np.float32)
        M[rows[keep], cols[keep]] = pmi[keep]
        # (4) truncated SVD
        kdim = min(dim, V - 1)
        U, S, _ = _randomized_svd(M, kdim, rng, n_iter=n_iter)
        vectors = U * (S ** eig_weight)[None, :]
        return cls(vocab, vectors, counts=[counter[w] for w in vocab], k=k,
                   threshold=threshold)

    # -- queries ------------------------------------------------------------
    def __contains__(self, word: str) -> bool:
        return _lower(word) in self.index

    def __len__(self) -> int:
        return len(self.vocab)

    def vector(self, word: str) -> np.ndarray:
        """Unit-norm vector of ``word`` (KeyError if out of vocabulary)."""
        return self.vectors[self.index[_lower(word)]]

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two in-vocabulary words."""
        return float(self.vector(a) @ self.vector(b))

    def neighbors(self, word: str, k: int = 10, *, exclude_stop: bool = False) -> list:
        """The ``k`` nearest words by cosine similarity, as ``(word, sim)``
        pairs, most similar first, excluding ``word`` itself ([] if unknown).
        With ``exclude_stop`` stop words / archaic function words are skipped."""
        i = self.index.get(_lower(word))
        if i is None:
            return []
        sims = self.vectors @ self.vectors[i]
        sims[i] = -np.inf
        if exclude_stop:
            sims[self._excluded] = -np.inf
        k = min(k, len(self.vocab) - 1)
        top = np.argpartition(-sims, k - 1)[:k] if k > 0 else np.zeros(0, int)
        top = top[np.argsort(-sims[top], kind="stable")]
        return [(self.vocab[j], float(sims[j])) for j in top if np.isfinite(sims[j])]

    def synonyms(self, word: str) -> list:
        """Neighbours (among the ``self.k`` nearest) with cosine similarity
        >= ``self.threshold``, excluding stop words and the word itself.
        Stop-word queries get []."""
        w = _lower(word)
        if w in STOP_WORDS or w in ARCHAIC_FUNCTION_WORDS:
            return []
        return [n for n, s in self.neighbors(w, self.k, exclude_stop=True)
                if s >= self.threshold]

    def __repr__(self) -> str:
        return (f"EmbeddingSynonyms(vocab={len(self.vocab)}, dim={self.vectors.shape[1]}, "
                f"k={self.k}, threshold={self.threshold})")


# ---------------------------------------------------------------------------
# The four EDA operations (Wei & Zou 2019, Sec. 2)
# ---------------------------------------------------------------------------
# They take a list of tokens (plain words, or the output of ``tokenize``) and
# return a NEW list; only word tokens (``is_word``) are ever chosen, so
# punctuation and "\n" tokens keep their places.


def _word_positions(words: Sequence[str]) -> list:
    return [i for i, w in enumerate(words) if is_word(w)]


def _is_stop(word: str) -> bool:
    return _lower(word) in STOP_WORDS


def synonym_replacement(words: Sequence[str], n: int, rng: np.random.Generator,
                        synonyms) -> list:
    """SR: pick distinct non-stop words in random order and replace *every*
    occurrence of each by one random synonym, until ``n`` words have been
    replaced (or no candidate is left). Case follows the replaced word.
    As in the EDA reference code, ``n`` counts distinct words."""
    syn = _synonym_fn(synonyms)
    new = list(words)
    candidates = sorted({_lower(new[i]) for i in _word_positions(new)
                         if not _is_stop(new[i])})
    order = rng.permutation(len(candidates))
    replaced = 0
    for j in order:
        if replaced >= n:
            break
        target = candidates[j]
        options = [s for s in syn(target) if _lower(s) != target]
        if not options:
            continue
        choice = options[int(rng.integers(len(options)))]
        for i, w in enumerate(new):
            if is_word(w) and _lower(w) == target:
                new[i] = _match_case(w, choice)
        replaced += 1
    return new


def random_insertion(words: Sequence[str], n: int, rng: np.random.Generator,
                     synonyms, max_tries: int = 10) -> list:
    """RI: ``n`` times, take a random non-stop word, and insert a random synonym
    of it at a random position. As in EDA, up to ``max_tries`` random words are
    tried to find one with a synonym; if none has one, insertion stops early
    (so at most ``n`` words are added; exactly ``n`` when synonyms exist)."""
    syn = _synonym_fn(synonyms)
    new = list(words)
    for _ in range(n):
        pos = [i for i in _word_positions(new) if not _is_stop(new[i])]
        if not pos:
            break
        options: list = []
        for _try in range(max_tries):
            w = new[pos[int(rng.integers(len(pos)))]]
            options = [s for s in syn(w) if _lower(s) != _lower(w)]
            if options:
                break
        if not options:
            break
        choice = options[int(rng.integers(len(options)))]
        new.insert(int(rng.integers(len(new) + 1)), choice)
    return new


def random_swap(words: Sequence[str], n: int, rng: np.random.Generator) -> list:
    """RS: ``n`` times, swap two distinct randomly chosen words. The multiset of
    tokens is unchanged."""
    new = list(words)
    pos = _word_positions(new)
    if len(pos) < 2:
        return new
    for _ in range(n):
        a, b = rng.choice(len(pos), size=2, replace=False)
        i, j = pos[a], pos[b]
        new[i], new[j] = new[j], new[i]
    return new


_SOFT_PUNCT = frozenset({",", ";", ":"})


def random_deletion(words: Sequence[str], p: float, rng: np.random.Generator) -> list:
    """RD: delete each word independently with probability ``p``. Never returns
    an empty list (nor a list without words): if every word was deleted, one
    random word is kept, as in EDA. A single-word input is returned unchanged.
    Punctuation tokens are kept, except a ``,``/``;``/``:`` left dangling by the
    deletion (after a line start or another punctuation mark)."""
    new = list(words)
    pos = _word_positions(new)
    if len(pos) <= 1:
        return new
    drop = rng.random(len(pos)) < p
    if drop.all():
        drop[int(rng.integers(len(pos)))] = False
    dropped = {pos[k] for k in np.flatnonzero(drop)}
    out: list = []
    for i, w in enumerate(new):
        if i in dropped:
            continue
        # a comma/semicolon/colon orphaned by the deletion of the word before it
        # (at a line start or after other punctuation) goes too: "Now, fair
        # Hippolyta" minus "fair" is "Now, Hippolyta", not "Now,, Hippolyta"
        if (w in _SOFT_PUNCT and (i - 1) in dropped
                and (not out or out[-1] == "\n" or not is_word(out[-1]))):
            continue
        out.append(w)
    return out


def contextual_replacement(words: Sequence[str], n: int, rng: np.random.Generator,
                           predict_fn: Callable[[list, int], Sequence[str]],
                           top_k: int = 1) -> list:
    """Contextual augmentation (Kobayashi 2018; Wu et al. 2019): replace ``n``
    random non-stop words by what a masked language model predicts there.

    ``predict_fn(words, position)`` receives the current word list (earlier
    replacements included) and the position to fill, and returns candidate
    words, most likely first (it is expected to mask ``words[position]``
    itself). Candidates equal to the current word (case-insensitive), stop
    words and non-words (punctuation, sub-word pieces) are skipped; the replacement is drawn uniformly from the first
    ``top_k`` remaining candidates (``top_k=1``: the most likely one). Positions
    with no usable candidate are left unchanged. Case follows the replaced word.
    """
    new = list(words)
    pos = [i for i in _word_positions(new) if not _is_stop(new[i])]
    if not pos or n <= 0:
        return new
    chosen = rng.choice(len(pos), size=min(n, len(pos)), replace=False)
    for c in sorted(int(x) for x in chosen):
        i = pos[c]
        cands = [s for s in predict_fn(list(new), i)
                 if is_word(s) and _lower(s) != _lower(new[i]) and not _is_stop(s)]
        if not cands:
            continue
        cands = cands[:max(1, top_k)]
        choice = cands[int(rng.integers(len(cands)))]
        new[i] = _match_case(new[i], choice)
    return new


# ---------------------------------------------------------------------------
# EDA driver
# ---------------------------------------------------------------------------


def _line_starts(tokens: Sequence[str]) -> list:
    """Index of the first word token of every line (None for a line without words)."""
    starts, cur, seen = [], None, False
    for i, t in enumerate(tokens):
        if t == "\n":
            starts.append(cur)
            cur, seen = None, False
        elif not seen and is_word(t):
            cur, seen = i, True
    starts.append(cur)
    return starts


def _fix_case(orig: Sequence[str], new: list) -> list:
    """Keep line-initial capitalisation: the first word of each line is
    capitalised when the original line started with a capital; a capitalised
    stop word that moved away from a line start is lower-cased. (The operations
    never add, drop or move line breaks, so lines correspond one to one.)"""
    o_starts, n_starts = _line_starts(orig), _line_starts(new)
    if len(o_starts) != len(n_starts):  # defensive; cannot happen with EDA ops
        return new
    out = list(new)
    starts = set(s for s in n_starts if s is not None)
    orig_start_words = {orig[s] for s in o_starts if s is not None}
    for o, n_ in zip(o_starts, n_starts):
        if o is not None and n_ is not None and orig[o][:1].isupper():
            out[n_] = out[n_][:1].upper() + out[n_][1:]
    for i, t in enumerate(out):
        if (i not in starts and is_word(t) and t in orig_start_words and t != "I"
                and t[:1].isupper() and not t.isupper() and _is_stop(t)):
            out[i] = t.lower()
    return out


def eda(sentence: str, synonyms=None, alpha_sr: float = 0.1, alpha_ri: float = 0.1,
        alpha_rs: float = 0.1, p_rd: float = 0.1, num_aug: float = 4,
        seed: Union[int, np.random.Generator, None] = 0) -> list:
    """Generate ``num_aug`` augmented versions of ``sentence`` with EDA.

    As the EDA reference implementation: ``n_per = int(num_aug / n_ops) + 1``
    sentences are produced with each of the ``n_ops`` techniques whose strength
    is > 0 (the reference divides by 4 always, which yields fewer than
    ``num_aug`` sentences when techniques are switched off) -- SR with
    ``n = max(1, int(alpha_sr * n_words))``, RI with ``alpha_ri``, RS with
    ``alpha_rs``, RD with ``p = p_rd`` -- the pool is shuffled and the first
    ``num_aug`` are kept (for ``0 < num_aug < 1``, each is kept with
    probability ``num_aug / len(pool)``). Unlike the reference code the
    original sentence is NOT appended (see :func:`augment_dataset`), and the
    text is not lower-cased nor stripped of punctuation: words, punctuation and
    line breaks are tokenised, only words are operated on, replacements copy the
    case of the word they replace and line-initial capitals are kept.

    ``synonyms``: a synonym source (:class:`SynonymTable`,
    :class:`EmbeddingSynonyms`, :class:`CombinedSynonyms`, a mapping, a callable
    ``word -> list`` or ``None`` -- then SR/RI leave the sentence unchanged).
    ``seed``: an int (same seed -> same output) or a ``numpy.random.Generator``.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    tokens = tokenize(sentence)
    n_words = len(_word_positions(tokens))
    if n_words == 0 or num_aug <= 0:
        return []
    n_ops = sum(a > 0 for a in (alpha_sr, alpha_ri, alpha_rs, p_rd))
    if n_ops == 0:
        return []
    n_per = int(num_aug / n_ops) + 1
    pool: list = []
    if alpha_sr > 0:
        n = max(1, int(alpha_sr * n_words))
        pool += [synonym_replacement(tokens, n, rng, synonyms) for _ in range(n_per)]
    if alpha_ri > 0:
        n = max(1, int(alpha_ri * n_words))
        pool += [random_insertion(tokens, n, rng, synonyms) for _ in range(n_per)]
    if alpha_rs > 0:
        n = max(1, int(alpha_rs * n_words))
        pool += [random_swap(tokens, n, rng) for _ in range(n_per)]
    if p_rd > 0:
        pool += [random_deletion(tokens, p_rd, rng) for _ in range(n_per)]
    out = [detokenize(_fix_case(tokens, t)) for t in pool]
    out = [out[i] for i in rng.permutation(len(out))]
    if num_aug >= 1:
        return out[:int(num_aug)]
    keep = num_aug / max(1, len(out))
    return [s for s in out if rng.random() < keep]


def augment_dataset(texts: Sequence[str], labels: Sequence, num_aug: int = 4,
                    seed: int = 0, **eda_kwargs):
    """Augment a labelled dataset with EDA.

    Returns ``(texts, labels)`` where each original example is followed by its
    augmented copies (up to ``num_aug``), every copy carrying the label of its
    original. ``eda_kwargs`` go to :func:`eda` (``synonyms=``, ``alpha_sr=``...).
    One ``Generator(seed)`` drives the whole dataset, so the result is
    reproducible. ``labels`` comes back as a list, or as a NumPy array when an
    array was given.
    """
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    rng = np.random.default_rng(seed)
    out_texts: list = []
    out_labels: list = []
    for text, label in zip(texts, labels):
        out_texts.append(text)
        out_labels.append(label)
        for aug in eda(text, num_aug=num_aug, seed=rng, **eda_kwargs):
            out_texts.append(aug)
            out_labels.append(label)
    if isinstance(labels, np.ndarray):
        return out_texts, np.asarray(out_labels, dtype=labels.dtype)
    return out_texts, out_labels
