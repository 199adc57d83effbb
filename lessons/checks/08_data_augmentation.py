"""Checks for lesson 08 (text data augmentation, EDA). Each calls the student's function first,
so an unfinished stub raises NotImplementedError before any assertion."""
from collections import Counter

import numpy as np

SENTENCE = ("now fair hippolyta our nuptial hour draws on apace four happy days bring in "
            "another moon but o methinks how slow this old moon wanes").split()


def exercise_1(fn):
    """Random swap: seeded, n swaps of two distinct words, same multiset, input untouched."""
    words = list(SENTENCE)
    out = fn(words, 3, 0)
    assert isinstance(out, list), f"return a new list of words, got {type(out).__name__}"
    assert words == SENTENCE, "do not modify the input list: copy it first (new = list(words))"
    assert Counter(out) == Counter(SENTENCE), (
        "a swap only moves words: the output must contain exactly the same words, as many times each")
    assert out == fn(list(SENTENCE), 3, 0), (
        "same seed, same result: draw every random choice from np.random.default_rng(seed)")
    outs = {tuple(fn(list(SENTENCE), 3, s)) for s in range(10)}
    assert len(outs) > 5, "different seeds should give different swaps (10 seeds gave too few distinct outputs)"
    assert fn(list(SENTENCE), 0, 0) == SENTENCE, "n = 0 swaps should return the sentence unchanged"
    distinct = list(dict.fromkeys(SENTENCE))   # no repeated word, so every swap is visible
    moved = sum(a != b for a, b in zip(fn(list(distinct), 1, 1), distinct))
    assert moved == 2, f"one swap exchanges exactly two (distinct, different) words; {moved} positions changed"
    for s in range(20):
        changed = sum(a != b for a, b in zip(fn(list(SENTENCE), 2, s), SENTENCE))
        assert changed <= 4, f"2 swaps can move at most 4 words, seed {s} moved {changed}"
    assert fn(["alone"], 3, 0) == ["alone"], "a one-word sentence cannot be swapped: return it unchanged"


def exercise_2(fn):
    """Random deletion: each word with probability p, order kept, never empty, seeded."""
    words = list(SENTENCE)
    out = fn(words, 0.3, 0)
    assert isinstance(out, list), f"return a new list of words, got {type(out).__name__}"
    assert words == SENTENCE, "do not modify the input list"
    it = iter(SENTENCE)
    assert all(w in it for w in out), "deletion keeps the remaining words in their original order"
    assert out == fn(list(SENTENCE), 0.3, 0), "same seed, same result: use np.random.default_rng(seed)"
    assert fn(list(SENTENCE), 0.0, 0) == SENTENCE, "p = 0 deletes nothing"
    for s in range(10):
        one = fn(list(SENTENCE), 1.0, s)
        assert len(one) == 1 and one[0] in SENTENCE, (
            f"p = 1 would delete everything; the output must never be empty: keep ONE random word "
            f"(seed {s} gave {one})")
    assert fn(["alone"], 0.9, 0) == ["alone"], "a one-word sentence is returned unchanged"
    long = [f"w{i}" for i in range(2000)]
    kept = np.mean([len(fn(long, 0.25, s)) for s in range(3)]) / len(long)
    assert abs(kept - 0.75) < 0.05, f"with p = 0.25 about 75% of the words should survive, got {kept:.0%}"


def exercise_3(fn):
    """Augment a labelled dataset: originals kept, every copy keeps its label, deterministic."""
    texts = ["O Romeo, Romeo! wherefore art thou Romeo?",
             "Now is the winter of our discontent made glorious summer by this sun of York",
             "If music be the food of love, play on"]
    labels = [5, 1, 0]
    out = fn(list(texts), list(labels), 3, 0)
    assert isinstance(out, (tuple, list)) and len(out) == 2, "return a pair (new_texts, new_labels)"
    new_texts, new_labels = list(out[0]), list(out[1])
    assert len(new_texts) == len(new_labels), "one label per text"
    assert len(new_texts) == len(texts) * 4, (
        f"3 originals with num_aug = 3 copies each make {len(texts) * 4} examples, got {len(new_texts)}")
    for i, (t, y) in enumerate(zip(texts, labels)):
        block_t, block_y = new_texts[4 * i:4 * i + 4], new_labels[4 * i:4 * i + 4]
        assert block_t[0] == t, f"each original comes first, followed by its copies (example {i})"
        assert all(lab == y for lab in block_y), (
            f"every augmented copy must carry the label of its original: example {i} has label {y}, "
            f"its copies got {block_y[1:]}")
        assert any(a != t for a in block_t[1:]), f"the copies of example {i} should differ from the original"
    again = fn(list(texts), list(labels), 3, 0)
    assert list(again[0]) == new_texts, "same seed, same augmented dataset"
    assert list(fn(list(texts), list(labels), 3, 1)[0]) != new_texts, "a different seed should give other copies"
