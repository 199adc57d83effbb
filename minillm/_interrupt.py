"""Ctrl-C while ``minillm`` (the command) is still importing: one line, no traceback.

``minillm/__init__.py`` calls ``install()`` first thing. It acts only when the process is the
``minillm`` command (the console script or ``python -m minillm``), never for ``import minillm``
in a program or notebook: then an uncaught KeyboardInterrupt prints ``minillm: interrupted``
instead of the import machinery's traceback (the exit status stays that of SIGINT). Once
``minillm.cli.main`` runs, it handles interrupts itself.
"""
import os
import sys


def _is_cli() -> bool:
    argv0 = sys.argv[0] if sys.argv else ""
    # ``python -m minillm``: argv[0] is "-m" while the package is being imported
    return argv0 == "-m" or os.path.basename(argv0) in ("minillm", "minillm.exe", "minillm-script.py")


def install() -> None:
    if not _is_cli() or getattr(sys.excepthook, "_minillm", False):
        return
    previous = sys.excepthook

    def hook(kind, value, tb):
        if isinstance(kind, type) and issubclass(kind, KeyboardInterrupt):
            sys.stderr.write("\nminillm: interrupted\n")
            return
        previous(kind, value, tb)

    hook._minillm = True
    sys.excepthook = hook
