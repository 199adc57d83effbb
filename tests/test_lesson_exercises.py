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

    assert exercises.check(lesson, number, stub) is False
    assert "not attempted yet" in capsys.readouterr().out


def test_every_lesson_has_checks():
    notebooks = sorted(p.stem for p in LESSONS.glob("[0-9]*.ipynb"))
    with_checks = {lesson for lesson, _ in CASES}
    missing = [n for n in notebooks if n not in with_checks]
    assert not missing, f"lessons without self-checking exercises: {missing}"
