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


class Verdict:
    """What ``check`` returns: true when the exercise is solved. It displays as nothing, so a notebook
    cell that ends with ``check(...)`` shows the printed verdict and no stray ``True``/``False``."""

    def __init__(self, passed: bool):
        self.passed = bool(passed)

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return f"Verdict({self.passed})"

    def _ipython_display_(self):      # IPython shows nothing for the cell's value
        pass


def _crash_line(exc: BaseException, student_fn) -> str:
    """One line that says where the student's function crashed, or that its result did not fit."""
    code = getattr(student_fn, "__code__", None)
    name = getattr(student_fn, "__name__", "your function")
    tb, line = exc.__traceback__, None
    while tb is not None:
        if code is not None and tb.tb_frame.f_code is code:
            line = tb.tb_lineno - code.co_firstlineno + 1
        tb = tb.tb_next
    what = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:200]
    if line is not None:
        return f"{name} raised {what} (line {line} of {name})."
    return f"the check could not use what {name} returned ({what})."


def check(lesson: str, number: int, student_fn, **given) -> Verdict:
    """Run exercise ``number`` of ``lesson`` against ``student_fn``; print the verdict.

    ``given`` passes the lesson's own data (and, for a predict-then-measure exercise, the student's
    prediction) to the check. A function that crashes gets a one-line message and the exercise's
    hint, not a traceback from ``checks/``.
    """
    test = getattr(importlib.import_module(f"checks.{lesson}"), f"exercise_{number}")
    name = f"{lesson}, exercise {number}"
    try:
        test(student_fn, **given)
    except NotImplementedError:
        print(f"{name}: not attempted yet. Fill in the function above and run this cell again.")
        return Verdict(False)
    except AssertionError as exc:
        print(f"{name}: not quite. {exc}")
        return Verdict(False)
    except Exception as exc:  # the student's code crashed, or returned something unusable
        task = (test.__doc__ or "").strip().splitlines()
        hint = f" The task: {task[0]}" if task else ""
        print(f"{name}: not quite. {_crash_line(exc, student_fn)}{hint}")
        return Verdict(False)
    print(f"{name}: correct ✓")
    return Verdict(True)


def solution(lesson: str, number: int):
    """The teacher's solution (from ``solutions/<lesson>.py``)."""
    return getattr(importlib.import_module(f"solutions.{lesson}"), f"exercise_{number}")
