"""lessons/build_book.py renders the lessons and an index (here without executing them: fast); CI
builds the executed book in quick mode with `python lessons/build_book.py --quick`."""
import pathlib
import sys

LESSONS = pathlib.Path(__file__).resolve().parent.parent / "lessons"
sys.path.insert(0, str(LESSONS))

import build_book  # noqa: E402


def test_renders_pages_and_index(tmp_path):
    assert build_book.main(["--no-execute", "--out", str(tmp_path), "01", "10"]) == 0
    pages = sorted(p.name for p in tmp_path.glob("*.html"))
    assert pages == ["01_autograd.html", "10_ensembles.html", "index.html"]
    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert 'href="10_ensembles.html"' in index and ".ipynb" not in index.split("<h2>Pages</h2>")[1][:200]
    assert "Jensen" in (tmp_path / "10_ensembles.html").read_text(encoding="utf-8")
