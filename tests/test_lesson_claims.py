"""The lessons' claims tables (lessons/claims/NN.json) are well formed, and every number they check is
quoted in the lesson's markdown (and, where marked, in lessons/README.md). Runs nothing: the numbers
themselves are compared with full-mode runs by `python lessons/verify_claims.py`."""
import json
import pathlib
import sys

import pytest

LESSONS = pathlib.Path(__file__).resolve().parent.parent / "lessons"
sys.path.insert(0, str(LESSONS))

import verify_claims  # noqa: E402

TABLES = sorted(p.stem for p in (LESSONS / "claims").glob("[0-9]*.json"))


def test_there_are_claims_tables():
    assert len(TABLES) >= 5, TABLES


@pytest.mark.parametrize("number", TABLES)
def test_claims_table_matches_text(number):
    table = json.loads((LESSONS / "claims" / f"{number}.json").read_text(encoding="utf-8"))
    assert table["claims"], f"{number}: empty claims table"
    assert verify_claims.static_problems(number) == []


def test_number_rendering():
    render, norm = verify_claims.render_like, verify_claims.normalize
    assert render(0.55204, "0.552") == "0.552"
    assert render(3.34e26, norm("3 × 10²⁶")) == "3e26"
    assert render(7.34e-4, "7.3 × 10⁻⁴") == "7.3e-4"
    assert render(2410.2, "2,410") == "2,410"
    assert verify_claims.quoted_number("val NLL 0.552 (mean)") == "0.552"


def test_compare_flags_a_moved_number():
    run = {"cells": [{"cell_type": "code", "id": "a", "outputs": [
        {"output_type": "stream", "name": "stdout", "text": ["val loss 0.4677\n"]}]}]}
    claim = {"text": "0.468", "output": r"val loss ([0-9.]+)"}
    original = verify_claims.load_claims
    try:
        verify_claims.load_claims = lambda n: {"claims": [claim]}
        assert verify_claims.compare("xx", {"full": run})[0][3]
        claim["text"] = "0.470"
        assert not verify_claims.compare("xx", {"full": run})[0][3]
    finally:
        verify_claims.load_claims = original
