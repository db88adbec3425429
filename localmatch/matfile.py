"""Reading Revisited Oxford/Paris ground truth (``gnd_*.mat``) in a child process.

scipy's MATLAB reader is compiled code that can crash the process on a corrupt file (scipy 1.17: one
changed byte in a small struct array gives a segmentation fault), so the file is read by a child Python
that imports this very module (not whatever ``localmatch`` its working folder holds) and prints the
fields as JSON; a crash there becomes a ``GroundTruthError`` here. The child costs about 0.5 s, once per
evaluation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from localmatch.child import child_command, describe_crash
from localmatch.errors import GroundTruthError

_CHILD_FAILED = 3  # exit status of a child that could not read the file (its reason is on stderr)


def read_revisited_mat(path: str | os.PathLike) -> dict:
    """``{"imlist": [name], "qimlist": [name], "gnd": [{"easy", "hard", "junk": [index], "bbx": [4] | None}]}``.

    Indices are as stored (0-based in the published files) and not yet checked against ``imlist``.
    Raises ``GroundTruthError`` naming the file and the reason when it cannot be read.
    """
    path = os.fspath(path)
    child = subprocess.run(child_command(__name__, "child_main", path), capture_output=True, text=True)
    if child.returncode == 0:
        return json.loads(child.stdout)
    if child.returncode == _CHILD_FAILED:
        reason = child.stderr.strip().splitlines()[-1]
    elif child.returncode < 0:
        reason = f"scipy's MAT reader crashed on it ({describe_crash(child.returncode)}); the file is corrupt"
    else:
        reason = f"the reader failed (exit status {child.returncode}): {child.stderr.strip()[-500:]}"
    raise GroundTruthError(f"{path}: {reason}")


def _fields(path: str) -> dict:
    """The child's side: load with scipy and keep the ground-truth fields as JSON-ready lists."""
    import numpy as np
    from scipy.io import loadmat

    try:
        mat = loadmat(path, squeeze_me=True, struct_as_record=False)
    except OSError as e:
        raise GroundTruthError(f"cannot read ({e.strerror or e})") from None
    except Exception as e:  # scipy raises ValueError, MatReadError, NotImplementedError (v7.3), ...
        raise GroundTruthError(f"not a MATLAB .mat file scipy can read ({type(e).__name__}: {e})") from None
    missing = [key for key in ("imlist", "qimlist", "gnd") if key not in mat]
    if missing:
        raise GroundTruthError(f"not a Revisited Oxford/Paris ground truth (no {', '.join(missing)})")

    def numbers(value: object, name: str) -> list:
        array = np.atleast_1d(np.asarray(value))
        if array.size and array.dtype.kind not in "iuf":
            raise GroundTruthError(f"gnd.{name} holds {array.dtype} values, not numbers")
        return array.astype(np.float64).ravel().tolist()

    gnd = []
    for g in np.atleast_1d(mat["gnd"]):
        entry: dict[str, list | None] = {name: numbers(getattr(g, name, []), name) for name in ("easy", "hard", "junk")}
        bbx = getattr(g, "bbx", None)
        entry["bbx"] = numbers(bbx, "bbx") if bbx is not None else None
        gnd.append(entry)
    return {"imlist": [str(x) for x in np.atleast_1d(mat["imlist"])],
            "qimlist": [str(x) for x in np.atleast_1d(mat["qimlist"])], "gnd": gnd}


def child_main(path: str) -> None:
    """Run in the child: print the fields as JSON, or the reason on stderr and exit with ``_CHILD_FAILED``."""
    try:
        fields = _fields(path)
    except GroundTruthError as e:
        print(e, file=sys.stderr)
        sys.exit(_CHILD_FAILED)
    json.dump(fields, sys.stdout)
