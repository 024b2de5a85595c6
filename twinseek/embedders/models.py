"""Differentiable text encoders the trainers optimise, and how each is saved so retrieval loads it by path.

* sentence-transformers models (embedded default: MiniLM), trained by ``SentenceTransformerTrainer``; saved in
  the sentence-transformers folder format plus a ``twinseek.json`` manifest (:func:`save_sentence_transformer`),
  so ``MiniLMEncoder(path)`` and ``retrieval.*_encoder`` settings load it.
* :class:`TaraTextModule`: a Qwen2-VL-family MLLM with TARA's EOL text prompt and last-token pooling (the
  prompts and pooling of :class:`~twinseek.retrieval.dense.TaraEmbedder`), LoRA adapters via peft on the language
  model only; saved merged (``from_pretrained`` folder for ``retrieval.tara_model``) plus the adapter in
  ``lora/`` and the manifest.
"""

from __future__ import annotations

import json
import logging
import platform
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from twinseek.retrieval.dense import TEXT_PROMPT, TaraEmbedder, last_token_pool

logger = logging.getLogger(__name__)

MANIFEST = "twinseek.json"
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")  # language-model attention (vision uses qkv/proj)


def write_manifest(folder: Path, kind: str, **fields: Any) -> Path:
    import transformers

    manifest = {"format": "twinseek-embedder", "kind": kind, "similarity": "cosine",
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                             "python": platform.python_version()}, **fields}
    path = folder / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, default=str))
    return path


def read_manifest(folder: str | Path) -> dict[str, Any]:
    return dict(json.loads((Path(folder) / MANIFEST).read_text()))


def load_sentence_transformer(path: str | Path, max_seq_length: int | None = 64, device: str | None = None) -> Any:
    """A local sentence-transformers folder, ready to train (captions are short: shorter sequences train faster)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(path), device=device, local_files_only=True)
    if max_seq_length:
        model.max_seq_length = max_seq_length
    return model


def save_sentence_transformer(model: Any, folder: str | Path, **manifest: Any) -> Path:
    """The sentence-transformers folder (``retrieval.*_encoder`` and ``MiniLMEncoder`` load it) plus the manifest."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save(str(folder))
    write_manifest(folder, "sentence-transformers", **manifest)
    return folder


class TaraTextModule(nn.Module):
    """TARA EOL text embeddings from a Qwen2-VL-family MLLM with LoRA on its language model."""

    def __init__(self, path: str | Path, lora_r: int = 8, lora_alpha: int = 16, lora_dropout: float = 0.0,
                 targets: Sequence[str] = LORA_TARGETS) -> None:
        super().__init__()
        from peft import LoraConfig, get_peft_model

        self.source = str(path)
        self.embedder = TaraEmbedder(str(path), device="cpu")
        self.embedder.load()
        net = self.embedder._net
        for p in net.parameters():
            p.requires_grad_(False)
        # regex: only the language model's projections (the vision tower is frozen, as in TARA)
        pattern = rf".*language_model.*\.({'|'.join(targets)})$"
        config = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, target_modules=pattern)
        self.net: Any = get_peft_model(net, config)
        self.processor: Any = self.embedder._processor

    def forward(self, texts: Sequence[str]) -> Tensor:

        prompts = [self.embedder.prompt(TEXT_PROMPT, t) for t in texts]
        # wherever the trainer put the model (an accelerator), the processor's tensors follow it
        inputs = self.processor(text=prompts, padding=True, return_tensors="pt").to(next(self.net.parameters()).device)
        hidden = self.net(**inputs, output_hidden_states=True).hidden_states[-1]
        return F.normalize(last_token_pool(hidden, inputs["attention_mask"]).float(), dim=-1)

    def save(self, folder: str | Path, **manifest: Any) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.net.save_pretrained(str(folder / "lora"))
        merged = self.net.merge_and_unload()
        merged.save_pretrained(str(folder), safe_serialization=True)
        self.processor.save_pretrained(str(folder))
        self.net = merged  # merge_and_unload strips the adapters: keep the merged model usable
        write_manifest(folder, "tara-lora-merged", base=self.source, lora="lora", **manifest)
        return folder


def trainable_names(module: nn.Module) -> list[str]:
    return [n for n, p in module.named_parameters() if p.requires_grad]
