"""Self-checking exercises for the lessons.

Each lesson ``NN_name.ipynb`` ends with exercises: the student fills in a function in the
notebook, and the next cell calls ``check("NN_name", 1, their_function)``. The checks live in
``checks/NN_name.py`` (``exercise_1(fn)``, ``exercise_2(fn)``, ... raising AssertionError with a
hint), the teacher's solutions in ``solutions/NN_name.py`` (``exercise_1``, ...). An unfinished
exercise (a stub that raises NotImplementedError) prints a polite note instead of failing, so the
notebooks run top to bottom in CI; ``tests/test_lesson_exercises.py`` runs every check against
its solution to prove the checks can pass.
"""
from __future__ import annotations

import importlib
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


def quick() -> bool:
    """True when ``MINILLM_QUICK=1``: lessons shrink data and steps to run in CI."""
    return os.environ.get("MINILLM_QUICK", "0") not in ("", "0", "false", "False")


def check(lesson: str, number: int, student_fn) -> bool:
    """Run exercise ``number`` of ``lesson`` against ``student_fn``; print the verdict."""
    test = getattr(importlib.import_module(f"checks.{lesson}"), f"exercise_{number}")
    name = f"{lesson}, exercise {number}"
    try:
        test(student_fn)
    except NotImplementedError:
        print(f"{name}: not attempted yet. Fill in the function above and run this cell again.")
        return False
    except AssertionError as exc:
        print(f"{name}: not quite. {exc}")
        return False
    print(f"{name}: correct ✓")
    return True


def solution(lesson: str, number: int):
    """The teacher's solution (from ``solutions/<lesson>.py``)."""
    return getattr(importlib.import_module(f"solutions.{lesson}"), f"exercise_{number}")
