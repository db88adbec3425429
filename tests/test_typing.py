"""localmatch ships ``py.typed``, so type checkers read its annotations: they must hold.

mypy runs with the settings in pyproject.toml (``[tool.mypy]``: faiss's SWIG-generated stubs, tqdm and scipy
are read as untyped).
"""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("platform", ["linux", "win32"])  # win32: the branches only Windows runs (database lock)
def test_the_package_type_checks(tmp_path, platform):
    api = pytest.importorskip("mypy.api", reason="mypy is not installed (pip install -e '.[test]')")
    stdout, stderr, status = api.run(["--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(tmp_path),
                                      "--platform", platform, str(ROOT / "localmatch")])
    assert status == 0, stdout + stderr
