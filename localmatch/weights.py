"""Pretrained weights: the manifest, where files are looked for, and sha256 checks.

Resolution order for a model named in ``weights/manifest.json``:

1. ``$LOCALMATCH_WEIGHTS/<file>`` (CI points it at the shared weights folder);
2. the torch hub cache, ``$TORCH_HOME/hub/checkpoints/<file or kornia's cache name>``;
3. the pip package that ships the file, when the manifest names one;
4. a download from the manifest's URLs into the torch hub cache.

Every file is checked against the manifest's sha256 before it is used; a mismatch is refused. Files are
loaded with ``torch.load(..., weights_only=True)`` and only after that check. The LoFTR checkpoints have no
published sha256 (``null`` in the manifest): they are used unchecked, with a warning, and still only through
``weights_only=True``, which cannot run code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from importlib.util import find_spec
from pathlib import Path

from localmatch.errors import LocalmatchError

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 20


class WeightsError(LocalmatchError):
    """A weights file is missing, cannot be fetched, or does not match its sha256."""


@dataclass(frozen=True)
class WeightsEntry:
    name: str
    file: str
    sha256: str | None
    urls: tuple[str, ...] = ()
    licence: str = ""
    kornia_cache_name: str | None = None
    pip_package: str | None = None
    pip_path: str | None = None


@lru_cache(maxsize=1)
def manifest() -> dict[str, WeightsEntry]:
    raw = json.loads((files("localmatch.shipped") / "manifest.json").read_text())
    return {name: WeightsEntry(name=name, file=e["file"], sha256=e["sha256"], urls=tuple(e.get("urls", ())),
                               licence=e.get("licence", ""), kornia_cache_name=e.get("kornia_cache_name"),
                               pip_package=e.get("pip_package"), pip_path=e.get("pip_path"))
            for name, e in raw.items() if not name.startswith("_")}


def entry(name: str) -> WeightsEntry:
    from localmatch.errors import UnknownNameError

    try:
        return manifest()[name]
    except KeyError:
        raise UnknownNameError("weights", name, sorted(manifest())) from None


def hub_dir() -> Path:
    """torch hub's checkpoint folder (``$TORCH_HOME/hub/checkpoints``)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


@lru_cache(maxsize=64)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_of(path: str | os.PathLike) -> str:
    stat = os.stat(path)
    return _sha256_of(os.fspath(path), stat.st_size, stat.st_mtime_ns)


def candidate_paths(e: WeightsEntry) -> list[Path]:
    """Where the file is looked for, in order (existing or not)."""
    out = []
    if os.environ.get("LOCALMATCH_WEIGHTS"):
        out.append(Path(os.environ["LOCALMATCH_WEIGHTS"]) / e.file)
    out.append(hub_dir() / e.file)
    if e.kornia_cache_name and e.kornia_cache_name != e.file:
        out.append(hub_dir() / e.kornia_cache_name)
    if e.pip_package and e.pip_path:
        spec = find_spec(e.pip_package)
        if spec is not None and spec.origin is not None:  # a namespace package has no origin
            out.append(Path(spec.origin).parent / e.pip_path)
    return out


def resolve(name: str, *, download: bool = True) -> Path:
    """The path of a verified copy of the named weights file.

    Raises:
        WeightsError: a found file has the wrong sha256, or none is found and none can be downloaded;
            the message names the file, its sha256 and where to put it.
    """
    e = entry(name)
    for path in candidate_paths(e):
        if path.is_file():
            if e.sha256 is None:
                log.warning("%s: no published sha256 to check it against", path)
                return path
            got = sha256_of(path)
            if got != e.sha256:
                raise WeightsError(f"{path}: sha256 {got} does not match the expected {e.sha256} for {e.file}; "
                                   "refusing to load it (replace or delete the file)")
            return path
    errors = []
    if download:
        for url in e.urls:
            try:
                return _download(url, e)
            except (OSError, WeightsError) as err:
                errors.append(f"{url}: {err}")
    where = " or ".join(str(p.parent) for p in candidate_paths(e)[:2])
    tried = f" Download failed: {'; '.join(errors)}." if errors else ""
    raise WeightsError(f"weights file {e.file} (sha256 {e.sha256 or 'not published'}) for {name!r} not found. Put it in {where} "
                       f"(or set LOCALMATCH_WEIGHTS to its folder).{tried}")


def _download(url: str, e: WeightsEntry) -> Path:
    target = hub_dir() / e.file
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s", url)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                shutil.copyfileobj(response, tmp)
            tmp.close()
            got = sha256_of(tmp.name)
            if e.sha256 is not None and got != e.sha256:
                raise WeightsError(f"downloaded file has sha256 {got}, expected {e.sha256}")
            os.replace(tmp.name, target)
        finally:
            if os.path.exists(tmp.name):
                os.unlink(tmp.name)
    return target


def load_state_dict(name: str) -> dict:
    """The verified file's tensors, read with ``weights_only=True`` (no arbitrary unpickling)."""
    import torch

    return torch.load(resolve(name), map_location="cpu", weights_only=True)
