"""ECR rerankers on tiny random-weight models (plumbing, not quality), fusion maths, rerank mixing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from twinseek.errors import ModelUnavailableError
from twinseek.retrieval.fusion import fuse, reciprocal_rank_fusion, weighted_fusion
from twinseek.retrieval.rerank import CrossEncoderReranker, Qwen3Reranker, rerank
from twinseek.weights import model_dtype

from support.tiny_models import assert_placed, build_tiny_cross_encoder, build_tiny_qwen3_reranker


@pytest.fixture(scope="module")
def qwen3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen3_reranker(tmp_path_factory.mktemp("qwen3"))


def test_cross_encoder_scores_are_probabilities(tmp_path: Path, device: str) -> None:
    reranker = CrossEncoderReranker(str(build_tiny_cross_encoder(tmp_path)), device=device)
    scores = reranker.score("where is the red car", ["a red car in the park", "a dog", "black swan"])
    assert len(scores) == 3 and all(0.0 <= s <= 1.0 for s in scores)
    assert_placed(reranker._ce.model, device)
    assert reranker.score("q", []) == []


def test_qwen3_reranker_reads_the_yes_no_logits(qwen3_dir: Path, device: str) -> None:
    reranker = Qwen3Reranker(str(qwen3_dir), device=device)
    docs = ["a black swan on a lake", "a red car driving in a much longer description than the first one"]
    scores = reranker.score("a black swan", docs)
    assert len(scores) == 2 and all(0.0 < s < 1.0 for s in scores)
    assert_placed(reranker._lm, device, model_dtype(device))
    # push the yes/no logit gap far from 0: every score must become ~0 or ~1 (the yes/no ids are what is read)
    head = reranker._lm.get_output_embeddings()
    with torch.no_grad():
        head.weight[reranker._yes] = head.weight[reranker._no] + 50 * torch.sign(head.weight[reranker._no] + 1e-3)
    extreme = reranker.score("a black swan", docs)
    assert all(abs(s - 0.5) > 0.45 for s in extreme)


def test_missing_reranker_weights_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="TWINSEEK_RETRIEVAL__RERANKER"):
        Qwen3Reranker(str(tmp_path / "absent"))
    with pytest.raises(ModelUnavailableError, match="TWINSEEK_RETRIEVAL__RERANKER"):
        CrossEncoderReranker("someone/not-in-cache-reranker")


def test_rrf_hand_computed() -> None:
    fused = reciprocal_rank_fusion({"a": [("x", 0.9), ("y", 0.5)], "b": [("y", 3.0), ("z", 1.0)]}, k=60)
    scores = dict(fused)
    assert scores["y"] == pytest.approx(1 / 62 + 1 / 61)
    assert scores["x"] == pytest.approx(1 / 61) and scores["z"] == pytest.approx(1 / 62)
    assert [d for d, _ in fused] == ["y", "x", "z"]
    weighted = reciprocal_rank_fusion({"a": [("x", 1)], "b": [("y", 1)]}, weights={"a": 2.0, "b": 1.0})
    assert weighted[0][0] == "x"


def test_weighted_fusion_normalises_each_list() -> None:
    fused = dict(weighted_fusion({"a": [("x", 10.0), ("y", 0.0)], "b": [("y", 0.3), ("z", 0.1)]},
                                 weights={"a": 0.5, "b": 0.5}))
    assert fused == pytest.approx({"x": 0.5, "y": 0.5, "z": 0.0})
    assert fuse({"a": [("x", 1.0)]}, method="weighted") == [("x", 1.0)]


class KeywordReranker:
    """Scores 1 when the document contains the query's last word: a transparent reranker for the mixing maths."""

    model, tier = "keyword", "embedded"

    def score(self, query: str, documents: list[str]) -> list[float]:
        word = query.split()[-1]
        return [1.0 if word in d else 0.0 for d in documents]


def test_rerank_reorders_the_head_and_keeps_the_tail_below() -> None:
    candidates = [("a", 0.9), ("b", 0.8), ("c", 0.7), ("d", 0.1)]
    docs = {"a": "a red car", "b": "a swan", "c": "another swan", "d": "swan too"}
    out = rerank(candidates, docs, KeywordReranker(), "find a swan", top_k=3, weight=1.0)
    assert [v for v, _ in out][:3] in (["b", "c", "a"], ["c", "b", "a"]) and out[3][0] == "d"
    assert out[3][1] < min(s for _, s in out[:3])
    # weight 0 keeps the old order
    assert [v for v, _ in rerank(candidates, docs, KeywordReranker(), "swan", top_k=3, weight=0.0)] == list("abcd")


def test_llm_yes_no_reranker_reads_first_token_logprobs(stub) -> None:  # type: ignore[no-untyped-def]
    from twinseek.retrieval.rerank import LLMYesNoReranker

    from support.llm_stub import completion, top_logprobs

    stub.script = [completion("yes", logprobs=top_logprobs([("yes", 0.8), ("no", 0.2)])),
                   completion("no", logprobs=top_logprobs([("No", 0.9), ("yes", 0.1)]))]
    scores = LLMYesNoReranker(stub.client(), parallel=1).score("a black swan", ["a black swan", "a red car"])
    assert scores == pytest.approx([0.8, 0.1])
    sent = stub.requests[0]
    assert sent["logprobs"] is True and sent["max_tokens"] == 1
    assert "<Query>: a black swan" in sent["messages"][-1]["content"]


def test_listwise_reranker_orders_and_survives_a_bad_reply(stub) -> None:  # type: ignore[no-untyped-def]
    from twinseek.retrieval.rerank import ListwiseReranker

    from support.llm_stub import completion

    stub.script = [completion('{"order": [2, 0, 7, 2]}')]  # out-of-range and repeated numbers are ignored
    scores = ListwiseReranker(stub.client(max_retries=0)).score("q", ["a", "b", "c"])
    assert scores == pytest.approx([2 / 3, 1 / 3, 1.0])
    assert stub.requests[0]["response_format"]["type"] == "json_schema"
    stub.script = [completion("not json")]
    assert ListwiseReranker(stub.client(max_retries=0)).score("q", ["a", "b"]) == [1.0, 0.5]  # input order


def test_query_aware_rewrite_and_its_fallback(stub) -> None:  # type: ignore[no-untyped-def]
    from twinseek.retrieval.rerank import rewrite_ecr

    from support.llm_stub import completion

    stub.script = [completion("The swan is black, which supports the query.")]
    assert rewrite_ecr(stub.client(), "a black bird", "A black swan swims.") == \
        "The swan is black, which supports the query."
    stub.script = [("status", 500)]
    assert rewrite_ecr(stub.client(), "a black bird", "A black swan swims.") == "A black swan swims."


def test_fused_retrieval_ranks_a_fusion_pool_so_scaling_keeps_score_gaps() -> None:
    """Weighted fusion scales each tool's scores over its pool: a pool of k would pin the k-th video at 0 and
    put a video missing from one list level with it, so fused searches rank at least ``fusion_pool`` videos."""
    from twinseek.config import RetrievalSettings
    from twinseek.retrieval.stages import pool_size

    s = RetrievalSettings(top_k=10, rerank_top_k=5, fusion_pool=40)
    assert pool_size(3, s) == 10 and pool_size(3, s, fused=True) == 40
    assert pool_size(60, s, fused=True) == 60 and pool_size(3, s, gallery=500, fused=True) == 500
    assert RetrievalSettings().fusion == "weighted"
