"""The chat session: new queries, refinements, :why / :show / :history, and resuming from the checkpointer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from twinseek.agent.chat import ChatSession

from support.agent import open_agent, responder, route, verdict
from support.synthetic import Scene, write_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("clips") / "shapes.mp4", Scene())


def test_turns_refine_explain_show_and_resume(tmp_path: Path, clip: Path, stub: Any) -> None:
    route(stub, responder(lambda _: verdict(0.9, [1], why="object 1 is a red square"), others=0.7))
    store = tmp_path / "store"
    with open_agent(store, clip, stub) as agent:
        chat = ChatSession(agent, store, session="s1", k=3)
        first = chat.handle("a red square moving right")
        assert first.kind == "results" and first.result is not None and first.result.hits
        assert first.result.hits[0].video_id == "shapes"
        refined = chat.handle("only the ones on grass")
        assert refined.text == "a red square moving right, only the ones on grass"
        why = chat.handle("why the first one?")
        assert why.kind == "why" and "object 1 is a red square" in why.text and "shapes" in why.text
        assert chat.handle(":why 1").text == why.text
        assert chat.handle(":why 99").kind == "error"
        shown = chat.handle(":show 1")
        assert shown.kind == "show" and shown.files and all(Path(f).exists() for f in shown.files)
        history = chat.handle(":history").text
        assert "1. a red square moving right" in history and "2. only the ones on grass" in history
        fresh = chat.handle("a blue disc")
        assert fresh.text == "a blue disc"  # not a refinement: a new query
        chat.close()

        resumed = ChatSession(agent, store, session="s1", k=3)  # same thread: the turns come back
        assert [t.said for t in resumed.turns] == ["a red square moving right", "only the ones on grass",
                                                   "a blue disc"]
        assert resumed.handle("why the first one?").kind == "why"
        other = ChatSession(agent, store, session="s2", k=3)
        assert other.turns == [] and other.handle(":why 1").kind == "error"
        resumed.close()
        other.close()


def test_chat_command_reads_lines_and_resumes(tmp_path: Path, clip: Path, stub: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from twinseek.cli import app

    from support.agent import build_store

    root = build_store(tmp_path / "store", clip)
    route(stub, responder(lambda _: verdict(0.9, [1], why="object 1 is red"), others=0.1))
    for key, value in {"BASE_URL": stub.base_url, "API_KEY": "test", "MODEL": "stub", "HTTP_RETRIES": "0"}.items():
        monkeypatch.setenv(f"TWINSEEK_LLM__{key}", value)
    runner = CliRunner()
    first = runner.invoke(app, ["chat", "--store", str(root), "--session", "t"],
                          input="a red square moving right\n:why 1\n:show 1\n")
    assert first.exit_code == 0, first.output
    flat = " ".join(first.output.split())
    assert "shapes" in flat and "object 1 is red" in flat and ".png" in flat
    again = runner.invoke(app, ["chat", "--store", str(root), "--session", "t"], input=":history\n")
    flat = " ".join(again.output.split())  # rich wraps at the terminal width
    assert "1 earlier turns" in flat and "1. a red square moving right" in flat
