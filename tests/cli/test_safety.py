"""The CLI with hostile-but-ordinary input: markup characters and control characters in queries, file names and
LLM output are printed as text; bad k, empty queries and odd session names get one clear message; Ctrl-C cancels
a chat turn; the chat history is private."""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from twinseek.agent.api import Agent
from twinseek.agent.chat import ChatSession
from twinseek.cli import app
from twinseek.cli.app import ControlCharFilter
from twinseek.cli.render import safe, safe_name
from twinseek.cli.search import history_file

from support.agent import build_store, reply, responder, route, verdict
from support.llm_stub import StubLLMServer
from support.synthetic import Scene, write_video

runner = CliRunner()
MARKUP = "a dog [/x] on [bold]grass[/bold] [/b]"


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("clips") / "shapes.mp4", Scene())


def _use_stub(monkeypatch: pytest.MonkeyPatch, stub: StubLLMServer) -> None:
    for key, value in {"BASE_URL": stub.base_url, "API_KEY": "test", "MODEL": "stub", "HTTP_RETRIES": "0",
                       "MAX_RETRIES": "0"}.items():
        monkeypatch.setenv(f"TWINSEEK_LLM__{key}", value)


def _flat(output: str) -> str:
    return " ".join(output.split())  # rich wraps at the terminal width


def test_safe_escapes_markup_and_strips_control_characters() -> None:
    assert safe("[/bold] x") == "\\[/bold] x"
    assert safe("red\x1b[31m alert\x07\nline two\tend") == "red[31m alert\nline two\tend"
    assert safe_name("evil\x1b[2J\nname.mp4") == "evil?[2J?name.mp4"
    assert safe_name("clip [/b].mp4") == "clip \\[/b].mp4"


def test_log_records_lose_control_characters() -> None:
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "skipping %s", ("evil\x1b[2Jname.mp4",), None)
    assert ControlCharFilter().filter(record) and record.getMessage() == "skipping evil?[2Jname.mp4"


def test_search_prints_markup_in_the_query_and_the_llm_rewrite(tmp_path: Path, clip: Path, stub: StubLLMServer,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    store = build_store(tmp_path / "store", clip)
    rewrite = {"rewritten": "a [/bold] red square [/b]",
               "subqueries": [{"text": "a square [/i]", "type": "object", "negated": False}]}
    route(stub, responder(lambda _: verdict(0.9), decomposition=reply(rewrite)))
    _use_stub(monkeypatch, stub)
    result = runner.invoke(app, ["search", MARKUP, "--store", str(store), "-k", "2"])
    assert result.exit_code == 0, result.output
    flat = _flat(result.output)
    assert MARKUP in flat and "a [/bold] red square [/b]" in flat and "a square [/i] [object, 1.0]" in flat
    plain = runner.invoke(app, ["search", MARKUP, "--store", str(store), "--no-llm", "-k", "1"])
    assert plain.exit_code == 0 and MARKUP in _flat(plain.output)


@pytest.mark.parametrize("args", [["search", ""], ["search", "   "], ["demo", "--query", " "]])
def test_empty_query_is_one_clear_message(tmp_path: Path, args: list[str]) -> None:
    result = runner.invoke(app, [*args, "--store", str(tmp_path / "s")])
    assert result.exit_code == 2 and "the query is empty" in _flat(result.output)
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("command", [["search", "a dog"], ["chat"], ["demo"]])
@pytest.mark.parametrize("k", ["0", "-1"])
def test_k_below_one_is_refused(tmp_path: Path, command: list[str], k: str) -> None:
    result = runner.invoke(app, [*command, "--store", str(tmp_path / "s"), "-k", k])
    assert result.exit_code == 2, result.output
    assert "greater than or equal to 1" in _flat(result.output) and "Traceback" not in result.output
    assert not (tmp_path / "s").exists()


def test_file_names_with_markup_and_control_characters(tmp_path: Path) -> None:
    videos = tmp_path / "videos ["  # the paths inside read "videos [/b] ..."
    (videos / "b] clips").mkdir(parents=True)
    write_video(videos / "b] clips" / "a [bold] clip.mp4", Scene(frames=6))
    (videos / "b] clips" / "evil\x1b[2Jname.mp4").write_bytes(b"\x00" * 100)
    store = tmp_path / "store"
    result = runner.invoke(app, ["ingest", str(videos), "--store", str(store), "--frames", "4"])
    assert result.exit_code == 0, result.output
    flat = _flat(result.output)
    assert "a [bold] clip.mp4" in flat and "evil?[2Jname.mp4" in flat and "\x1b" not in result.output
    assert "clips/evil?[2Jname.mp4: corrupt" in flat and "videos [/b]" in flat
    listed = runner.invoke(app, ["twins", "list", "--store", str(store)])
    assert listed.exit_code == 0 and "[/b]" in listed.output.replace("\n", "").replace(" ", "")
    missing = runner.invoke(app, ["twins", "show", "[/x] nope", "--store", str(store)])
    assert missing.exit_code == 1 and "[/x] nope" in _flat(missing.output)


def test_chat_why_and_history_of_a_resumed_session_print_as_text(tmp_path: Path, clip: Path, stub: StubLLMServer,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    root = build_store(tmp_path / "store", clip)
    route(stub, responder(lambda _: verdict(0.9, [1], why="object 1 is [/bold] red [b]really[/b]"), others=0.1))
    _use_stub(monkeypatch, stub)
    first = runner.invoke(app, ["chat", "--store", str(root), "--session", "s.1"], input="a red [/i] square\n")
    assert first.exit_code == 0, first.output
    resumed = runner.invoke(app, ["chat", "--store", str(root), "--session", "s.1"], input=":why 1\n:history\n")
    assert resumed.exit_code == 0, resumed.output
    flat = _flat(resumed.output)
    assert "object 1 is [/bold] red [b]really[/b]" in flat
    assert "1. a red [/i] square -> a red [/i] square [shapes" in flat


@pytest.mark.parametrize("name", ["../../escape", "..", "a/b", ".hidden", "x" * 65, "bad\nname", "a..b", "", "[/b]"])
def test_session_names_must_be_plain(tmp_path: Path, name: str) -> None:
    result = runner.invoke(app, ["chat", "--store", str(tmp_path / "store"), "--session", name])
    assert result.exit_code == 2 and "plain session name" in _flat(result.output)
    assert not (tmp_path / "store").exists() and not (tmp_path / "escape").exists()
    with pytest.raises(ValueError, match="plain session name"):
        ChatSession(None, tmp_path, session=name)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 1"):
        ChatSession(None, tmp_path, session="ok", k=0)  # type: ignore[arg-type]


def test_chat_history_file_is_private(tmp_path: Path) -> None:
    made = history_file(tmp_path)
    assert made == tmp_path / ".chat_history" and stat.S_IMODE(made.stat().st_mode) == 0o600
    made.write_text("old query\n")
    os.chmod(made, 0o644)  # one made by an earlier twinseek
    assert stat.S_IMODE(history_file(tmp_path).stat().st_mode) == 0o600
    assert made.read_text() == "old query\n"


def test_ctrl_c_during_a_chat_search_cancels_the_turn_only(tmp_path: Path, clip: Path, stub: StubLLMServer,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    root = build_store(tmp_path / "store", clip)
    route(stub, responder(lambda _: verdict(0.9, [1], why="red"), others=0.1))
    _use_stub(monkeypatch, stub)
    real = Agent.search
    calls: list[str] = []

    def interrupted_once(self: Agent, query: str, **kwargs: Any) -> Any:
        calls.append(query)
        if len(calls) == 1:
            raise KeyboardInterrupt  # the user pressed Ctrl-C while this search ran
        return real(self, query, **kwargs)

    monkeypatch.setattr(Agent, "search", interrupted_once)
    result = runner.invoke(app, ["chat", "--store", str(root), "--session", "c"],
                           input="a slow query\na red square\n:history\n")
    assert result.exit_code == 0, result.output
    flat = _flat(result.output)
    assert "cancelled" in flat and "shapes" in flat
    assert "1. a red square -> a red square" in flat and "a slow query ->" not in flat
    assert calls == ["a slow query", "a red square"]
    again = runner.invoke(app, ["chat", "--store", str(root), "--session", "c"], input=":why 1\n")
    assert again.exit_code == 0 and "1 earlier turns" in _flat(again.output) and "red" in again.output


def test_store_check_command_reports_damage_and_exits_nonzero(tmp_path: Path, clip: Path) -> None:
    root = build_store(tmp_path / "store", clip)
    ok = runner.invoke(app, ["store", "check", "--store", str(root)])
    assert ok.exit_code == 0 and "ok" in ok.output
    report = json.loads(runner.invoke(app, ["store", "check", "--store", str(root), "--json"]).output)
    assert report["ok"] is True and report["findings"] == [] and report["videos"] == 3
    for png in sorted((root / "masks" / "dogs").rglob("*.png"))[:2]:
        png.unlink()
    damaged = runner.invoke(app, ["store", "check", "--store", str(root)])
    assert damaged.exit_code == 1
    flat = _flat(damaged.output)
    assert "missing_masks dogs: 2 of 3 mask files missing" in flat and "twinseek ingest /videos/dogs.mp4" in flat
    report = json.loads(runner.invoke(app, ["store", "check", "--store", str(root), "--json"]).output)
    assert report["ok"] is False and report["damaged_videos"] == ["dogs"]
    assert report["findings"][0]["kind"] == "missing_masks" and report["findings"][0]["count"] == 2
    absent = runner.invoke(app, ["store", "check", "--store", str(tmp_path / "none")])
    assert absent.exit_code == 1 and "no twin store" in absent.output


def _interruptible() -> None:
    """In the child: Ctrl-C back to its default. A pytest started in the background by a non-interactive shell
    ignores SIGINT, the child would inherit that and Python would never raise KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_real_sigint_during_a_hanging_llm_call_returns_to_the_prompt(tmp_path: Path, clip: Path,
                                                                    stub: StubLLMServer) -> None:
    """A real Ctrl-C (SIGINT to the process) while the search waits on a hanging LLM: the turn is cancelled at
    once, not after the timeout, and the next line is answered."""
    root = build_store(tmp_path / "store", clip)
    answered = responder(lambda _: verdict(0.9, [1], why="red"), others=0.1)
    hung: list[bool] = []

    def respond(schema: str, video: str, user: str) -> Any:
        if not hung:  # the first request (the first turn's decomposition) hangs
            hung.append(True)
            return ("sleep", 300)
        return answered(schema, video, user)

    route(stub, respond)
    env = {**os.environ, "TWINSEEK_LLM__BASE_URL": stub.base_url, "TWINSEEK_LLM__API_KEY": "t",
           "TWINSEEK_LLM__MODEL": "stub", "TWINSEEK_LLM__HTTP_RETRIES": "0", "TWINSEEK_LLM__TIMEOUT_S": "400"}
    proc = subprocess.Popen([sys.executable, "-m", "twinseek.cli", "chat", "--store", str(root), "--session", "i"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, preexec_fn=_interruptible)
    assert proc.stdin is not None
    proc.stdin.write("a slow query\n")
    proc.stdin.flush()
    deadline = time.monotonic() + 120
    while not stub.requests and time.monotonic() < deadline:  # the search is waiting on the LLM now
        time.sleep(0.1)
    assert stub.requests, "the chat never asked the LLM"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate("a red square\n:history\n", timeout=120)
    assert proc.returncode == 0, out
    flat = _flat(out)
    assert "cancelled" in flat and "1. a red square -> a red square" in flat and "a slow query ->" not in flat
    # not the hanging request's 300 s nor the 400 s timeout; the margin is for the second turn on a busy machine
    assert time.monotonic() - t0 < 120


# -- unusable options and stores (issue 28) ---------------------------------------------------------------------
def _one_line_usage_error(result: Any) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("command", [["ingest", "CLIP"], ["serve"], ["search", "a dog"], ["ask", "a dog"],
                                     ["twins", "list"], ["store", "check"], ["chat"], ["demo"]])
@pytest.mark.parametrize("where", ["a-file", "a-file/below", "/dev/null/x"])
def test_a_store_that_cannot_be_one_is_a_one_line_usage_error(tmp_path: Path, clip: Path, command: list[str],
                                                              where: str) -> None:
    (tmp_path / "a-file").write_text("not a store\n")
    store = where if where.startswith("/") else str(tmp_path / where)
    args = [str(clip) if a == "CLIP" else a for a in command]
    line = _one_line_usage_error(runner.invoke(app, [*args, "--store", store]))
    assert "--store" in line and "a-file" in line or "/dev/null" in line


@pytest.mark.parametrize("port", ["99999", "-1"])
def test_serve_refuses_a_port_out_of_range_in_one_line(tmp_path: Path, port: str) -> None:
    line = _one_line_usage_error(runner.invoke(app, ["serve", "--store", str(tmp_path / "s"), "--port", port]))
    assert "--port" in line and not (tmp_path / "s").exists()


def test_ingest_of_a_missing_file_creates_no_store(tmp_path: Path) -> None:
    line = _one_line_usage_error(runner.invoke(app, ["ingest", str(tmp_path / "missing.mp4"), "--store",
                                                     str(tmp_path / "store")]))
    assert "missing.mp4" in line and not (tmp_path / "store").exists()


def test_ingest_of_a_file_that_is_not_a_video_says_so(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(bytes(range(256)) * 16)
    result = runner.invoke(app, ["ingest", str(junk), "--store", str(tmp_path / "store")])
    flat = _flat(result.output)
    assert result.exit_code == 1 and "not a video, or a damaged one" in flat and "Errno" not in flat


def test_a_command_on_a_missing_store_fails_before_loading_models(tmp_path: Path) -> None:
    code = ("import sys\nfrom twinseek.cli import app\n"
            f"try:\n    app(['search', 'a dog', '--store', {str(tmp_path / 'none')!r}])\n"
            "except SystemExit as e:\n    code = e.code\n"
            "heavy = sorted(m for m in ('torch', 'langgraph', 'twinseek.agent.graph') if m in sys.modules)\n"
            "print('exit', code, 'heavy', heavy)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "exit 1 heavy []" in proc.stdout, proc.stdout + proc.stderr
    assert "no twin store" in _flat(proc.stderr)


def test_the_command_line_loads_no_array_or_model_library_to_start() -> None:
    """``twinseek --help`` (and every command before its options are checked) imports the CLI alone: the
    commands import what they need when they run, so a typo costs a third of a second, not seconds."""
    code = ("import sys\nfrom twinseek.cli import app\n"
            "print(sorted(m for m in ('numpy', 'PIL', 'torch', 'langgraph', 'faiss', 'sqlite_utils', 'av')"
            " if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def _commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    out = [(path, group)]
    for name, sub in getattr(group, "commands", {}).items():
        out += _commands(sub, (*path, name))
    return out


def test_every_help_text_keeps_its_bracketed_notes() -> None:
    """Help texts are plain text: "[env TWINSEEK_STORE]" or "[default: the current folder]" is not rich markup
    to be swallowed."""
    import re

    import typer

    checked = 0
    for path, command in _commands(typer.main.get_command(app)):
        notes = [note for text in [command.help or "", *(getattr(p, "help", None) or "" for p in command.params)]
                 for note in re.findall(r"\[[^\]\n]+\]", text)]
        if not notes:
            continue
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
        assert result.exit_code == 0, result.output
        shown = " ".join(result.output.split())
        for note in notes:
            assert " ".join(note.split()) in shown, (path, note)
            checked += 1
    assert checked >= 20  # the walk reached the commands


def test_native_library_noise_is_dropped_from_stderr_and_the_rest_kept() -> None:
    code = ("import os, sys, warnings\nfrom twinseek.quiet import quiet_third_party\nquiet_third_party()\n"
            "os.write(2, b'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n'\n"
            "         b'W0000 00:00:1796559476.348187    8872 inference_feedback_manager.cc:114] Feedback\\n'\n"
            "         b'E0000 00:00:1.1 1 x.cc:1] a real native error\\n')\n"
            "print('from python', file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stderr.splitlines()) == ["E0000 00:00:1.1 1 x.cc:1] a real native error", "from python"]
