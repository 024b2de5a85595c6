from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from twinseek.cli import app
from twinseek.twins.store import TwinStore

from support.agent import put_twin
from support.moments import timed_twin
from support.synthetic import Scene, write_video

runner = CliRunner()


def test_ingest_show_stats_delete(tmp_path: Path) -> None:
    store = tmp_path / "store"
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "one.mp4", Scene(frames=8))
    (videos / "bad.avi").write_bytes(b"nope" * 100)

    result = runner.invoke(app, ["ingest", str(videos), "--store", str(store), "--frames", "6"])
    assert result.exit_code == 0, result.output
    assert "1 ingested" in result.output and "1 failed" in result.output and "bad.avi" in result.output

    again = runner.invoke(app, ["ingest", str(videos / "one.mp4"), "--store", str(store)])
    assert again.exit_code == 0 and "1 skipped" in again.output

    shown = runner.invoke(app, ["twins", "show", "one", "--store", str(store), "--json"])
    assert shown.exit_code == 0
    twin = json.loads(shown.output)
    assert twin["video"]["video_id"] == "one" and len(twin["video"]["sampled_frames"]) == 6

    compact = runner.invoke(app, ["twins", "show", "one", "--store", str(store), "--compact"])
    assert json.loads(compact.output)["video"] == "one"

    table = runner.invoke(app, ["twins", "show", "one", "--store", str(store)])
    assert "segmenter=" in table.output

    stats = runner.invoke(app, ["store", "stats", "--store", str(store), "--json"])
    assert json.loads(stats.output)["videos"] == 1

    deleted = runner.invoke(app, ["store", "delete", "one", "--store", str(store)])
    assert deleted.exit_code == 0
    assert json.loads(runner.invoke(app, ["store", "stats", "--store", str(store), "--json"]).output)["videos"] == 0


def test_errors_are_clear_and_exit_nonzero(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["store", "stats", "--store", str(tmp_path / "nothing")])
    assert missing.exit_code == 1 and "no twin store" in missing.output
    (tmp_path / "s").mkdir()
    runner.invoke(app, ["ingest", str(write_video(tmp_path / "a.mp4", Scene(frames=6))), "--store", str(tmp_path / "s")])
    unknown = runner.invoke(app, ["twins", "show", "zzz", "--store", str(tmp_path / "s")])
    assert unknown.exit_code == 1 and "zzz" in unknown.output
    only_bad = tmp_path / "bad.mp4"
    only_bad.write_bytes(b"x" * 10)
    failed = runner.invoke(app, ["ingest", str(only_bad), "--store", str(tmp_path / "s")])
    assert failed.exit_code == 1 and "bad.mp4" in failed.output


def test_store_option_falls_back_to_env(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TWINSEEK_STORE", str(tmp_path / "envstore"))
    result = runner.invoke(app, ["ingest", str(write_video(tmp_path / "e.mp4", Scene(frames=6)))])
    assert result.exit_code == 0 and (tmp_path / "envstore" / "twins.db").exists()


def test_search_ranks_the_store(tmp_path: Path) -> None:
    store = tmp_path / "store"
    for name, seed in (("first", 1), ("second", 2)):
        path = write_video(tmp_path / f"{name}.mp4", Scene(frames=8, seed=seed))
        assert runner.invoke(app, ["ingest", str(path), "--store", str(store), "--frames", "6"]).exit_code == 0
    result = runner.invoke(app, ["search", "a red square moving right", "--store", str(store), "--no-llm",
                                 "--json", "-k", "2"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["decomposition"]["source"] == "fallback"
    assert sorted(h["video_id"] for h in found["hits"]) == ["first", "second"]
    assert [h["rank"] for h in found["hits"]] == [1, 2]
    assert {"retrieve.compositional", "retrieve.dense", "retrieve", "total"} <= set(found["timings"])
    assert found["models"]["decompose"] == "rules" and found["options"]["decomposer"] == "rules"
    table = runner.invoke(app, ["search", "a red square", "--store", str(store), "--no-llm", "--tool", "dense"])
    assert table.exit_code == 0 and "first" in table.output
    bad = runner.invoke(app, ["search", "x", "--store", str(store), "--tool", "magic"])
    assert bad.exit_code != 0


# ---------------------------------------------------------------- search and ask: the agent's graph
def _stub_env(monkeypatch, stub) -> None:  # type: ignore[no-untyped-def]
    for key, value in {"BASE_URL": stub.base_url, "API_KEY": "test", "MODEL": "stub", "HTTP_RETRIES": "0",
                       "MAX_RETRIES": "0"}.items():
        monkeypatch.setenv(f"TWINSEEK_LLM__{key}", value)


def test_search_and_ask_run_the_graph_with_the_same_switches(tmp_path: Path, monkeypatch, stub) -> None:  # type: ignore[no-untyped-def]
    from support.agent import QUERY, build_store, plan, responder, route, verdict

    store = build_store(tmp_path / "store", write_video(tmp_path / "shapes.mp4", Scene()))
    _stub_env(monkeypatch, stub)

    def shapes(user: str) -> dict:  # type: ignore[type-arg]
        if "bright red" in user:
            return verdict(0.85, [1], why="object 1 is a [bold]bright red[/bold] square")
        return verdict(0.3, [1], missing=["colour of object 1"])

    route(stub, responder(shapes, plan_reply=plan(("describe_object", {"track_id": 1})), others=0.2))
    searched = runner.invoke(app, ["search", QUERY, "--store", str(store), "--json", "-k", "3"])
    assert searched.exit_code == 0, searched.output
    found = json.loads(searched.stdout)
    assert found["path"] == ["decompose", "retrieve", "rerank", "finalize"]  # reasoning and refinement off
    assert found["options"]["lr"] is False and found["options"]["jit"] is False and len(found["hits"]) == 3
    assert found["hits"][0]["video_id"] == "shapes" and found["hits"][0]["relevance"] == 1.0
    asked_schemas = [r.get("response_format", {}).get("json_schema", {}).get("name") for r in stub.requests]
    assert asked_schemas == ["_Reply"]  # only the decomposition
    table = runner.invoke(app, ["search", QUERY, "--store", str(store), "--no-qd", "--no-ca"])
    assert table.exit_code == 0 and "relevance" in table.stdout and "shapes" in table.stdout

    # ask: the agent with reasoning; node-by-node progress on stderr, the answer on stdout
    asked = runner.invoke(app, ["ask", QUERY, "--store", str(store), "-k", "3", "--tau", "0.25", "--no-jit"])
    assert asked.exit_code == 0, asked.output
    assert "decompose" in asked.stderr and "reason[0] shapes" in asked.stderr and "judged shapes" in asked.stderr
    assert "shapes" in asked.stdout and "0.30" in asked.stdout and "reason[0]" not in asked.stdout
    assert "below tau=0.25: " in asked.stdout and " 0.20" in asked.stdout  # the candidates the threshold hid
    as_json = runner.invoke(app, ["ask", QUERY, "--store", str(store), "-k", "3", "--tau", "0.25", "--no-jit",
                                  "--json", "--video", "dogs", "--llm-weight", "1", "--deadline", "30"])
    result = json.loads(as_json.stdout)
    assert [h["video_id"] for h in result["hits"] + result["dropped"]] == ["dogs"]
    assert result["options"]["videos"] == ["dogs"] and result["options"]["deadline_s"] == 30.0
    assert result["options"]["jit"] is False and result["options"]["tau"] == 0.25
    bad = runner.invoke(app, ["ask", QUERY, "--store", str(store), "--k", "0"])
    assert bad.exit_code != 0
    worse = runner.invoke(app, ["ask", QUERY, "--store", str(store), "--rerank", "magic"])
    assert worse.exit_code != 0 and "unknown reranker" in worse.output


def test_ask_escapes_untrusted_text(tmp_path: Path, monkeypatch, stub) -> None:  # type: ignore[no-untyped-def]
    from support.agent import build_store, reply, responder, route, verdict

    store = build_store(tmp_path / "store", write_video(tmp_path / "shapes.mp4", Scene()))
    _stub_env(monkeypatch, stub)
    query = "a red square [bold red]now[/bold red]"
    decomposition = reply({"rewritten": "[link=http://x]click[/link]", "subqueries": [
        {"text": "a [red]square[/red]", "type": "object", "negated": False}]})
    route(stub, responder(lambda _: verdict(0.9, [1], why="see [blink]this[/blink]"), decomposition=decomposition))
    asked = runner.invoke(app, ["ask", query, "--store", str(store), "-k", "1", "--no-jit"])
    assert asked.exit_code == 0, asked.output
    out = " ".join(asked.stdout.split())
    for text in ("[bold red]now[/bold red]", "[link=http://x]click[/link]", "a [red]square[/red]", "[blink]this"):
        assert text in out, text


def test_the_embedded_limits_note_names_what_the_twin_sees_and_what_it_cannot() -> None:
    """The footer of a search on the embedded default states its limits as they are (COCO and ImageNet names, no
    depth, nothing about actions or speech); the paper profile has no such footer."""
    from twinseek.cli.search import _embedded_limits_note
    from twinseek.config import load_settings

    note = _embedded_limits_note(load_settings(profile="embedded"))
    assert "COCO" in note and "ImageNet" in note and "depth is null" in note and "actions or speech" in note
    assert _embedded_limits_note(load_settings(profile="paper")) == ""


def test_search_and_ask_print_each_hits_moment(tmp_path: Path) -> None:
    from twinseek.twins.store import TwinStore

    from support.agent import put_twin
    from support.moments import timed_twin

    store = tmp_path / "store"
    with TwinStore(store) as twins:  # the dog lives in shot 2 only (frames 200-299, 20-30 s)
        put_twin(twins, *timed_twin("park", {"cat": (0, 90), "person": (100, 190), "dog": (200, 290)}))
    searched = runner.invoke(app, ["search", "a dog", "--store", str(store), "--no-qd", "-k", "1"])
    assert searched.exit_code == 0, searched.output
    assert "│ 00:00:20-00:00:30 │" in searched.stdout  # the span whole in its column
    assert "1 00:00:20-00:00:30 · shot 2 · dog" in " ".join(searched.stdout.split())  # with the shot and evidence
    asked = runner.invoke(app, ["ask", "a dog", "--store", str(store), "--no-qd", "--no-lr", "--tau", "0", "-k", "1"])
    assert asked.exit_code == 0, asked.output
    assert "00:00:20-00:00:30 · shot 2" in " ".join(asked.stdout.split())
    as_json = runner.invoke(app, ["search", "a dog", "--store", str(store), "--no-qd", "-k", "1", "--json"])
    [moment, *_] = json.loads(as_json.stdout)["hits"][0]["moments"]
    assert (moment["start_s"], moment["end_s"], moment["shots"]) == (20.0, 30.0, [2])


def test_moment_lines_escape_their_evidence() -> None:
    from twinseek.agent.state import Hit, Moment
    from twinseek.cli.render import console, moment_lines

    hit = Hit(rank=1, video_id="v", path="/v.mp4", relevance=0.5, retrieval_score=0.5, moments=[
        Moment(start_s=192.4, end_s=221.0, shots=[4, 5], score=0.8, evidence=['someone says "[red]hi[/red]"']),
        Moment(start_s=3600, end_s=3605, score=0.7)])
    with console.capture() as captured:
        for line in moment_lines(hit):
            console.print(line)
    assert captured.get().splitlines() == ['00:03:12-00:03:41 · shots 4-5 · someone says "[red]hi[/red]"',
                                           "also 01:00:00-01:00:05 (0.70)"]


def test_watch_once_ingests_what_is_there_and_a_second_run_passes_over_it(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from support.watching import light_specialists

    # the light specialists: the command's wiring is under test here (tests/twins/test_watch.py has the watcher)
    monkeypatch.setattr("twinseek.twins.pipeline.build_specialists", lambda settings: light_specialists())
    videos = tmp_path / "in"
    videos.mkdir()
    write_video(videos / "one.mp4", Scene(frames=6, width=96, height=64))
    (videos / "b[red]ad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x17" * 3000)
    (videos / ".hidden.mp4").write_bytes(b"x")
    args = ["watch", str(videos), "--store", str(tmp_path / "s"), "--once", "--settle", "0.2", "--frames", "4"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "ingested" in result.output and "one.mp4" in result.output and "b[red]ad.mp4" in result.output
    assert "1 ingested, 0 skipped, 1 failed" in result.output and ".hidden" not in result.output
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "0 ingested, 0 skipped, 0 failed" in again.output, again.output
    missing = runner.invoke(app, ["watch", str(tmp_path / "nope"), "--store", str(tmp_path / "s2")])
    assert missing.exit_code == 2 and "not a folder" in missing.output and not (tmp_path / "s2").exists()


def test_twins_show_lists_the_scenes_of_a_video_of_several(tmp_path: Path) -> None:
    twin, masks = timed_twin("tour", {"bird": (0, 290)})
    for shot, labels in zip(twin.shots, ([("[red]lake[/red]", 0.9)], [("[red]lake[/red]", 0.9)], [("desert", 0.9)])):
        shot.labels = labels
    with TwinStore(tmp_path / "store") as store:
        put_twin(store, twin, masks)
    shown = runner.invoke(app, ["twins", "show", "tour", "--store", str(tmp_path / "store")])
    assert shown.exit_code == 0, shown.output
    assert "shots: 3, in 2 scenes" in shown.output
    assert "scene 0: 00:00:00-00:00:20 (shots 0-1) [red]lake[/red]" in shown.output  # markup shown, not applied
    assert "scene 1: 00:00:20-00:00:30 (shot 2) desert" in shown.output
