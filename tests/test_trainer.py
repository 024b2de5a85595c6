"""Training loop smoke runs on synthetic data, atomic checkpoints, resume, LoRA on the tiny Qwen2-VL."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from torch import nn

from twinseek.embedders.data import build_triplets, grammar_sentences
from twinseek.embedders.loop import TrainConfig, Trainer, read_log, save_atomic, warmup_cosine
from twinseek.embedders.losses import InfoNCELoss
from twinseek.embedders.trainer import TextTrainConfig, train_text


class HashedBag(nn.Module):
    """Synthetic text encoder: mean of hashed word embeddings (tiny, deterministic, no download)."""

    def __init__(self, dim: int = 16, buckets: int = 256) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.EmbeddingBag(buckets, dim, mode="mean")
        self.buckets = buckets

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        ids = [[zlib.crc32(w.encode()) % self.buckets for w in t.lower().split()] or [0] for t in texts]
        offsets = torch.tensor([0] + [len(x) for x in ids[:-1]]).cumsum(0)
        return self.emb(torch.tensor([i for x in ids for i in x]), offsets)

    def save(self, folder: str | Path, **manifest: object) -> Path:
        Path(folder).mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), Path(folder) / "model.pt")
        return Path(folder)


def _triplets() -> list:
    return build_triplets(grammar_sentences(48, 0), "grammar", seed=0)


def test_warmup_cosine_schedule() -> None:
    assert warmup_cosine(0, 100, 10) == pytest.approx(0.1)
    assert warmup_cosine(9, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(10, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(100, 100, 10) == pytest.approx(0.0)


def test_smoke_training_loss_decreases_and_writes_run(tmp_path: Path) -> None:
    cfg = TextTrainConfig(run_dir=tmp_path / "run", epochs=6, batch_size=16, lr=5e-2, warmup_ratio=0.0,
                          checkpoint_every=5, progress=False)
    result = train_text(_triplets(), cfg, tmp_path / "model", model=HashedBag())
    log = read_log(tmp_path / "run")
    assert len(log) == result.steps > 5 and {"step", "epoch", "loss", "lr"} <= set(log[0])
    first = sum(r["loss"] for r in log[:3]) / 3
    last = sum(r["loss"] for r in log[-3:]) / 3
    assert last < first
    assert (tmp_path / "run" / "params.json").is_file() and (tmp_path / "model" / "model.pt").is_file()
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    assert not list((tmp_path / "run" / "checkpoints").glob("*.tmp"))


def test_checkpoint_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ckpt" / "last.pt"
    save_atomic({"step": 1}, path)

    def boom(obj: object, f: object) -> None:
        Path(str(f)).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_atomic({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path)["step"] == 1  # the old checkpoint survives a failed write
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_resume_continues_from_saved_step(tmp_path: Path) -> None:
    triplets = _triplets()
    cfg = TrainConfig(run_dir=tmp_path / "run", epochs=2, batch_size=16, lr=1e-2, checkpoint_every=3,
                      max_steps=5, progress=False)
    model = HashedBag()
    loss = InfoNCELoss(model, temperature=0.1)

    def batches(epoch: int) -> list:
        return [triplets[i:i + 16] for i in range(0, len(triplets) - 15, 16)]

    steps = len(batches(0))

    def step_loss(batch: list) -> torch.Tensor:
        return loss([t.anchor for t in batch], [t.positive for t in batch], [t.negative for t in batch])

    Trainer(model, cfg).fit(batches, steps, step_loss)
    assert [r["step"] for r in read_log(cfg.run_dir)] == [1, 2, 3, 4, 5]
    saved = torch.load(cfg.run_dir / "checkpoints" / "last.pt", weights_only=False)
    assert saved["step"] == 5

    fresh = HashedBag()
    cfg2 = cfg.model_copy(update={"max_steps": 8})
    loss = InfoNCELoss(fresh, temperature=0.1)
    trainer = Trainer(fresh, cfg2)
    trainer.fit(batches, steps, step_loss)
    assert trainer.step == 8
    assert [r["step"] for r in read_log(cfg.run_dir)] == [1, 2, 3, 4, 5, 6, 7, 8]  # continued, not restarted
    assert not torch.equal(fresh.emb.weight, HashedBag().emb.weight)


def test_lora_on_tiny_qwen2vl_only_adapters_change(tmp_path: Path) -> None:
    pytest.importorskip("peft")
    pytest.importorskip("torchvision")
    from tiny_models import build_tiny_qwen2vl

    from twinseek.embedders.models import TaraTextModule, read_manifest, trainable_names

    model = TaraTextModule(build_tiny_qwen2vl(tmp_path / "qwen"), lora_r=4)
    names = trainable_names(model)
    assert names and all("lora_" in n for n in names)
    assert not any("visual" in n for n in names)  # the vision tower stays frozen
    with torch.no_grad():  # peft initialises lora_B at zero; nudge it so lora_A gets a gradient too
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    cfg = TrainConfig(run_dir=tmp_path / "run", epochs=1, batch_size=2, lr=1e-2, max_steps=1, progress=False)
    triplets = build_triplets(["a man opens the door", "a girl picks up a book"], "test", kinds=("temporal",))
    loss = InfoNCELoss(model)
    Trainer(model, cfg).fit(lambda e: [triplets], 1, lambda b: loss([t.anchor for t in b],
                                                                   [t.positive for t in b], [t.negative for t in b]))
    after = dict(model.named_parameters())
    changed = {n for n, p in before.items() if not torch.equal(p, after[n])}
    assert changed and all("lora_" in n for n in changed)
    model.save(tmp_path / "out")
    assert read_manifest(tmp_path / "out")["kind"] == "tara-lora-merged"
    assert (tmp_path / "out" / "lora" / "adapter_config.json").is_file()
    assert list((tmp_path / "out").glob("*.safetensors"))


def test_cli_help_lists_train_commands() -> None:
    from typer.testing import CliRunner

    from twinseek.cli import app

    result = CliRunner().invoke(app, ["train", "--help"])
    assert result.exit_code == 0 and "text" in result.output and "twin" in result.output
    result = CliRunner().invoke(app, ["train", "data", "--help"])
    assert result.exit_code == 0 and "triplets" in result.output
