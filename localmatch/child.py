"""Running one of localmatch's functions in a child Python, for compiled readers that can crash on a
corrupt file (scipy's MAT reader, libheif): the crash ends the child, and the parent reports the file.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])  # the folder holding this localmatch package
_RUN = "import sys, importlib; sys.path.insert(0, sys.argv[1]); getattr(importlib.import_module(sys.argv[2]), sys.argv[3])(*sys.argv[4:])"


def child_command(module: str, function: str, *args: str) -> list[str]:
    """The command line of a child Python that calls ``module.function(*args)`` of this very package (not of
    whatever ``localmatch`` the child's working folder holds)."""
    return [sys.executable, "-c", _RUN, _PACKAGE_ROOT, module, function, *args]


def describe_crash(returncode: int) -> str:
    """How a child ended that did not exit by itself: ``"SIGSEGV"``, or the exit status (Windows)."""
    if returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"exit status {returncode}"
