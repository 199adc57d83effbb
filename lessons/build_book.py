"""Build the lessons into a small static site: every notebook executed and rendered to HTML with its
figures in place, and an index page made from lessons/README.md.

    python lessons/build_book.py                 # full mode (the numbers the lessons quote), slow
    python lessons/build_book.py --quick         # MINILLM_QUICK=1: what CI builds, a few minutes
    python lessons/build_book.py --quick 02 10   # only some lessons
    python lessons/build_book.py --no-execute    # render the committed (output-free) notebooks as they are

The site goes to ``lessons/_build/`` (git-ignored; open ``lessons/_build/index.html``). The committed
notebooks are never modified: each one is executed in memory, in ``lessons/`` like ``pytest --nbmake``,
and a failing cell fails the build. Uses nbclient and nbconvert (the ``dev`` and ``lessons`` extras).

With ``--jobs N`` (N > 1) every kernel gets one thread (``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``,
``MKL_NUM_THREADS``, ``MINILLM_NUM_THREADS`` = 1 in the environment it inherits): N kernels, each with a
BLAS and a minillm thread pool as wide as the machine, oversubscribe its cores, and the lessons' small
matrices then run several times slower than on one thread. Measured on 2 cores, the same notebooks:
``--quick --jobs 2`` took 480 s without this and 101 s with it. A variable already set in the
environment is left as it is.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime
import html
import os
import pathlib
import re
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent


def _link_html(text: str) -> str:
    """Links between lessons point to the rendered pages."""
    return re.sub(r'href="(\d\d_[\w-]+)\.ipynb', r'href="\1.html', text)


# the thread-pool sizes a kernel reads from its environment: BLAS (OpenBLAS, MKL, OpenMP) and minillm's own
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "MINILLM_NUM_THREADS")


def kernel_env(jobs: int) -> dict:
    """The thread settings for the kernels when ``jobs`` notebooks run at once: one thread each when
    jobs > 1 (variables already set are kept), nothing otherwise."""
    if jobs <= 1:
        return {}
    return {k: os.environ.get(k, "1") for k in THREAD_VARS}


def _client(nb, timeout: int):
    """An nbclient NotebookClient whose Output-widget mimic does not write to the kernel.

    nbclient mimics a front end's Output widget (what ``ipywidgets.interact`` draws into) and sends the
    widget's new state back to the kernel on the shell channel, from the task that reads IOPub, while
    another task waits on that same channel for the cell's execute_reply. Now and then the reply is never
    seen and the build waits out the cell timeout (jupyter/nbclient#312; seen here once, on lesson 05's
    slider cell: the kernel idle, the client still waiting). Nothing in a batch run needs that state in
    the kernel: the widget's outputs are recorded in the notebook's widget state without it."""
    from nbclient import NotebookClient
    from nbclient.output_widget import OutputWidget

    class _OutputWidget(OutputWidget):
        def sync_state(self) -> None:
            pass

    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}})
    client.widget_registry["@jupyter-widgets/output"] = {"OutputModel": _OutputWidget}
    return client


def build_one(path: str, out_dir: str, quick: bool, execute: bool, timeout: int, env: dict | None = None) -> tuple:
    import nbformat
    from nbconvert import HTMLExporter

    os.environ["MINILLM_QUICK"] = "1" if quick else "0"
    # the lessons quote numbers measured on NumPy's kernels; the compiled [fast] loops round
    # differently, so the book runs NumPy's, and its pages print what the text quotes
    os.environ["MINILLM_COMPILED"] = "0"
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    os.environ.update(env or {})          # the kernel inherits this process's environment
    nb = nbformat.read(path, as_version=4)
    t0 = time.time()
    if execute:
        for attempt in range(3):
            try:
                _client(nb, timeout).execute()
                break
            except RuntimeError as exc:
                # two kernels started at the same moment can pick the same port ("Kernel died before
                # replying to kernel_info"): start again, a moment later
                if "Kernel died before replying to kernel_info" not in str(exc) or attempt == 2:
                    raise
                time.sleep(2 + 3 * attempt)
                nb = nbformat.read(path, as_version=4)
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    target = pathlib.Path(out_dir) / (pathlib.Path(path).stem + ".html")
    target.write_text(_link_html(body), encoding="utf-8")
    return pathlib.Path(path).stem, time.time() - t0


def index_page(pages: list[str], quick: bool, executed: bool) -> str:
    import mistune

    readme = (HERE / "README.md").read_text(encoding="utf-8")
    body = _link_html(mistune.html(readme))
    mode = ("quick mode (MINILLM_QUICK=1): the numbers in these pages are a smoke test; the lessons' text "
            "quotes full-mode runs" if quick else "full mode: these pages show the numbers the lessons quote")
    if not executed:
        mode = "not executed: the notebooks as committed, without outputs"
    links = "".join(f'<li><a href="{p}.html">{html.escape(p)}</a></li>' for p in pages)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>minillm lessons</title>
<style>body{{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em;line-height:1.45}}
table{{border-collapse:collapse;font-size:0.9em}}td,th{{border:1px solid #ccc;padding:0.3em 0.5em;vertical-align:top}}
code{{background:#f4f4f4;padding:0 0.2em}}pre{{background:#f4f4f4;padding:0.6em;overflow-x:auto}}</style>
</head><body>
<p><em>Built {stamp}, {html.escape(mode)}.</em></p>
<h2>Pages</h2><ol>{links}</ol>
{body}
</body></html>
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("lessons", nargs="*", help="lesson numbers (default: all)")
    ap.add_argument("--quick", action="store_true", help="run the notebooks with MINILLM_QUICK=1")
    ap.add_argument("--no-execute", action="store_true", help="render without running")
    ap.add_argument("--out", default=str(HERE / "_build"), help="output folder (default lessons/_build)")
    ap.add_argument("--jobs", type=int, default=1, help="notebooks executed in parallel")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = ap.parse_args(argv)
    quick = args.quick or os.environ.get("MINILLM_QUICK", "0") not in ("", "0", "false", "False")
    paths = sorted(HERE.glob("[0-9][0-9]_*.ipynb"))
    if args.lessons:
        paths = [p for p in paths if p.name[:2] in args.lessons]
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = []
    jobs = max(1, args.jobs)
    env = kernel_env(min(jobs, len(paths)))
    if env:
        print("kernel threads: " + " ".join(f"{k}={v}" for k, v in env.items()), flush=True)
    with cf.ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(build_one, str(p), str(out), quick, not args.no_execute, args.timeout, env): p
                   for p in paths}
        for fut in cf.as_completed(futures):
            try:
                name, seconds = fut.result()
                print(f"built {name}.html ({seconds:.0f} s)", flush=True)
            except Exception as exc:  # noqa: BLE001 - report every failing lesson, then fail
                failed.append(futures[fut].stem)
                print(f"FAILED {futures[fut].name}: {type(exc).__name__}: {str(exc)[:2000]}", flush=True)
    pages = sorted(p.stem for p in out.glob("[0-9][0-9]_*.html"))
    (out / "index.html").write_text(index_page(pages, quick, not args.no_execute), encoding="utf-8")
    print(f"{len(pages)} pages and index.html in {out}" + (f"; FAILED: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
