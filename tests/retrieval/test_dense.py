"""Dense video embedders: the template ECR, the ECR-text index and TARA EOL pooling on a tiny Qwen2-VL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from twinseek.config import RetrievalSettings
from twinseek.errors import ModelUnavailableError
from twinseek.media.decode import iter_frames, uniform_picks
from twinseek.retrieval.dense import (
    DenseIndex,
    EcrTextEmbedder,
    TaraEmbedder,
    embedder_from_settings,
    last_token_pool,
)
from twinseek.twins.store import TwinStore

from support.retrieval import KeywordEncoder, add_video
from support.synthetic import write_shots_video
from support.tiny_models import assert_placed, build_tiny_qwen2vl

HIDDEN = 32  # text hidden size of the tiny Qwen2-VL
SAMPLES = Path(__file__).parents[2] / "twinseek" / "data" / "samples"


def test_dense_index_uses_ecr_or_template_and_resyncs(tmp_path: Path) -> None:
    words = ["dog", "ball", "cat", "sunny", "beach"]
    with TwinStore(tmp_path) as store:
        add_video(store, "a", ["dog", "ball"])
        add_video(store, "b", ["cat"])
        store.set_ecr("b", "a cat on a sunny beach", "llm:test")  # a model-written ECR joins the gist
        index = DenseIndex(store, EcrTextEmbedder(KeywordEncoder(words)))
        assert index.sync().items == 2
        rows = {r["video_id"]: r for r in store.db.query("select * from dense_items")}
        # no scene labels: the gist still names the confidently categorised objects
        assert rows["a"]["source"] == "gist" and "Objects: dog, ball." in rows["a"]["text"]
        assert rows["b"]["text"].endswith("a cat on a sunny beach")
        assert [(h.video_id, round(h.score, 4)) for h in index.search_text("beach", k=2)] == [("b", 0.5774),
                                                                                            ("a", 0.0)]
        assert rows["b"]["source"] == "llm:test"
        store.set_ecr("a", "a dog on the beach", "test")
        assert index.sync().updated == 1
        hits = index.search_text("dog beach", k=2)
        assert [h.video_id for h in hits] == ["a", "b"] and hits[0].score > hits[1].score
        assert (tmp_path / "index" / "dense" / "index.faiss").exists()


def test_last_token_pool_left_and_right_padding() -> None:
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert last_token_pool(hidden, right)[:, 0].tolist() == [1.0, 7.0]
    assert last_token_pool(hidden, left)[:, 0].tolist() == [3.0, 7.0]


def test_settings_pick_the_embedder_and_missing_weights_fail_clearly(tmp_path: Path) -> None:
    assert isinstance(embedder_from_settings(RetrievalSettings()), EcrTextEmbedder)
    with pytest.raises(ModelUnavailableError, match="never downloads"):
        embedder_from_settings(RetrievalSettings(dense_embedder="tara", tara_model=str(tmp_path / "none")))


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen2vl(tmp_path_factory.mktemp("tiny-qwen2vl"))


@pytest.mark.parametrize("side", ["left", "right"])
def test_tara_text_embeddings_pool_the_last_real_token(tiny_qwen: Path, side: str, device: str) -> None:
    tara = TaraEmbedder(str(tiny_qwen), device=device, frames=4, max_side=64, padding_side=side)  # type: ignore[arg-type]
    texts = ["a dog", "a much longer sentence about a cat"]
    batch = tara.embed_texts(texts)
    assert batch.shape == (2, HIDDEN) and batch.dtype == np.float32 and tara.dim == HIDDEN
    assert np.allclose(np.linalg.norm(batch, axis=1), 1, atol=1e-5)
    alone = tara.embed_texts(texts[:1])[0]
    # padding must not move the pooled position (bf16 on a GPU rounds batched and single runs differently)
    assert np.allclose(batch[0], alone, atol=1e-4 if tara.dtype == torch.float32 else 3e-2)
    assert_placed(tara._net, device, tara.dtype)
    prompt = tara.prompt("<sent>\nSummary above sentence in one word:", "a dog")
    assert prompt.startswith("<|im_start|>user\na dog\nSummary above sentence in one word:<|im_end|>")
    if side == "right":  # the bug pooling guards against: index -1 lands on padding
        inputs = tara._processor(text=[tara.prompt("<sent>\nSummary above sentence in one word:", t) for t in texts],
                                 padding=True, return_tensors="pt").to(tara.device)
        with torch.no_grad():
            naive = tara._net(**inputs, output_hidden_states=True).hidden_states[-1][0, -1]
        assert not np.allclose(torch.nn.functional.normalize(naive.float(), dim=-1).cpu().numpy(), alone, atol=1e-3)


def test_tara_video_and_composed_embeddings(tiny_qwen: Path, device: str) -> None:
    tara = TaraEmbedder(str(tiny_qwen), device=device, frames=4, max_side=64)
    frames = np.random.default_rng(0).integers(0, 255, (4, 48, 64, 3), dtype=np.uint8)
    video = tara.embed_video_frames(frames)
    composed = tara.embed_video_frames(frames, "make the dog red")
    assert video.shape == composed.shape == (HIDDEN,)
    assert np.linalg.norm(video) == pytest.approx(1, abs=1e-5) and not np.allclose(video, composed)
    assert "<|video_pad|>" in tara.prompt("<video>\nSummary above video in one word:")
    from twinseek.retrieval.dense import DenseInput

    from_file = tara.embed_videos([DenseInput("swan", str(SAMPLES / "blackswan.mp4"), "")])
    assert from_file.shape == (1, HIDDEN) and np.linalg.norm(from_file[0]) == pytest.approx(1, abs=1e-5)


def test_tara_frames_of_a_scene_come_from_its_span(tiny_qwen: Path, tmp_path: Path) -> None:
    # 3 shots of 12 frames at 12 fps: the scene 1.0-2.0 s is source frames 12-23
    video = write_shots_video(tmp_path / "cuts.mkv", [12, 12, 12], width=96, height=64)
    tara = TaraEmbedder(str(tiny_qwen), frames=4, max_side=64)
    span = tara.frames_of(video, 1.0, 2.0)
    expected = [frame for _, frame in iter_frames(video, 64, {12 + i for i in uniform_picks(12, 4)})]
    assert span.shape[0] == 4 and np.array_equal(span, np.stack(expected))
    assert tara.frames_of(video).shape[0] == 4  # the whole video, as before
