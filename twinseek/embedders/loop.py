"""The common training loop: AdamW, linear warm-up + cosine decay, atomic resumable checkpoints, per-step metrics.

A run folder ``runs/<name>/`` holds ``params.json`` (the :class:`TrainConfig`), ``log`` (one JSON object per
step: step, epoch, loss, lr, seconds) and ``checkpoints/last.pt`` (written to a temp name, then
``os.replace``d, so a crash never leaves a half-written checkpoint).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, Field
from torch import Tensor, nn

logger = logging.getLogger(__name__)

CHECKPOINT = "last.pt"


class TrainConfig(BaseModel):
    run_dir: Path = Field(description="The run folder (params.json, log, checkpoints/).")
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(32, ge=2)
    lr: float = Field(2e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    max_steps: int | None = Field(None, ge=1, description="Stop after this many steps in total.")
    checkpoint_every: int = Field(50, ge=1, description="Steps between checkpoints (one is always written at the end).")
    seed: int = 0
    resume: bool = Field(True, description="Continue from checkpoints/last.pt when it exists.")
    progress: bool | None = Field(None, description="Progress bar; default: only when logging is at INFO or below.")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """LR multiplier: linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to a temp file in the same folder, then ``os.replace`` (atomic on POSIX)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class Trainer:
    """Runs ``step_loss(batch) -> loss`` over ``batches(epoch)``, optimising the trainable parameters of
    ``model`` (and of ``extra`` modules such as a loss with a learnable temperature)."""

    def __init__(self, model: nn.Module, config: TrainConfig, extra: Iterable[nn.Module] = ()) -> None:
        self.model, self.config = model, config
        self.modules = [model, *extra]
        self.params = [p for m in self.modules for p in m.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=config.lr, weight_decay=config.weight_decay)
        self.step = 0
        self.ckpt_dir = config.run_dir / "checkpoints"

    @property
    def checkpoint_path(self) -> Path:
        return self.ckpt_dir / CHECKPOINT

    def _trainable_state(self) -> list[dict[str, Tensor]]:
        # LoRA runs keep only the adapter weights: the frozen base is reloaded from its folder
        out = []
        for module in self.modules:
            names = {n for n, p in module.named_parameters() if p.requires_grad}
            out.append({k: v.detach().clone() for k, v in module.state_dict().items() if k in names})
        return out

    def save_checkpoint(self) -> None:
        state = {"step": self.step, "modules": self._trainable_state(), "optimizer": self.optimizer.state_dict(),
                 "rng": torch.get_rng_state(), "py_rng": random.getstate()}
        save_atomic(state, self.checkpoint_path)
        logger.info("checkpoint at step %d -> %s", self.step, self.checkpoint_path)

    def load_checkpoint(self) -> bool:
        if not (self.config.resume and self.checkpoint_path.is_file()):
            return False
        state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=False)
        for module, sd in zip(self.modules, state["modules"]):
            module.load_state_dict(sd, strict=False)
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        random.setstate(state["py_rng"])
        self.step = int(state["step"])
        logger.info("resumed from %s at step %d", self.checkpoint_path, self.step)
        return True

    def _write_params(self, extra: dict[str, Any]) -> None:
        self.config.run_dir.mkdir(parents=True, exist_ok=True)
        params = {**json.loads(self.config.model_dump_json()), **extra}
        (self.config.run_dir / "params.json").write_text(json.dumps(params, indent=2, default=str))

    def fit(self, batches: Callable[[int], Iterable[Any]], steps_per_epoch: int,
            step_loss: Callable[[Any], Tensor], params: dict[str, Any] | None = None) -> dict[str, float]:
        """Train; ``batches(epoch)`` must give the same batches for the same epoch (seeded) so a resumed run
        skips exactly what it had done. Returns the last loss and the step count."""
        cfg = self.config
        seed_everything(cfg.seed)
        self._write_params(params or {})
        total = cfg.max_steps or cfg.epochs * steps_per_epoch
        warmup = int(cfg.warmup_ratio * total)
        scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: warmup_cosine(s, total, warmup))
        if self.load_checkpoint():
            scheduler.last_epoch = self.step
            scheduler._last_lr = [g["lr"] for g in self.optimizer.param_groups]  # type: ignore[attr-defined]
            for group in self.optimizer.param_groups:
                group["lr"] = group["initial_lr"] * warmup_cosine(self.step, total, warmup)
        bar = self._bar(total)
        last = float("nan")
        with (cfg.run_dir / "log").open("a", encoding="utf-8") as log:
            for epoch in range(self.step // max(1, steps_per_epoch), cfg.epochs):
                skip = self.step - epoch * steps_per_epoch
                for index, batch in enumerate(batches(epoch)):
                    if index < skip:
                        continue
                    if self.step >= total:
                        break
                    last = self._one_step(batch, step_loss, scheduler, epoch, log)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{last:.4f}")
                    if self.step % cfg.checkpoint_every == 0:
                        self.save_checkpoint()
        if bar is not None:
            bar.close()
        self.save_checkpoint()
        return {"loss": last, "steps": float(self.step)}

    def _one_step(self, batch: Any, step_loss: Callable[[Any], Tensor], scheduler: Any, epoch: int,
                  log: Any) -> float:
        start = time.perf_counter()
        for module in self.modules:
            module.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = step_loss(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        scheduler.step()
        self.step += 1
        value = float(loss.detach())
        row = {"step": self.step, "epoch": epoch, "loss": value, "lr": scheduler.get_last_lr()[0],
               "seconds": round(time.perf_counter() - start, 3)}
        log.write(json.dumps(row) + "\n")
        log.flush()
        return value

    def _bar(self, total: int) -> Any:
        show = self.config.progress
        if show is None:
            show = logging.getLogger("twinseek").getEffectiveLevel() <= logging.INFO
        if not show:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=self.step, desc="train", unit="step")


def read_log(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "log"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
