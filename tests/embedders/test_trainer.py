"""Training on sentence-transformers: CPU smoke runs of each loss on a tiny BERT, resume from a checkpoint, the
twin encoders (two towers, curriculum, mined negatives), LoRA on the tiny Qwen2-VL, and the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from sentence_transformers import SentenceTransformer

from twinseek.embedders.data import TwinPair, build_triplets, grammar_sentences
from twinseek.embedders.models import read_manifest
from twinseek.embedders.trainer import (
    TextTrainConfig,
    TwinTrainConfig,
    read_log,
    retrieval_overrides,
    train_text,
    train_twin,
)

from support.tiny_models import build_tiny_cross_encoder, build_tiny_sentence_transformer


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(build_tiny_sentence_transformer(tmp_path_factory.mktemp("tiny")))


def _triplets(n: int = 16) -> list:
    return build_triplets(grammar_sentences(40, 0), "grammar", seed=0)[:n]


@pytest.mark.parametrize("options", [{}, {"symmetric": True}, {"cached_mini_batch": 3}])
def test_text_smoke_run_for_each_loss(tiny: str, tmp_path: Path, options: dict) -> None:
    cfg = TextTrainConfig(run_dir=tmp_path / "run", base=tiny, max_steps=3, batch_size=8, lr=1e-3, progress=False,
                          **options)
    result = train_text(_triplets(), cfg, tmp_path / "model")
    log = read_log(tmp_path / "run")
    assert result.steps == 3 and [r["step"] for r in log] == [1, 2, 3]
    assert result.first_loss == pytest.approx(log[0]["loss"]) and result.loss == pytest.approx(log[-1]["loss"])
    loaded = SentenceTransformer(str(tmp_path / "model"), device="cpu")
    assert loaded.encode(["a red car"]).shape == (1, 32)
    manifest = read_manifest(tmp_path / "model")
    assert manifest["kind"] == "sentence-transformers" and manifest["steps"] == 3
    loss = manifest["loss"]
    assert loss["scale"] == pytest.approx(20.0)
    assert loss["directions"] == (["query_to_doc", "doc_to_query"] if options.get("symmetric") else ["query_to_doc"])
    assert ("mini_batch_size" in loss) == bool(options.get("cached_mini_batch"))
    assert retrieval_overrides(tmp_path / "model") == {"query_encoder": str((tmp_path / "model").resolve())}


def test_training_lowers_the_loss(tiny: str, tmp_path: Path) -> None:
    cfg = TextTrainConfig(run_dir=tmp_path / "run", base=tiny, epochs=6, batch_size=8, lr=3e-3, warmup_ratio=0.0,
                          progress=False)
    train_text(_triplets(), cfg, tmp_path / "model")
    losses = [r["loss"] for r in read_log(tmp_path / "run")]
    assert len(losses) == 12 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3


def test_resume_continues_step_count_lr_schedule_and_data_order(tiny: str, tmp_path: Path) -> None:
    cfg = TextTrainConfig(run_dir=tmp_path / "a", base=tiny, max_steps=6, batch_size=8, lr=1e-3, checkpoint_every=2,
                          progress=False)
    whole = train_text(_triplets(), cfg, tmp_path / "model-a")
    a = {r["step"]: r for r in read_log(tmp_path / "a")}
    assert whole.steps == 6 and sorted(p.name for p in (tmp_path / "a").glob("checkpoint-*")) == [
        "checkpoint-4", "checkpoint-6"]  # the last two kept
    # a run killed right after its step-4 checkpoint: only that checkpoint is in its folder
    (tmp_path / "b").mkdir()
    shutil.copytree(tmp_path / "a" / "checkpoint-4", tmp_path / "b" / "checkpoint-4")
    resumed = train_text(_triplets(), cfg.model_copy(update={"run_dir": tmp_path / "b"}), tmp_path / "model-b")
    b = {r["step"]: r for r in read_log(tmp_path / "b")}
    assert resumed.steps == 6 and sorted(b) == [5, 6]  # went on at step 5
    for step in (5, 6):  # the same learning rate (schedule) and loss (weights, optimizer, batches, dropout RNG)
        assert b[step]["learning_rate"] == pytest.approx(a[step]["learning_rate"], rel=1e-9)
        assert b[step]["loss"] == pytest.approx(a[step]["loss"], rel=1e-4)
    assert b[6]["learning_rate"] < b[5]["learning_rate"] < a[1]["learning_rate"] + a[2]["learning_rate"]
    weights_a = SentenceTransformer(str(tmp_path / "model-a"), device="cpu").state_dict()
    weights_b = SentenceTransformer(str(tmp_path / "model-b"), device="cpu").state_dict()
    assert all(torch.allclose(weights_a[k], weights_b[k], atol=1e-5) for k in weights_a)


def _pairs() -> list[TwinPair]:
    videos = {
        "v1": (["a red car", "a car"], ["red car", "car moving left"], ["tree"]),
        "v2": (["a black swan", "a swan"], ["black swan", "swan on water"], ["water"]),
        "v3": (["a dog", "a dog in a park"], ["dog", "dog near park bench"], ["park bench"]),
        "v4": (["a blue car"], ["blue car"], ["road"]),
    }
    out = []
    for video, (queries, positives, others) in videos.items():
        for q in queries:
            terms = [w for w in q.split() if w not in ("a", "in")]
            pos = [p for p in positives if all(t in p.split() for t in terms)]
            out.append(TwinPair(query=q, video_id=video, component_kind="object", positives=pos, others=others,
                                terms=terms, source="test", builder="test", seed=0))
    return out


def test_twin_shared_encoder(tiny: str, tmp_path: Path) -> None:
    cfg = TwinTrainConfig(run_dir=tmp_path / "run", base=tiny, max_steps=2, batch_size=4, lr=1e-3, progress=False)
    result = train_twin(_pairs(), cfg, tmp_path / "twin")
    assert result.steps == 2 and result.first_loss is not None
    overrides = retrieval_overrides(tmp_path / "twin")
    assert set(overrides) == {"query_encoder", "object_encoder", "relation_encoder"}
    assert len(set(overrides.values())) == 1 and overrides["query_encoder"].endswith("encoder")
    assert SentenceTransformer(overrides["object_encoder"], device="cpu").encode(["dog"]).shape == (1, 32)


def test_twin_two_towers_curriculum_and_reranker_mined_negatives(tiny: str, tmp_path: Path) -> None:
    cross_encoder = pytest.importorskip("sentence_transformers").CrossEncoder(
        str(build_tiny_cross_encoder(tmp_path / "ce")), device="cpu")
    cfg = TwinTrainConfig(run_dir=tmp_path / "run", base=tiny, towers="two", curriculum=True, epochs=2, batch_size=4,
                          lr=1e-3, progress=False, mined_negatives=2)
    ecr = [("a video of a car", "a red car drives left past a tree"), ("a video of a swan", "a swan swims")]
    captions = _triplets(8)
    result = train_twin(_pairs(), cfg, tmp_path / "twin", ecr_pairs=ecr, captions=captions,
                        cross_encoder=cross_encoder, rounds=2)
    for round_ in ("round1", "round2"):
        params = json.loads((tmp_path / "run" / round_ / "params.json").read_text())
        assert params["tasks"] == ["subquery->component", "query->ecr", "caption->caption"]
        assert read_log(tmp_path / "run" / round_)
    assert json.loads((tmp_path / "run" / "round2" / "params.json").read_text())["mined"] > 0
    assert result.steps == 4  # 7 pairs in batches of 4: 2 steps an epoch, 2 epochs
    overrides = retrieval_overrides(tmp_path / "twin")
    assert overrides["query_encoder"].endswith("query") and overrides["object_encoder"].endswith("component")
    query = SentenceTransformer(overrides["query_encoder"], device="cpu").encode(["a red car"])
    component = SentenceTransformer(overrides["object_encoder"], device="cpu").encode(["a red car"])
    assert query.shape == component.shape == (1, 32) and not torch.allclose(torch.tensor(query), torch.tensor(component))
    assert read_manifest(tmp_path / "twin")["towers"] == "two"


def test_lora_on_tiny_qwen2vl_trains_and_checkpoints_only_adapters(tmp_path: Path) -> None:
    pytest.importorskip("peft")
    pytest.importorskip("torchvision")
    from safetensors.torch import load_file

    from support.tiny_models import build_tiny_qwen2vl

    base = build_tiny_qwen2vl(tmp_path / "qwen")
    triplets = build_triplets(["a man opens the door", "a girl picks up a book"], "test", kinds=("temporal",))
    cfg = TextTrainConfig(run_dir=tmp_path / "run", tier="paper", base=str(base), lora_r=4, max_steps=2,
                          batch_size=2, lr=1e-2, progress=False)
    result = train_text(triplets, cfg, tmp_path / "out")
    assert result.steps == 2 and len(read_log(tmp_path / "run")) == 2
    saved = load_file(str(tmp_path / "run" / "checkpoint-2" / "model.safetensors"))
    assert saved and all("lora_" in k for k in saved)  # the frozen base is not copied into checkpoints
    assert read_manifest(tmp_path / "out")["kind"] == "tara-lora-merged"
    assert (tmp_path / "out" / "lora" / "adapter_config.json").is_file()
    assert list((tmp_path / "out").glob("*.safetensors"))


def test_cli_trains_and_prints_the_settings(tiny: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from twinseek.cli import app
    from twinseek.embedders.data import write_jsonl

    write_jsonl(tmp_path / "t.jsonl", _triplets())
    runner = CliRunner()
    res = runner.invoke(app, ["train", "text", str(tmp_path / "t.jsonl"), "--out", str(tmp_path / "m"), "--base", tiny,
                              "--run-dir", str(tmp_path / "run"), "--max-steps", "1", "--batch-size", "8"])
    assert res.exit_code == 0, res.output
    assert "trained 1 steps" in res.output and f"TWINSEEK_RETRIEVAL__QUERY_ENCODER={(tmp_path / 'm').resolve()}" in res.output
    assert runner.invoke(app, ["train", "--help"]).exit_code == 0
