"""Paper-tier model weights: device and dtype choice, offline weight resolution and loading.

twinseek never downloads weights at run time: a model is a local directory or a hub id already in the user's
Hugging Face cache, and anything else becomes a :class:`ModelUnavailableError` that says how to fix it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from twinseek.errors import ConfigError, ModelUnavailableError

log = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def resolve_device(device: str = "auto") -> str:
    """``auto`` picks cuda, then mps, then cpu; an explicit device must exist on this machine."""
    name = device.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if _mps_available() else "cpu"
    if name == "cpu":
        return name
    if name == "cuda" or re.fullmatch(r"cuda:\d+", name):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} requested but CUDA is not available; use 'auto' or 'cpu'")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
        return name
    if name == "mps":
        if not _mps_available():
            raise ConfigError("device 'mps' requested but MPS is not available; use 'auto' or 'cpu'")
        return name
    raise ConfigError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def model_dtype(device: str) -> torch.dtype:
    """float32 on CPU (half precision is slow or unsupported there); bf16/fp16 on accelerators."""
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32


@dataclass(frozen=True)
class WeightsSpec:
    """What a paper-tier model loads: a readable name, its setting and the hub id to fetch."""

    name: str
    setting: str
    default_repo: str
    section: str = "paper"  # the Settings section holding ``setting``

    @property
    def env_var(self) -> str:
        return f"TWINSEEK_{self.section.upper()}__{self.setting.upper()}"


def is_hub_id(source: str) -> bool:
    return bool(_HUB_ID.match(source)) and ".." not in source


def unavailable(spec: WeightsSpec, source: str, detail: str) -> ModelUnavailableError:
    repo = source if is_hub_id(source) else spec.default_repo
    folder = repo.rsplit("/", 1)[-1].lower()
    return ModelUnavailableError(
        f"{spec.name} weights are not available ({detail}); twinseek never downloads at run time. "
        f"Set {spec.section}.{spec.setting} (e.g. {spec.env_var}=/path/to/{folder}) to a local model directory or to a "
        f"hub id already in your Hugging Face cache. On a connected machine fetch them with "
        f"`hf download {repo} --local-dir {folder}` (or `huggingface-cli download ...`) and copy the directory here."
    )


def resolve_source(source: str, spec: WeightsSpec) -> str:
    """A local directory or a cached hub id, checked cheaply (nothing is loaded) so errors surface early."""
    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise unavailable(spec, source, f"{source!r} is a file, expected a model directory")
        if not (path / "config.json").is_file():  # else transformers fails later with a confusing ValueError
            raise unavailable(spec, source, f"no config.json in {source!r}")
        return str(path)
    if not is_hub_id(source):
        raise unavailable(spec, source, f"no directory {source!r}")
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.constants import HF_HUB_CACHE

    if not isinstance(try_to_load_from_cache(source, "config.json"), str):
        raise unavailable(
            spec,
            source,
            f"{source!r} is neither a local directory nor a hub id in the cache at {HF_HUB_CACHE}",
        )
    return source


def load_pretrained(cls: Any, source: str, spec: WeightsSpec, **kwargs: Any) -> Any:
    """``cls.from_pretrained(source, local_files_only=True)``; missing or partial weights become
    ModelUnavailableError."""
    try:
        return cls.from_pretrained(source, local_files_only=True, **kwargs)
    except OSError as exc:  # transformers reports missing files (and offline misses) as OSError
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise unavailable(spec, source, first_line) from exc


