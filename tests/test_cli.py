from __future__ import annotations

import json
from pathlib import Path

from synthetic import Scene, write_video
from typer.testing import CliRunner

from twinseek.cli import app

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
    assert {"compositional", "dense"} <= set(found["timings"])
    table = runner.invoke(app, ["search", "a red square", "--store", str(store), "--no-llm", "--tool", "dense"])
    assert table.exit_code == 0 and "first" in table.output
    bad = runner.invoke(app, ["search", "x", "--store", str(store), "--tool", "magic"])
    assert bad.exit_code != 0
