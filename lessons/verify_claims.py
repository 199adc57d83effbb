"""Check that every number a lesson quotes is the number the lesson prints.

Each lesson that quotes measured numbers has a claims table, ``lessons/claims/NN.json``::

    {"lesson": "10_ensembles",
     "claims": [
       {"text": "0.552", "output": "mean of members\\s+([0-9.]+)", "readme": true},
       {"text": "89.10%", "output": "ENSEMBLE \\(K=8\\)\\s+\\S+\\s+([0-9.]+)", "scale": 100},
       {"text": "2.417", "output": "attention:\\s+val loss ([0-9.]+)", "mode": "quick"}
     ]}

``text`` is the quote exactly as the lesson's markdown has it (it must appear there; the number
checked is its first one, or ``number`` when given; with
``"readme": true`` its number must also appear, as written, in the lesson's row of
``lessons/README.md``). ``output`` is a regular
expression searched in what the notebook printed (all its stream outputs, in order; ``cell`` limits
it to one cell id, ``occurrence`` picks the n-th match, default the first); its first group is the
measured number, times ``scale`` (default 1). ``mode`` says which run prints it: ``full`` (default)
or ``quick`` (``MINILLM_QUICK=1``); with ``file`` (a path from the repository root) the expression is
searched in that file instead, for numbers a lesson quotes from a results file. The measured number is rounded the way the quote is written
(decimals, significant digits in ``4.0e-10``, thousands separators in ``2,410``) and must equal it.

    python lessons/verify_claims.py 10                 # run lesson 10 in full mode, then compare
    python lessons/verify_claims.py 10 --executed /tmp/10.ipynb   # compare with a run you made
    python lessons/verify_claims.py --all --save /tmp/runs        # every lesson with a claims table
    python lessons/verify_claims.py --static                      # only: every quote is in the text

The exit status is 1 when a quote is missing from the text or differs from the measured number.
Numbers in a markdown paragraph that says "measured", or in the lesson's README row, that are in no
claim are listed as notes, so that a new number cannot slip in unchecked.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
CLAIMS = HERE / "claims"
README = HERE / "README.md"

_SUPERSCRIPT = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")


# ------------------------------------------------------------------ reading notebooks and tables
def lesson_path(number: str) -> pathlib.Path:
    found = sorted(HERE.glob(f"{number}_*.ipynb"))
    if not found:
        raise SystemExit(f"no lesson {number}_*.ipynb in {HERE}")
    return found[0]


def claim_number(claim: dict) -> str:
    """The number a claim checks: ``number`` if given (it must be in ``text``), else the first in ``text``."""
    return claim.get("number") or quoted_number(claim["text"])


def _row_numbers(row: str) -> set:
    return {normalize(m.group(0)).replace(",", "") for m in _NUMBER.finditer(row)}


def load_claims(number: str) -> dict:
    return json.loads((CLAIMS / f"{number}.json").read_text(encoding="utf-8"))


def markdown_text(nb: dict) -> str:
    """All markdown cells, with line breaks made spaces (the text is wrapped at arbitrary places)."""
    text = "\n\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    return re.sub(r"[ \t]*\n[ \t]*(?!\n)", " ", text)


def readme_row(number: str) -> str:
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith(f"| {number} |"):
            return line
    return ""


def printed(nb: dict, cell_id: str | None = None) -> str:
    """Everything the notebook printed (stream outputs and text results), in order."""
    parts = []
    for c in nb["cells"]:
        if c["cell_type"] != "code" or (cell_id is not None and c.get("id") != cell_id):
            continue
        for o in c.get("outputs", []):
            if o.get("output_type") == "stream":
                parts.append("".join(o.get("text", "")))
    return "".join(parts)


# ------------------------------------------------------------------ numbers as written
_NUMBER = re.compile(r"[-−]?\d[\d,]*(?:\.\d+)?(?:\s*×\s*10\^?[-−⁻]?[\d⁰¹²³⁴⁵⁶⁷⁸⁹]+|[eE][-+]?\d+)?")


def quoted_number(text: str) -> str:
    """The number in a quote, as written ("0.552", "89.10", "4.0e-10", "2,410", "7.3 × 10⁻⁴")."""
    m = _NUMBER.search(text)
    if not m:
        raise ValueError(f"no number in quote {text!r}")
    return m.group(0)


def normalize(written: str) -> str:
    """A written number in one canonical form: "7.3 × 10⁻⁴" and "7.3e-04" both become "7.3e-4"."""
    s = written.replace("−", "-").strip().lstrip("+")
    m = re.fullmatch(r"(-?[\d.]+)\s*×\s*10\^?([-⁻]?[\d⁰¹²³⁴⁵⁶⁷⁸⁹]+)", s)
    if m:
        return f"{m.group(1)}e{int(m.group(2).translate(_SUPERSCRIPT))}"
    m = re.fullmatch(r"(-?[\d.]+)[eE]([-+]?\d+)", s)
    if m:
        return f"{m.group(1)}e{int(m.group(2))}"
    return s


def _parse(written: str) -> float:
    return float(normalize(written).replace(",", ""))


def render_like(value: float, written: str) -> str:
    """``value`` rounded and written (in canonical form) the way ``written`` is."""
    s = normalize(written)
    if "e" in s:
        mantissa = s.split("e")[0]
        digits = len(mantissa.split(".")[1]) if "." in mantissa else 0
        m, exponent = f"{value:.{digits}e}".split("e")
        return f"{m}e{int(exponent)}"
    decimals = len(s.split(".")[1]) if "." in s else 0
    return f"{value:,.{decimals}f}" if "," in s else f"{value:.{decimals}f}"


# ------------------------------------------------------------------ running
def execute(path: pathlib.Path, quick: bool, timeout: int = 3600) -> dict:
    """Run a notebook top to bottom (in ``lessons/``, like nbmake) and return it with its outputs."""
    import nbformat
    from nbclient import NotebookClient

    os.environ["MINILLM_QUICK"] = "1" if quick else "0"
    # the quoted numbers were measured on NumPy's kernels (what a lessons install without numba
    # runs); the compiled [fast] loops round differently, so a run with them can move a last digit
    os.environ["MINILLM_COMPILED"] = "0"
    nb = nbformat.read(str(path), as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(HERE)}}).execute()
    return json.loads(nbformat.writes(nb))


# ------------------------------------------------------------------ checking
def static_problems(number: str) -> list[str]:
    """Problems that need no run: malformed claims, quotes missing from the lesson or README."""
    problems = []
    table = load_claims(number)
    path = lesson_path(number)
    if table.get("lesson") != path.stem:
        problems.append(f"{number}: claims file names lesson {table.get('lesson')!r}, the notebook is {path.stem!r}")
    text = markdown_text(json.loads(path.read_text(encoding="utf-8")))
    row = readme_row(number)
    for k, claim in enumerate(table.get("claims", [])):
        where = f"{number} claim {k} ({claim.get('text')!r})"
        unknown = set(claim) - {"text", "number", "output", "scale", "mode", "readme", "cell", "occurrence", "note", "file"}
        if unknown or "text" not in claim or "output" not in claim:
            problems.append(f"{where}: needs 'text' and 'output' (unknown keys: {sorted(unknown)})")
            continue
        try:
            re.compile(claim["output"])
            assert re.compile(claim["output"]).groups >= 1
            quoted_number(claim["text"])
        except Exception as exc:  # noqa: BLE001 - report any malformed entry
            problems.append(f"{where}: malformed ({exc!r})")
            continue
        if claim.get("mode", "full") not in ("full", "quick"):
            problems.append(f"{where}: mode must be 'full' or 'quick'")
        if claim["text"] not in text:
            problems.append(f"{where}: not in the lesson's markdown")
        if claim.get("number") and claim["number"] not in claim["text"]:
            problems.append(f"{where}: its 'number' is not in its 'text'")
        if claim.get("readme") and normalize(claim_number(claim)).replace(",", "") not in _row_numbers(row):
            problems.append(f"{where}: its number is not in the lesson's row of lessons/README.md")
    return problems


def unclaimed_numbers(number: str) -> list[str]:
    """Decimal numbers in markdown paragraphs that report measurements but are in no claim."""
    table = load_claims(number)
    claimed = " ".join(c["text"] for c in table.get("claims", []))
    nb = json.loads(lesson_path(number).read_text(encoding="utf-8"))
    out = []
    for c in nb["cells"]:
        if c["cell_type"] != "markdown":
            continue
        for para in "".join(c["source"]).split("\n\n"):
            if "measured" not in para.lower():
                continue
            flat = re.sub(r"\$[^$]*\$", " ", para.replace("\n", " "))
            for m in re.finditer(r"\d+\.\d+%?", flat):
                if m.group(0).rstrip("%") not in claimed:
                    out.append(m.group(0))
    readme_numbers = {normalize(claim_number(c)).replace(",", "") for c in table.get("claims", []) if c.get("readme")}
    for m in _NUMBER.finditer(readme_row(number)):
        if "." in m.group(0) and normalize(m.group(0)).replace(",", "") not in readme_numbers:
            out.append(f"{m.group(0)} (README)")
    return sorted(set(out))


def compare(number: str, runs: dict) -> list[tuple]:
    """Rows (mode, quote, measured, ok) for every claim, measured from ``runs[mode]``."""
    rows = []
    for claim in load_claims(number)["claims"]:
        mode = claim.get("mode", "full")
        written = claim_number(claim)
        if claim.get("file"):        # a number the lesson quotes from a results file of the repository
            mode = claim["file"]
            source = (HERE.parent / claim["file"]).read_text(encoding="utf-8")
        else:
            source = printed(runs[mode], claim.get("cell"))
        matches = re.findall(claim["output"], source)
        k = claim.get("occurrence", 0)
        if not matches or k >= len(matches) or k < -len(matches):
            rows.append((mode, claim["text"], "not printed", False))
            continue
        hit = matches[k][0] if isinstance(matches[k], tuple) else matches[k]
        value = _parse(hit) * claim.get("scale", 1)
        measured = render_like(value, written)
        rows.append((mode, claim["text"], measured, measured == render_like(_parse(written), written)))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("lessons", nargs="*", help="lesson numbers (01 ... 11)")
    ap.add_argument("--all", action="store_true", help="every lesson with a claims table")
    ap.add_argument("--static", action="store_true", help="no run: only check the tables and the text")
    ap.add_argument("--executed", help="a full-mode executed copy of the (one) lesson, instead of running it")
    ap.add_argument("--quick-executed", help="a quick-mode executed copy, for the quick-mode claims")
    ap.add_argument("--save", help="folder to keep the executed notebooks in")
    args = ap.parse_args(argv)
    numbers = sorted(p.stem for p in CLAIMS.glob("[0-9]*.json")) if args.all or not args.lessons else args.lessons
    failed = False
    for number in numbers:
        problems = static_problems(number)
        for p in problems:
            print("TEXT  ", p)
        failed |= bool(problems)
        for n in unclaimed_numbers(number):
            print(f"NOTE   {number}: {n} is quoted as measured but is in no claim")
        if args.static:
            print(f"{number}: {len(load_claims(number)['claims'])} claims, text {'OK' if not problems else 'FAILS'}")
            continue
        modes = {c.get("mode", "full") for c in load_claims(number)["claims"] if not c.get("file")}
        runs = {}
        for mode in sorted(modes):
            given = args.executed if mode == "full" else args.quick_executed
            if given:
                runs[mode] = json.loads(pathlib.Path(given).read_text(encoding="utf-8"))
                continue
            t0 = time.time()
            runs[mode] = execute(lesson_path(number), quick=(mode == "quick"))
            print(f"{number}: ran in {mode} mode in {time.time() - t0:.0f} s")
            if args.save:
                pathlib.Path(args.save).mkdir(parents=True, exist_ok=True)
                (pathlib.Path(args.save) / f"{number}_{mode}.ipynb").write_text(json.dumps(runs[mode]), encoding="utf-8")
        rows = compare(number, runs)
        bad = [r for r in rows if not r[3]]
        for mode, text, measured, ok in rows:
            print(f"{'ok    ' if ok else 'DIFFER'} {number} [{mode}] quoted {text!r}, measured {measured}")
        print(f"{number}: {len(rows) - len(bad)}/{len(rows)} quoted numbers reproduced")
        failed |= bool(bad)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
