"""Every lesson exercise's check passes with the teacher's solution and fails politely on a stub."""
import importlib
import pathlib
import sys

import pytest

LESSONS = pathlib.Path(__file__).resolve().parent.parent / "lessons"
sys.path.insert(0, str(LESSONS))

CASES = []
for path in sorted((LESSONS / "checks").glob("[0-9]*.py")):
    module = importlib.import_module(f"checks.{path.stem}")
    for name in sorted(n for n in dir(module) if n.startswith("exercise_")):
        CASES.append((path.stem, int(name.split("_")[1])))


@pytest.mark.parametrize("lesson,number", CASES, ids=[f"{l}-{n}" for l, n in CASES])
def test_solution_passes_check(lesson, number, capsys):
    import exercises
    assert exercises.check(lesson, number, exercises.solution(lesson, number)), capsys.readouterr().out


@pytest.mark.parametrize("lesson,number", CASES, ids=[f"{l}-{n}" for l, n in CASES])
def test_stub_fails_politely(lesson, number, capsys):
    import exercises

    def stub(*args, **kwargs):
        raise NotImplementedError

    assert not exercises.check(lesson, number, stub)
    assert "not attempted yet" in capsys.readouterr().out


def test_every_lesson_has_checks():
    notebooks = sorted(p.stem for p in LESSONS.glob("[0-9]*.ipynb"))
    with_checks = {lesson for lesson, _ in CASES}
    missing = [n for n in notebooks if n not in with_checks]
    assert not missing, f"lessons without self-checking exercises: {missing}"


def test_crashing_attempt_gets_one_line(capsys):
    """A function that raises (or returns junk) gets one line naming the error, no traceback, and no
    value for the notebook to echo."""
    import exercises

    def crashes(*args, **kwargs):
        return [1, 2][5]

    verdict = exercises.check("10_ensembles", 1, crashes)
    out = capsys.readouterr().out
    assert not verdict and out.count("\n") == 1
    assert "IndexError" in out and "line 2 of crashes" in out and "Traceback" not in out
    verdict = exercises.check("10_ensembles", 3, lambda *a: "three")
    out = capsys.readouterr().out
    assert not verdict and out.count("\n") == 1 and "could not use" in out
    assert hasattr(verdict, "_ipython_display_")
