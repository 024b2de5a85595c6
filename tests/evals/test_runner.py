"""The eval runner end to end on a tiny synthetic bench: baselines and retrieval tools through ``run`` and the
CLI, the report's files, determinism, ``limit``/``kinds``, bad benches, and the agent adapter (a test double)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from twinseek.cli import app
from twinseek.evals import RunResult, run
from twinseek.evals.bench import BenchError, load_bench
from twinseek.evals.metrics import aggregate, evaluate_query
from twinseek.evals.report import draw_overlays, summary_table, write_report
from twinseek.evals.results import load_results
from twinseek.evals.schemas import OverlayExample, SystemSpec, parse_systems
from twinseek.evals.scorers import AgentScorer

from support.synthetic import Scene, Shape, write_video

SQUARE = Scene()  # red square moving right, blue disc moving left
YELLOW = Scene(shapes=[Shape("disc", (240, 220, 30), (60, 60), (260, 180), radius=30)], seed=1)
GREEN = Scene(shapes=[Shape("square", (30, 200, 60), (260, 60), (60, 180), radius=20)], seed=2)
QUERIES: list[dict[str, Any]] = [
    {"id": "i1", "kind": "implicit", "text": "the shape that would stop a car at a junction", "positives": ["red"],
     "has_masks": True},
    {"id": "i2", "kind": "implicit", "text": "something the colour of a banana", "positives": ["yellow"]},
    {"id": "e1", "kind": "explicit", "text": "a yellow disc moving down", "positives": ["yellow"]},
    {"id": "e2", "kind": "explicit", "text": "a green square moving left", "positives": ["green"]},
    {"id": "n1", "kind": "negation", "text": "a square, but nothing blue", "positives": ["green"]},
    {"id": "a1", "kind": "absent", "text": "an elephant playing a piano"},
    {"id": "m1", "kind": "mcq", "video": "yellow", "options": ["a yellow disc", "no yellow disc"], "answer": 0},
    {"id": "m2", "kind": "mcq", "video": "red", "options": ["no red square", "a red square"], "answer": 1},
    {"id": "c1", "kind": "counterfactual", "video": "red", "text": "a red square moving right",
     "counterfactual": "a red square moving left", "aspect": "Direction"},
]
FAST = {"sampling": {"frames": 6, "max_side": 320}}  # few frames: ingestion in seconds


def _write_bench(root: Path) -> Path:
    (root / "videos").mkdir(parents=True)
    for name, scene in (("red", SQUARE), ("yellow", YELLOW), ("green", GREEN)):
        write_video(root / "videos" / f"{name}.mp4", scene)
    masks = root / "masks" / "red"
    masks.mkdir(parents=True)
    for k in range(SQUARE.frames):
        Image.fromarray(SQUARE.masks(k)[0].astype(np.uint8) * 255).save(masks / f"{k}.png")
    (root / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in QUERIES) + "\n")
    return root


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """The bench, a store ingested once, and the first run's folder (random, dense, compositional)."""
    base = tmp_path_factory.mktemp("eval")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TWINSEEK_CACHE_DIR", str(base / "cache"))
        paths = {"bench": _write_bench(base / "bench"), "store": base / "store", "out": base / "run1"}
        run(paths["bench"], store=paths["store"], out=paths["out"], systems=["random", "dense", "compositional"],
            llm_decomposition=False, settings_overrides=FAST)
        yield paths


@pytest.fixture(scope="module")
def first(env: dict[str, Path]) -> RunResult:
    return load_results(env["out"])


def _stable_system(result: RunResult, name: str) -> list[dict[str, Any]]:
    return [r.model_dump(exclude={"seconds", "timings"}) for r in result.systems[name].records]


def _stable(result: RunResult) -> list[dict[str, Any]]:
    """Records without the fields that measure time."""
    return [r.model_dump(exclude={"seconds", "timings"}) for s in result.systems.values() for r in s.records]


def test_results_json_holds_every_query_of_every_system(env: dict[str, Path], first: RunResult) -> None:
    data = json.loads((env["out"] / "results.json").read_text())
    assert list(data["systems"]) == ["random", "dense", "compositional"]
    assert data["config"]["gallery"] == 3 and data["config"]["seed"] == 0 and data["config"]["store"]
    for system in first.systems.values():
        assert [r.id for r in system.records] == [q["id"] for q in QUERIES]
        assert system.metrics["implicit_n"] == 2 and "mcq_accuracy" in system.metrics
        assert "absent_rejection@tau" in system.metrics and "counterfactual_direction_accuracy" in system.metrics
        ranked = [r for r in system.records if r.kind in ("implicit", "explicit", "negation", "absent")]
        assert all(len(r.ranking) == 3 and {x.video for x in r.ranking} == {"red", "yellow", "green"} for r in ranked)
        assert all(r.rank in (1, 2, 3) for r in ranked if r.kind != "absent")
        assert all(len(r.choice_scores or []) == 2 for r in system.records if r.kind in ("mcq", "counterfactual"))
        assert all(r.seconds >= 0 for r in system.records)
    dense = first.systems["dense"].records[0]
    assert "retrieve.dense" in dense.timings and any("dense" in k for k in dense.models)
    assert first.systems["compositional"].records[0].models.get("compositional", "").startswith("embedded:")
    # metrics recomputed from the stored records agree with the stored metrics
    again = aggregate(first.systems["dense"].records, tau=first.config.tau)
    assert again == pytest.approx(first.systems["dense"].metrics, nan_ok=True)


def test_load_results_reads_a_gzipped_copy(env: dict[str, Path], first: RunResult, tmp_path: Path) -> None:
    import gzip

    (tmp_path / "results.json.gz").write_bytes(gzip.compress((env["out"] / "results.json").read_bytes()))
    assert _stable(load_results(tmp_path)) == _stable(first) == _stable(load_results(tmp_path / "results.json.gz"))


def test_report_and_plots_exist(env: dict[str, Path], first: RunResult) -> None:
    out = env["out"]
    for name in ("report.md", "report.html", "plots/metrics_per_kind.png", "plots/rank_histogram.png",
                 "plots/latency.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    with Image.open(out / "plots" / "metrics_per_kind.png") as img:
        assert img.format == "PNG"
    md = (out / "report.md").read_text()
    assert "| implicit (n=2) | random | dense | compositional |" in md and "r@1" in md and "plots/latency.png" in md
    assert {p.name for p in first.report_files} >= {"report.md", "report.html", "latency.png"}
    summary = summary_table(first)
    assert summary is not None
    header, rows = summary
    assert header[:3] == ["system", "implicit R@1", "R@5"] and header[-1] == "median s/query"
    assert [r[0] for r in rows] == ["random", "dense", "compositional"]
    assert rows[1][1] == f"{first.systems['dense'].metrics['implicit_r@1']:.3f}"
    assert rows[1][header.index("MCQ acc")] == f"{first.systems['dense'].metrics['mcq_accuracy']:.3f}"
    assert md.index("## Summary") < md.index("## Metrics per kind") and "| dense | " in md


def test_same_seed_same_results_and_another_seed_differs(env: dict[str, Path], first: RunResult, tmp_path: Path) -> None:
    again = run(env["bench"], store=env["store"], out=tmp_path / "again", systems=["random", "dense", "compositional"],
                seed=0, llm_decomposition=False, report=False)
    assert _stable(again) == _stable(first)
    assert again.report_files == [] and not (tmp_path / "again" / "report.md").exists()
    other = run(env["bench"], out=tmp_path / "other", systems=["random"], seed=1, report=False)
    assert other.config.store is None  # random needs no twins: nothing ingested
    assert [r.ranking for r in other.systems["random"].records] != [r.ranking for r in first.systems["random"].records]


def test_limit_and_kinds(env: dict[str, Path], tmp_path: Path) -> None:
    result = run(env["bench"], out=tmp_path, systems=["random"], kinds=["implicit", "mcq", "absent"], limit=1,
                 report=False)
    assert [(r.id, r.kind) for r in result.systems["random"].records] == [("i1", "implicit"), ("a1", "absent"),
                                                                           ("m1", "mcq")]
    assert result.config.limit == 1 and result.config.kinds == ["absent", "implicit", "mcq"]


def test_cli_eval(env: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "cli"
    res = CliRunner().invoke(app, ["eval", str(env["bench"]), "--store", str(env["store"]), "--out", str(out),
                                   "--baseline", "random", "--systems", "dense", "--no-llm", "--limit", "1",
                                   "--kinds", "explicit,counterfactual", "--seed", "3"])
    assert res.exit_code == 0, res.output
    data = json.loads((out / "results.json").read_text())
    assert list(data["systems"]) == ["dense", "random"] and data["config"]["seed"] == 3
    assert [r["id"] for r in data["systems"]["random"]["records"]] == ["e1", "c1"]
    assert (out / "report.md").is_file() and (out / "plots" / "latency.png").is_file()
    assert "explicit R@1" in res.output and "results.json" in res.output


def test_bad_bench_and_bad_options_fail_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    (bad / "videos").mkdir(parents=True)
    write_video(bad / "videos" / "a.mp4", Scene(frames=4))
    (bad / "queries.jsonl").write_text('{"id": "q1", "kind": "explicit", "text": "x", "positives": ["nope"]}\n{oops\n')
    with pytest.raises(BenchError, match="unknown video id"):
        run(bad, out=tmp_path / "o", systems=["random"])
    runner = CliRunner()
    res = runner.invoke(app, ["eval", str(bad), "--baseline", "random", "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "invalid JSON" in res.output and "line 2" in res.output
    res = runner.invoke(app, ["eval", str(tmp_path / "missing"), "--baseline", "random"])
    assert res.exit_code == 1 and "does not exist" in res.output
    res = runner.invoke(app, ["eval", str(bad), "--systems", "full-xy"])
    assert res.exit_code == 2 and "unknown ablation switch" in res.output


class _Killed(BaseException):
    """Stands in for a kill: nothing of the runner catches it, so no cleanup of ours runs."""


def _counting(monkeypatch: pytest.MonkeyPatch, kill_at: tuple[str, int] | None = None) -> list[str]:
    """Count the queries the runner evaluates (as "system:query"); optionally die before ``kill_at``."""
    import twinseek.evals.runner as runner_module

    calls: list[str] = []
    real = evaluate_query  # the evaluator itself, never an earlier wrapper

    def wrapped(scorer: Any, query: Any, bench: Any, grounder: Any = None) -> Any:
        system = getattr(scorer, "tool", None) or type(getattr(scorer, "inner", scorer)).__name__
        if kill_at is not None and (system, sum(c.startswith(f"{system}:") for c in calls)) == kill_at:
            raise _Killed
        calls.append(f"{system}:{query.id}")
        return real(scorer, query, bench, grounder)

    monkeypatch.setattr(runner_module, "evaluate_query", wrapped)
    return calls


def test_a_killed_run_keeps_what_it_finished_and_resumes(env: dict[str, Path], first: RunResult, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "killed"
    systems = ["random", "dense", "compositional"]
    args: dict[str, Any] = {"store": env["store"], "out": out, "llm_decomposition": False, "settings_overrides": FAST}
    _counting(monkeypatch, kill_at=("dense", 3))
    with pytest.raises(_Killed):
        run(env["bench"], systems=systems, **args)
    killed = load_results(out)  # what a kill leaves: the finished system, the config, checkpoints of the next
    assert not killed.complete and list(killed.systems) == ["random"] and killed.config.systems == systems
    assert _stable(killed)[:len(QUERIES)] == _stable(first)[:len(QUERIES)]
    checkpoint = out / "checkpoints" / "dense.jsonl"
    assert len(checkpoint.read_text().splitlines()) == 3
    with checkpoint.open("a") as handle:
        handle.write('{"id": "n1", "kind": "neg')  # the kill cut this line short: ignored on resume

    with pytest.raises(ValueError, match="unfinished run"):  # a fresh run never overwrites it
        run(env["bench"], systems=systems, **args)
    with pytest.raises(ValueError, match="seed: 0 != 1"):  # nor does a resume with other settings
        run(env["bench"], systems=systems, seed=1, resume=True, **args)
    with pytest.raises(ValueError, match="limit"):
        run(env["bench"], systems=systems, limit=1, resume=True, **args)

    calls = _counting(monkeypatch)
    resumed = run(env["bench"], resume=True, **args)  # no system list: the run's own
    assert calls == [f"dense:{q['id']}" for q in QUERIES[3:]] + [f"compositional:{q['id']}" for q in QUERIES]
    assert resumed.complete and list(resumed.systems) == systems and load_results(out).complete
    assert _stable(resumed) == _stable(first)  # the same numbers as a run that was never killed
    assert not list((out / "checkpoints").iterdir()) and (out / "report.md").is_file()
    assert resumed.systems["dense"].metrics == pytest.approx(first.systems["dense"].metrics, nan_ok=True)

    calls = _counting(monkeypatch)
    more = run(env["bench"], systems=["random", "naive"], resume=True, report=False, **args)  # adds a system
    assert list(more.systems) == [*systems, "naive"] and calls and all(c.startswith("NaiveLabelBaseline:") for c in calls)


def test_cli_resume(env: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "cli"
    runner = CliRunner()
    base = ["eval", str(env["bench"]), "--no-llm", "--kinds", "explicit"]
    assert runner.invoke(app, [*base, "--store", str(env["store"]), "--out", str(out), "--systems", "dense"]).exit_code == 0
    res = runner.invoke(app, [*base, "--out", str(out), "--resume", "--systems", "compositional"])  # its store kept
    assert res.exit_code == 0, res.output
    data = json.loads((out / "results.json").read_text())
    assert list(data["systems"]) == ["dense", "compositional"] and data["complete"] is True
    assert data["config"]["store"] == str(env["store"]) and data["systems"]["compositional"]["records"][0]["models"]
    assert "explicit R@1" in res.output and "compositional" in res.output
    res = runner.invoke(app, [*base, "--out", str(out), "--resume", "--limit", "1"])
    assert res.exit_code == 2 and "cannot resume" in res.output and "limit" in res.output
    res = runner.invoke(app, [*base, "--resume"])
    assert res.exit_code == 2 and "--out" in res.output


def test_a_search_loads_no_training_code(env: dict[str, Path], tmp_path: Path) -> None:
    """Dense and compositional search over a store, in a fresh interpreter: twinseek's training package stays
    unloaded. (sentence-transformers' own ``__init__`` imports its trainer class, and datasets and peft when they
    are installed: those come with the library that embeds the texts, not from twinseek.)"""
    import os
    import subprocess
    import sys

    import twinseek

    code = (f"import json, sys\nfrom twinseek.evals import run\n"
            f"run({str(env['bench'])!r}, store={str(env['store'])!r}, out={str(tmp_path / 'o')!r}, "
            f"systems=['dense', 'compositional'], llm_decomposition=False, report=False, settings_overrides={FAST!r})\n"
            "print(json.dumps(sorted(sys.modules)))")
    root = str(Path(twinseek.__file__).parents[1])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": root})
    assert done.returncode == 0, done.stderr[-2000:]
    modules = json.loads(done.stdout.strip().splitlines()[-1])
    assert "twinseek.retrieval.dense" in modules and "sentence_transformers" in modules  # it did search
    assert not [m for m in modules if m.startswith("twinseek.embedders")]


def test_system_names() -> None:
    specs = parse_systems(["full", "full-QD-jit", "no-ca", "random,dense", "random"])
    assert [s.name for s in specs] == ["full", "full-qd-jit", "full-ca", "random", "dense"]
    assert specs[1].label == "full w/o QD+JiT" and specs[1].switches() == {"qd": False, "ca": True, "lr": True,
                                                                          "jit": False}
    assert SystemSpec.agent(["JiT", "LR"]).name == "full-lr-jit"
    with pytest.raises(ValueError, match="unknown system"):
        parse_systems(["bm25"])


# ---------------------------------------------------------------- the agent adapter, with a test double
class FakeAgent:
    """Answers like ``Agent.search``: hits above tau (with object masks), dropped candidates, timings, models."""

    def __init__(self, masks: dict[int, str]) -> None:
        self.masks = masks
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def search(self, query: str, k: int = 10, **overrides: Any) -> SimpleNamespace:
        self.calls.append((query, overrides))
        if "elephant" in query:
            rel = {"green": 0.1}
        elif "red" in query or "car" in query:
            rel = {"red": 0.9, "yellow": 0.3}
        else:
            rel = {"yellow": 0.8, "green": 0.2}
        if query.startswith("no "):
            rel = {v: r / 4 for v, r in rel.items()}
        if overrides.get("videos") is not None:  # a search within these videos judges each of them
            rel = {v: rel.get(v, 0.05) for v in overrides["videos"]}
        hits = [SimpleNamespace(video_id=v, relevance=r, judged_by="embedded:stub", objects=self._objects(v))
                for v, r in sorted(rel.items(), key=lambda x: -x[1]) if r >= overrides["tau"]]
        dropped = [SimpleNamespace(video_id=v, relevance=r) for v, r in rel.items() if r < overrides["tau"]]
        fallbacks = [SimpleNamespace(node="reason", video_id="green", reason="LLM timeout")] if "green" in rel else []
        return SimpleNamespace(hits=hits, dropped=dropped, timings={"reason": 0.5, "total": 0.6}, fallbacks=fallbacks,
                               models={"reason": "embedded:stub"}, options={"tool": "fused"}, decomposition=None)

    def _objects(self, video: str) -> list[SimpleNamespace]:
        frames = self.masks if video == "red" else {}
        masks = [SimpleNamespace(frame=f, path=p) for f, p in frames.items()]
        return [SimpleNamespace(track_id=1, category="square", masks=masks)]


@pytest.fixture
def fake(tmp_path: Path) -> FakeAgent:
    # predicted masks at half the ground truth's size: the grounder must resize them
    folder = tmp_path / "pred"
    folder.mkdir()
    masks = {}
    for k in (0, 5, 10):
        path = folder / f"{k}.png"
        Image.fromarray(SQUARE.masks(k)[0].astype(np.uint8) * 255).resize((160, 120), Image.Resampling.NEAREST).save(path)
        masks[k] = str(path)
    return FakeAgent(masks)


def test_agent_scorer_rankings_rejection_choices_and_grounding(env: dict[str, Path], fake: FakeAgent,
                                                               tmp_path: Path) -> None:
    bench = load_bench(env["bench"])
    order = {"red": ["green", "red", "yellow"]}  # retrieval order used below the hits

    scorer = AgentScorer(fake, {v: v for v in bench.videos}, k=5, tau=0.5, switches={"jit": False},
                         order=lambda text, result: order.get("red", []), restrict=False)
    scores = scorer.score_videos("a red square")
    assert scores["red"] == 0.9 and scores["green"] > scores["yellow"] and max(scores["green"], scores["yellow"]) < 0.5
    assert fake.calls[0][1] == {"tau": 0.5, "jit": False}
    scorer.score_videos("a red square")
    assert len(fake.calls) == 1  # cached per text
    # a judged video scores its relevance; an unjudged one scores by retrieval position, below every judged one
    assert scorer.video_score("a red square", "yellow") == 0.3
    assert -1 < scorer.video_score("a red square", "green") <= -0.5

    records = {q.id: evaluate_query(scorer, q, bench, scorer.grounder(bench)) for q in bench.queries}
    i1 = records["i1"]
    assert i1.rank == 1 and i1.returned == ["red"] and i1.hits[0].objects[0].masks
    assert i1.j is not None and i1.j > 0.9 and i1.f is not None and i1.f > 0.8  # resized to 320x240 and compared
    assert records["i2"].j is None  # no ground-truth masks
    a1 = records["a1"]
    assert a1.returned == [] and a1.max_score == pytest.approx(0.1)  # rejected: no hit above tau
    assert aggregate([a1])["absent_rejection@tau"] == 1.0
    assert records["m1"].correct is True and records["m2"].correct is True
    assert records["m2"].choice_scores == pytest.approx([0.225, 0.9])
    assert records["c1"].correct is False  # both texts judged 0.9: a tie is wrong
    assert records["e2"].fallbacks == ["reason (green): LLM timeout"]
    assert records["e1"].timings["reason"] == pytest.approx(0.5) and records["e1"].models == {"reason": "embedded:stub"}


def test_agent_scorer_judges_choices_within_the_given_video(fake: FakeAgent) -> None:
    scorer = AgentScorer(fake, {"red": "red", "yellow": "yellow", "green": "green"}, tau=0.5, switches={"lr": True})
    # green is no candidate of a gallery search for this text; searched within, it is judged (0.05)
    assert scorer.video_score("a red square", "green") == pytest.approx(0.05)
    assert scorer.video_score("a red square", "yellow") == pytest.approx(0.3)  # dropped below tau: still its score
    assert fake.calls[0] == ("a red square", {"tau": 0.5, "videos": ("green",), "lr": True})
    assert scorer.video_score("a red square", "green") == pytest.approx(0.05) and len(fake.calls) == 2  # cached
    assert scorer.video_score("a red square", "purple") == -1.0  # not in the store: nothing to judge
    assert scorer.take_info().timings["reason"] == pytest.approx(1.0) and len(fake.calls) == 2  # two searches


def test_agent_scorer_without_a_retriever_orders_the_rest_by_id(fake: FakeAgent) -> None:
    scorer = AgentScorer(fake, {"red": "red", "yellow": "yellow", "green": "green", "blue": "blue"}, tau=0.5,
                         restrict=False)
    scores = scorer.score_videos("a red square")
    ranked = sorted(scores, key=lambda v: -scores[v])
    assert ranked == ["red", "blue", "green", "yellow"]
    assert scorer.video_score("a red square", "blue") == -1.0  # neither judged nor in a retrieval order


def test_draw_overlays_and_report_examples(env: dict[str, Path], fake: FakeAgent, first: RunResult,
                                           tmp_path: Path) -> None:
    files = draw_overlays(env["bench"] / "videos" / "red.mp4", {k: [p] for k, p in fake.masks.items()}, tmp_path / "ov")
    assert [p.name for p in files] == ["f000000.png", "f000005.png", "f000010.png"]
    with Image.open(files[0]) as img:
        pixels = np.asarray(img.convert("RGB"))
    assert pixels.shape == (120, 160, 3)
    square = np.asarray(Image.open(fake.masks[0])) > 0
    assert pixels[square].mean(axis=0)[0] > 150  # the red square under its tint
    assert draw_overlays(None, {0: [fake.masks[0]]}, tmp_path / "black")[0].is_file()  # no video: black frame
    one = draw_overlays(None, {k: [p] for k, p in fake.masks.items()}, tmp_path / "one", max_frames=1)
    assert [p.name for p in one] == ["f000000.png"]  # one key frame: no division by max_frames - 1

    first.systems["dense"].examples = [OverlayExample(query_id="i1", text="q", outcome="hit", video="red",
                                                      positives=["red"], files=["ov/f000000.png"])]
    written = write_report(first, tmp_path)
    assert "Grounding examples" in written[0].read_text() and "ov/f000000.png" in written[0].read_text()


def test_missing_agent_is_skipped_with_all_but_fails_when_asked(env: dict[str, Path], tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "twinseek.agent", None)  # import fails: the agent extra is missing
    result = run(env["bench"], store=env["store"], out=tmp_path, systems=["full-lr", "random"], limit=1,
                 skip_unavailable=True, report=True)
    assert result.systems["full-lr"].skipped and "twinseek[agent]" in result.systems["full-lr"].skipped
    assert result.systems["random"].records and "skipped" in (tmp_path / "report.md").read_text()
    with pytest.raises(ImportError):
        run(env["bench"], store=env["store"], out=tmp_path, systems=["full"], limit=1, report=False)
    assert math.isfinite(result.systems["random"].metrics["implicit_r@1"])


# ---------------------------------------------------------------- the real agent through run(), LLM scripted
class _BySchema(list):  # type: ignore[type-arg]
    """A ``stub.script`` answering each request by the reply schema it asks for."""

    def __init__(self, stub: Any) -> None:
        super().__init__([None])  # never empty: the stub pops from it
        self.stub = stub

    def pop(self, index: Any = -1) -> Any:
        from support.llm_stub import completion

        body = self.stub.requests[-1]
        schema = (body.get("response_format") or {}).get("json_schema", {}).get("name", "")
        query = body["messages"][-1]["content"].split("\n")[0].removeprefix("Query: ")
        replies = {
            "_Reply": {"rewritten": query, "subqueries": [{"text": query, "type": "object", "negated": False}]},
            "Verdict": {"reasoning": "checked", "missing": ["colour of object 1"], "objects": [1], "relevance": 0.7},
            "Plan": {"calls": [{"action": "motion_relation", "args": {"track_a": 1, "track_b": 2}}]},
        }
        return completion(json.dumps(replies.get(schema, {})))


def test_agent_systems_share_the_store_and_judge_choices_within_the_video(env: dict[str, Path], stub: Any,
                                                                         tmp_path: Path) -> None:
    from twinseek.twins.store import TwinStore

    from support.store import table_hashes

    stub.script = _BySchema(stub)
    with TwinStore(env["store"], create=False) as store:
        store.clear_refinements()  # from an earlier test of this module
    before = table_hashes(env["store"])
    llm = {"base_url": stub.base_url, "api_key": "test", "model": "stub", "http_retries": 0, "max_retries": 0}
    result = run(env["bench"], store=env["store"], out=tmp_path, systems=["full", "full-jit", "full-lr", "dense"], k=2,
                 report=False,
                 settings_overrides={**FAST, "llm": llm})

    assert not (tmp_path / "stores").exists()  # no copy: refinement never rewrites the twins
    assert table_hashes(env["store"]) == before  # the ingest rows are byte-identical after the run
    with TwinStore(env["store"], create=False) as store:
        refined = store.refinements()
    assert refined and {r.action for r in refined} == {"motion_relation"}  # what "full" learned: an overlay
    schemas = [r["response_format"]["json_schema"]["name"] for r in stub.requests]
    assert "Plan" in schemas  # the full system did refine
    texts = {q["text"] for q in QUERIES if "text" in q} | {o for q in QUERIES for o in q.get("options", [])} | {
        q["counterfactual"] for q in QUERIES if "counterfactual" in q}
    assert schemas.count("_Reply") == len(texts)  # one decomposition per text, shared by all systems

    with TwinStore(env["store"], create=False) as store:
        yellow = store.find_by_path(str(env["bench"] / "videos" / "yellow.mp4"))
    assert yellow is not None
    asked = [r["messages"][-1]["content"] for r in stub.requests
             if r["response_format"]["json_schema"]["name"] == "Verdict" and "Query: no yellow disc" in
             r["messages"][-1]["content"]]
    assert asked and all(f'"video":"{yellow.video_id}"' in a for a in asked)  # judged within the given video
    for name in ("full", "full-jit"):
        m1 = next(r for r in result.systems[name].records if r.id == "m1")
        assert m1.choice_scores == [0.7, 0.7] and m1.correct is False  # both options judged 0.7: a tie is wrong
    stub.requests.clear()  # another run over the store: every decomposition comes from the store's cache
    run(env["bench"], store=env["store"], out=tmp_path / "again", systems=["full-lr", "compositional"], k=2,
        report=False, settings_overrides={**FAST, "llm": llm})
    assert not stub.requests
    # a system alone, on a store that now holds those refinements, answers exactly as it did among the others
    again = run(env["bench"], store=env["store"], out=tmp_path / "alone", systems=["full"], k=2, report=False,
                settings_overrides={**FAST, "llm": llm})
    assert _stable_system(again, "full") == _stable_system(result, "full")
