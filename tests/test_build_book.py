"""lessons/build_book.py renders the lessons and an index (here without executing them: fast); CI
builds the executed book in quick mode with `python lessons/build_book.py --quick`."""
import os
import pathlib
import sys

import pytest

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


def test_parallel_kernels_get_one_thread_each(monkeypatch):
    for name in build_book.THREAD_VARS:
        monkeypatch.delenv(name, raising=False)
    assert build_book.kernel_env(1) == {}
    assert build_book.kernel_env(2) == {name: "1" for name in build_book.THREAD_VARS}
    monkeypatch.setenv("OMP_NUM_THREADS", "3")             # set by the caller: kept
    assert build_book.kernel_env(2)["OMP_NUM_THREADS"] == "3"


def test_output_widget_mimic_does_not_write_to_the_kernel():
    import nbformat

    client = build_book._client(nbformat.v4.new_notebook(), timeout=10)
    widget = client.widget_registry["@jupyter-widgets/output"]["OutputModel"]
    sent = []
    mimic = widget("c0", {"outputs": []}, None, client)
    mimic.send = sent.append
    mimic.sync_state()
    assert sent == []


def test_an_executed_notebook_sees_the_book_environment(tmp_path, monkeypatch):
    """build_one runs a notebook in a kernel that inherits the book's settings: quick mode, NumPy's
    kernels (the lessons quote figures measured on them), one thread per pool when several notebooks
    run at once. The notebook prints what its kernel sees; the test reads the executed page."""
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    names = build_book.THREAD_VARS + ("MINILLM_QUICK", "MINILLM_COMPILED", "MPLBACKEND")
    for name in names:   # monkeypatch restores each of them after the test
        monkeypatch.delenv(name, raising=False)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import os\n"
        f"print(*[f'{{k}}={{os.environ.get(k)}}' for k in {names!r}], sep='|')")])
    path = tmp_path / "env_probe.ipynb"
    nbformat.write(nb, str(path))
    name, _ = build_book.build_one(str(path), str(tmp_path), quick=True, execute=True, timeout=120,
                                   env=build_book.kernel_env(2))
    page = (tmp_path / f"{name}.html").read_text(encoding="utf-8")
    for var in build_book.THREAD_VARS:
        assert f"{var}=1" in page
    assert "MINILLM_QUICK=1" in page and "MINILLM_COMPILED=0" in page
    assert os.environ["MINILLM_COMPILED"] == "0"   # set in this process too, for the kernel to inherit
