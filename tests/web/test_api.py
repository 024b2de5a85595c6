"""The web app through FastAPI's TestClient, over a store of the bundled clips: search (JSON and streamed), pages,
media drawn from the store, ingest jobs, reports, and the security rules (tokens, hosts, path traversal,
uploads, escaping)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from twinseek.agent import Agent
from twinseek.data import sample_clips
from twinseek.errors import ConfigError
from twinseek.twins.pipeline import Ingestor
from twinseek.web import WebSettings, check_bind, create_app
from twinseek.web.ingest import safe_name

from support.llm_stub import StubLLMServer
from support.synthetic import Scene, write_video
from support.web_support import QUERY, scripted_agent, wait_for_job

BASE = "http://127.0.0.1"
NO_LLM = {"lr": "false", "qd": "false", "jit": "false"}


# -- fixtures ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def store_dir(sample_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's own copy of the bundled-clips store (its tests ingest into it)."""
    return Path(shutil.copytree(sample_store, tmp_path_factory.mktemp("web-api") / "store"))


@pytest.fixture(scope="module")
def stub() -> Iterator[StubLLMServer]:
    server = StubLLMServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def agent(store_dir: Path, stub: StubLLMServer) -> Iterator[Agent]:
    with scripted_agent(store_dir, stub) as a:
        yield a


def settings(store_dir: Path, **overrides: Any) -> WebSettings:
    return WebSettings(store=store_dir, runs=store_dir.parent / "runs", **overrides)


@pytest.fixture(scope="module")
def client(store_dir: Path, agent: Agent) -> Iterator[TestClient]:
    # the bundled clips' folder is an ingest root too: their files are served only from below one
    app = create_app(settings(store_dir, ingest_roots=[store_dir.parent, sample_clips()[0].parent]), agent=agent)
    with TestClient(app, base_url=BASE) as c:
        yield c


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("clips") / "moving shapes.mp4", Scene())


def events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(event, data) pairs of a server-sent event stream."""
    out = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        if "event" in fields:
            out.append((fields["event"], json.loads(fields["data"])))
    return out


def comparable(result: dict[str, Any]) -> dict[str, Any]:
    """A search result without what differs from run to run (timings)."""
    return {k: v for k, v in result.items() if k != "timings"}


# -- search -----------------------------------------------------------------------------------------------------
def test_api_search_returns_what_agent_search_returns(client: TestClient, agent: Agent) -> None:
    agent.search(QUERY, k=3)  # the decomposition is now in the store's cache for both searches below
    response = client.get("/api/search", params={"q": QUERY, "k": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    direct = agent.search(QUERY, k=3).model_dump(mode="json")
    assert comparable(body) == comparable(direct)
    hit = body["hits"][0]
    assert hit["video_id"] == "blackswan" and hit["relevance"] > 0.5 and "black swan" in hit["reasoning"]
    # the objects come from the evidence (the track the object sub-query matched; with none, the most salient
    # track), whatever id the LLM named
    matched = [e for e in hit["evidence"] if not e["negated"] and e["track_ids"] and e["similarity"] > 0]
    twin = agent.resources.store.get_twin("blackswan")
    salient = max(twin.tracks, key=lambda t: t.mean_area * t.frame_count).track_id
    expected = max(matched, key=lambda e: e["similarity"] * e["weight"])["track_ids"][:1] if matched else [salient]
    assert [o["track_id"] for o in hit["objects"]] == expected and hit["objects"][0]["masks"]
    assert body["path"][:2] == ["decompose", "retrieve"] and body["models"]["reason"] == "paper:stub"
    # the switches reach the agent
    off = client.get("/api/search", params={"q": QUERY, "k": 2, **NO_LLM}).json()
    assert off["options"]["lr"] is False and "reason" not in off["path"] and len(off["hits"]) == 2


@pytest.mark.parametrize("params", [{"q": ""}, {"q": QUERY, "k": 0}, {"q": QUERY, "tau": 2}, {"q": QUERY, "tool": "x"}])
def test_api_search_refuses_bad_parameters(client: TestClient, params: dict[str, Any]) -> None:
    assert client.get("/api/search", params=params).status_code == 422


def test_search_stream_sends_each_node_then_the_result(client: TestClient) -> None:
    with client.stream("GET", "/api/search/stream", params={"q": QUERY, "k": 3}) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        stream = events(response.read().decode())
    kinds = [kind for kind, _ in stream]
    assert kinds[0] == "start" and kinds[-1] == "result" and "failure" not in kinds
    nodes = [data["node"] for kind, data in stream if kind == "node"]
    result = stream[-1][1]
    assert nodes == result["result"]["path"] and nodes[:4] == ["decompose", "retrieve", "rerank", "reason"]
    assert any(kind == "progress" and data["node"] == "reason" for kind, data in stream)
    html = result["html"]
    top = result["result"]["hits"][0]
    tracks = ",".join(str(o["track_id"]) for o in top["objects"])
    assert 'data-video-id="blackswan"' in html and f"/api/videos/blackswan/overlay.gif?tracks={tracks}" in html
    # the LLM's markup arrives escaped, never as a tag
    assert "<script>" not in html and "&lt;script&gt;alert(" in html


def test_search_stream_reports_a_failure_as_an_event(client: TestClient, agent: Agent,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Iterator[Any]:
        raise RuntimeError("the index is gone")
        yield  # pragma: no cover

    monkeypatch.setattr(agent, "stream", broken)
    with client.stream("GET", "/api/search/stream", params={"q": QUERY}) as response:
        stream = events(response.read().decode())
    assert stream[-1] == ("failure", {"message": "search failed: RuntimeError: the index is gone"})


def test_pages_escape_the_query(client: TestClient) -> None:
    page = client.get("/", params={"q": '<script>alert("q")</script>', "k": 3})
    assert page.status_code == 200
    assert "<script>alert" not in page.text and "&lt;script&gt;alert(" in page.text
    assert 'data-run="true"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


# -- pages ------------------------------------------------------------------------------------------------------
def test_pages_render(client: TestClient) -> None:
    for path, expected in [("/", 'id="search-form"'), ("/videos", 'data-video-id="horsejump-high"'),
                           ("/ingest", 'id="upload-form"'), ("/reports", "Eval reports"),
                           ("/docs", "swagger"), ("/videos/blackswan", 'id="tracks"')]:
        page = client.get(path)
        assert page.status_code == 200 and expected in page.text, path
    spec = client.get("/openapi.json").json()
    assert {"/api/search", "/api/search/stream", "/api/ingest", "/api/videos/{video_id}/overlay.gif"} <= set(spec["paths"])


def test_video_page_is_the_twin_inspector(client: TestClient, agent: Agent) -> None:
    twin = agent.resources.store.get_twin("blackswan")
    page = client.get("/videos/blackswan").text
    for track in twin.tracks:
        assert f'<tr data-track="{track.track_id}">' in page and track.category in page
        for label, _ in track.category_candidates:
            assert label in page
    assert page.count('class="tl-row relation') == len({(r.subject_track, r.predicate, r.object_track)
                                                         for r in twin.relations})
    assert all(p.model in page for p in twin.video.specialists)
    assert 'id="refinements-none"' in page  # no search has refined it
    assert '<video id="video" src="/api/videos/blackswan/file"' in page
    data = json.loads(page.split('id="player-data">')[1].split("</script>")[0])
    assert data["frames"] == sorted({i.frame_index for i in twin.instances}) and data["fps"] == twin.video.fps
    assert client.get("/videos/nope", headers={"accept": "text/html"}).status_code == 404


def test_api_twin_and_videos(client: TestClient) -> None:
    videos = client.get("/api/videos").json()
    assert [v["video"]["video_id"] for v in videos] == ["blackswan", "car-roundabout", "horsejump-high"]
    view = client.get("/api/videos/blackswan").json()
    assert view["twin"]["video"]["video_id"] == "blackswan" and view["refinements"] == []
    assert client.get("/api/videos/nope").status_code == 404
    stats = client.get("/api/stats").json()
    assert stats["videos"] >= 3 and stats["tracks"] >= 3
    assert client.get("/api/health").json()["status"] == "ok"


# -- media ------------------------------------------------------------------------------------------------------
def test_overlay_gif_and_per_frame_mask_layer(client: TestClient, agent: Agent) -> None:
    twin = agent.resources.store.get_twin("blackswan")
    gif = client.get("/api/videos/blackswan/overlay.gif", params={"tracks": "1"})
    assert gif.status_code == 200 and gif.headers["content-type"] == "image/gif"
    with Image.open(io.BytesIO(gif.content)) as img, Image.open(agent.resources.store.mask_file(twin.instances[0])) as m:
        assert img.n_frames == 8 and img.size == m.size
    frame = min(i.frame_index for i in twin.instances if i.track_id == 1)
    layer = client.get(f"/api/videos/blackswan/frames/{frame}/masks.png", params={"tracks": "1"})
    assert layer.status_code == 200
    with Image.open(io.BytesIO(layer.content)) as img:
        rgba = np.asarray(img.convert("RGBA"))
    mask = agent.resources.store.load_mask(next(i for i in twin.instances if i.track_id == 1 and i.frame_index == frame))
    assert (rgba[..., 3] > 0).sum() == mask.sum() and (rgba[~mask][..., 3] == 0).all()
    assert tuple(rgba[mask][0][:3]) == (230, 25, 75)  # the first object's colour, as in the overlays
    assert client.get("/api/videos/blackswan/frames/999999/masks.png").status_code == 404
    assert client.get("/api/videos/blackswan/overlay.gif", params={"tracks": "77"}).status_code == 404
    assert client.get("/api/videos/blackswan/overlay.gif", params={"tracks": "1;rm"}).status_code == 422


def test_video_file_is_served_with_byte_ranges(client: TestClient, agent: Agent) -> None:
    path = Path(agent.resources.store.get_video("blackswan").path)
    whole = client.get("/api/videos/blackswan/file")
    assert whole.status_code == 200 and whole.headers["content-type"] == "video/mp4"
    assert whole.content == path.read_bytes()
    part = client.get("/api/videos/blackswan/file", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == path.read_bytes()[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{path.stat().st_size}"


# -- path traversal ---------------------------------------------------------------------------------------------
def test_file_routes_refuse_paths_outside_their_folder(client: TestClient, store_dir: Path, agent: Agent,
                                                       tmp_path: Path) -> None:
    twin = agent.resources.store.get_twin("blackswan")
    good = twin.instances[0].mask_path
    assert client.get(f"/api/files/{good}").status_code == 200
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG not yours")
    (store_dir / "masks" / "escape.png").symlink_to(secret)
    (store_dir / "masks" / "escape-dir").symlink_to(tmp_path, target_is_directory=True)
    runs = store_dir.parent / "runs" / "eval-x"
    runs.mkdir(parents=True, exist_ok=True)
    (runs / "report.md").write_text("# r\n")
    (runs / "leak.png").symlink_to(secret)
    attempts = [
        "/api/files/../twins.db", "/api/files/..%2ftwins.db", "/api/files/%2e%2e/twins.db",
        "/api/files/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/api/files//etc/passwd", "/api/files/%2fetc%2fpasswd",
        "/api/files/masks/..%2ftwins.db", "/api/files/twins.db", "/api/files/masks/escape.png",
        "/api/files/masks/escape-dir/secret.png", f"/api/files/{store_dir}/twins.db",
        "/api/videos/..%2f..%2fetc%2fpasswd/file", "/api/videos/%2e%2e/file",
        "/reports/eval-x/..%2f..%2fstore%2ftwins.db", "/reports/eval-x/%2e%2e/eval-x/report.md/..",
        "/reports/eval-x/leak.png", "/reports/..%2fstore/twins.db", "/reports/%2e%2e/", f"/reports/eval-x/{secret}",
    ]
    for url in attempts:
        response = client.get(url)
        assert response.status_code == 404, (url, response.status_code)
        assert b"not yours" not in response.content and b"SQLite" not in response.content
    assert client.get("/reports/eval-x/report.md").status_code == 200


# -- ingest -----------------------------------------------------------------------------------------------------
def test_upload_is_ingested_in_the_background_and_then_found(client: TestClient, clip: Path, store_dir: Path) -> None:
    before = {h["video_id"] for h in client.get("/api/search", params={"q": QUERY, "k": 10, **NO_LLM}).json()["hits"]}
    with open(clip, "rb") as handle:
        response = client.post("/api/ingest", files=[("files", ("moving shapes.mp4", handle, "video/mp4"))])
    assert response.status_code == 202, response.text
    job = wait_for_job(lambda j: client.get(f"/api/ingest/jobs/{j}").json(), response.json()["id"])
    [f] = job["files"]
    assert f["status"] == "ingested" and f["name"] == "moving shapes.mp4" and f["video_id"] == "moving-shapes"
    assert f["frames"] > 0 and f["tracks"] > 0 and not job["error"]
    saved = store_dir / "uploads" / job["id"] / "moving-shapes.mp4"
    assert saved.read_bytes() == clip.read_bytes()
    after = {h["video_id"] for h in client.get("/api/search", params={"q": QUERY, "k": 10, **NO_LLM}).json()["hits"]}
    assert "moving-shapes" not in before and after == before | {"moving-shapes"}
    assert client.get("/api/videos/moving-shapes/file").content == clip.read_bytes()
    # the same content again is skipped and its copy deleted
    with open(clip, "rb") as handle:
        again = client.post("/api/ingest", files=[("files", ("again.mp4", handle, "video/mp4"))]).json()
    done = wait_for_job(lambda j: client.get(f"/api/ingest/jobs/{j}").json(), again["id"])
    assert done["files"][0]["status"] == "skipped" and not (store_dir / "uploads" / again["id"]).exists()
    page = client.get("/ingest/jobs").text
    assert "moving shapes.mp4" in page and 'data-status="skipped"' in page


def test_a_broken_video_fails_alone_with_its_reason(client: TestClient, clip: Path, store_dir: Path) -> None:
    broken = b"\x00\x00\x00\x18ftypisom" + b"\x00" * 2000  # an mp4 signature, no video
    files = [("files", ("broken <b>.mp4", io.BytesIO(broken), "video/mp4")),
             ("files", ("shapes-b.mp4", io.BytesIO(clip.read_bytes()), "video/mp4"))]
    response = client.post("/api/ingest", files=files)
    assert response.status_code == 202, response.text
    job = wait_for_job(lambda j: client.get(f"/api/ingest/jobs/{j}").json(), response.json()["id"])
    first, second = job["files"]
    saved_as = safe_name("broken <b>.mp4")
    assert first["status"] == "failed" and first["name"] == "broken <b>.mp4"
    assert first["error"].startswith("broken <b>.mp4: ") and str(store_dir) not in first["error"]
    assert second["status"] in ("ingested", "skipped")  # skipped when an earlier test ingested the clip
    assert not (store_dir / "uploads" / job["id"] / saved_as).exists()
    page = client.get("/ingest/jobs").text
    assert "broken &lt;b&gt;.mp4" in page and "broken <b>" not in page


@pytest.mark.parametrize(("name", "content"), [("notes.txt", b"hello"), ("fake.mp4", b"this is not a video at all"),
                                               ("page.html", b"<html><script></script></html>")])
def test_non_video_uploads_are_refused(client: TestClient, store_dir: Path, name: str, content: bytes) -> None:
    before = sorted((store_dir / "uploads").rglob("*")) if (store_dir / "uploads").exists() else []
    response = client.post("/api/ingest", files=[("files", (name, io.BytesIO(content), "video/mp4"))])
    assert response.status_code == 415 and name.split(".")[0] in response.json()["detail"]
    after = sorted((store_dir / "uploads").rglob("*")) if (store_dir / "uploads").exists() else []
    assert after == before


def test_oversized_uploads_are_refused_with_413(store_dir: Path, agent: Agent, clip: Path) -> None:
    app = create_app(settings(store_dir, max_upload_mb=0.05), agent=agent)
    big = clip.read_bytes() + b"\x00" * 60_000
    with TestClient(app, base_url=BASE) as c:
        jobs = c.get("/api/ingest/jobs").json()  # earlier tests' jobs: the queue is kept in the store
        response = c.post("/api/ingest", files=[("files", ("big.mp4", io.BytesIO(big), "video/mp4"))])
        assert response.status_code == 413 and "0.05 MB" in response.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams
            boundary = b"--x\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.mp4\"\r\n\r\n"
            yield boundary
            for k in range(0, len(big), 8192):
                yield big[k:k + 8192]
            yield b"\r\n--x--\r\n"

        streamed = c.post("/api/ingest", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"})
        assert streamed.status_code == 413
        assert c.get("/api/ingest/jobs").json() == jobs  # no job for either


def test_folder_ingest_stays_below_the_allowed_roots(client: TestClient, tmp_path: Path) -> None:
    outside = client.post("/api/ingest/folder", json={"path": str(tmp_path)})
    assert outside.status_code == 403 and "--ingest-root" in outside.json()["detail"]
    escape = client.post("/api/ingest/folder", json={"path": "store/../../.."})
    assert escape.status_code == 403
    assert client.post("/api/ingest/folder", json={"path": "no-such-folder"}).status_code == 404
    assert client.post("/api/ingest/folder", json={"path": "store/index"}).status_code == 400  # no videos


def test_folder_ingest_runs_as_a_job(client: TestClient, store_dir: Path, clip: Path) -> None:
    folder = store_dir.parent / "incoming"
    folder.mkdir()
    shutil.copy(clip, folder / "again.mp4")
    (folder / "readme.txt").write_text("not a video")
    response = client.post("/api/ingest/folder", json={"path": str(folder)})
    assert response.status_code == 202
    job = wait_for_job(lambda j: client.get(f"/api/ingest/jobs/{j}").json(), response.json()["id"])
    assert [(f["name"], f["status"]) for f in job["files"]] == [("again.mp4", "skipped")]
    assert (folder / "again.mp4").exists()  # the user's files stay


class GatedIngestor(Ingestor):
    """The real ingestor, held at the start of each file until the test opens the gate."""

    gate = threading.Event()
    started = threading.Event()

    def ingest(self, path: str | os.PathLike[str], force: bool = False) -> Any:
        self.started.set()
        assert self.gate.wait(60)
        return super().ingest(path, force=force)


def test_searches_run_while_an_ingest_job_is_running(store_dir: Path, agent: Agent, clip: Path,
                                                     tmp_path: Path) -> None:
    from twinseek.twins.store import TwinStore

    new = tmp_path / "gated.mp4"
    write_video(new, Scene(seed=3))
    app = create_app(settings(store_dir, ingest_roots=[tmp_path]), agent=agent,
                     ingestor_factory=lambda: GatedIngestor(TwinStore(store_dir), agent.resources.settings))
    with TestClient(app, base_url=BASE) as c:
        job = c.post("/api/ingest/folder", json={"path": str(new)}).json()
        assert GatedIngestor.started.wait(30)
        result = c.get("/api/search", params={"q": QUERY, "k": 10, **NO_LLM})
        assert result.status_code == 200 and "gated" not in {h["video_id"] for h in result.json()["hits"]}
        assert c.get(f"/api/ingest/jobs/{job['id']}").json()["files"][0]["status"] == "running"
        assert c.get("/api/health").json()["ingesting"] is True
        GatedIngestor.gate.set()
        done = wait_for_job(lambda j: c.get(f"/api/ingest/jobs/{j}").json(), job["id"])
        assert done["files"][0]["status"] == "ingested"
        hits = c.get("/api/search", params={"q": QUERY, "k": 10, **NO_LLM}).json()["hits"]
        assert "gated" in {h["video_id"] for h in hits}


# -- authentication and origins ---------------------------------------------------------------------------------
def test_a_token_guards_the_api_the_pages_and_the_docs(store_dir: Path, agent: Agent) -> None:
    app = create_app(settings(store_dir, token="s3cret"), agent=agent)
    with TestClient(app, base_url=BASE) as c:
        for path in ("/api/health", "/api/videos", "/openapi.json", f"/api/files/{'masks'}"):
            denied = c.get(path)
            assert denied.status_code == 401 and denied.headers["www-authenticate"] == "Bearer", path
        assert c.get("/api/health", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/health", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/api/health", params={"token": "s3cret"}).status_code == 200
        login = c.get("/videos", headers={"accept": "text/html"})
        assert login.status_code == 401 and 'name="token"' in login.text and "blackswan" not in login.text
        assert c.get("/docs").status_code == 401
        form = c.get("/", params={"q": "a swan"}, headers={"accept": "text/html"}).text
        assert '<input type="hidden" name="q" value="a swan">' in form  # the search survives the login
        assert c.get("/static/app.css").status_code == 200  # the stylesheet of the login page
        opened = c.get("/videos", params={"token": "s3cret", "page": 1}, follow_redirects=False)
        assert opened.status_code == 303 and opened.headers["location"] == "/videos?page=1"
        cookie = opened.headers["set-cookie"]
        assert "twinseek_token=s3cret" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
        page = c.get("/videos", headers={"cookie": "twinseek_token=s3cret"})
        assert page.status_code == 200 and "blackswan" in page.text


def test_cross_site_posts_and_foreign_hosts_are_refused(client: TestClient, clip: Path) -> None:
    with open(clip, "rb") as handle:
        upload = [("files", ("x.mp4", handle, "video/mp4"))]
        forged = client.post("/api/ingest", files=upload, headers={"Origin": "http://evil.example"})
    assert forged.status_code == 403
    assert client.post("/api/ingest/folder", json={"path": "."}, headers={"Sec-Fetch-Site": "cross-site"}
                       ).status_code == 403
    assert client.post("/api/ingest/folder", json={"path": "."}, headers={"Origin": "null"}).status_code == 403
    assert client.get("/api/health", headers={"Host": "evil.example"}).status_code == 400  # DNS rebinding
    assert "access-control-allow-origin" not in client.get("/api/health", headers={"Origin": "http://a.b"}).headers


def test_binding_beyond_loopback_needs_a_token_or_insecure(tmp_path: Path) -> None:
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        check_bind(WebSettings(store=tmp_path, host=host))
    with pytest.raises(ConfigError, match="--token"):
        check_bind(WebSettings(store=tmp_path, host="0.0.0.0"))
    check_bind(WebSettings(store=tmp_path, host="0.0.0.0", token="t"))
    check_bind(WebSettings(store=tmp_path, host="192.168.1.5", insecure=True))
    assert WebSettings(store=tmp_path, host="0.0.0.0", token="t").hosts() == ["*"]
    assert "localhost" in WebSettings(store=tmp_path).hosts()


def test_serve_command_refuses_a_public_bind_without_a_token(tmp_path: Path) -> None:
    from twinseek.cli import app

    result = CliRunner().invoke(app, ["serve", "--store", str(tmp_path / "s"), "--host", "0.0.0.0"])
    assert result.exit_code == 1 and "refusing to serve on 0.0.0.0" in result.output
    assert not (tmp_path / "s").exists()  # refused before anything was created


# -- eval reports -----------------------------------------------------------------------------------------------
def test_eval_runs_are_listed_and_viewable(client: TestClient, store_dir: Path) -> None:
    from twinseek.evals.report import write_report
    from twinseek.evals.results import write_results
    from twinseek.evals.schemas import RunConfig, RunResult, SystemResult

    folder = store_dir.parent / "runs" / "eval-demo"
    folder.mkdir(parents=True)
    config = RunConfig(bench="/data/demo-bench", gallery=3, queries=4, kinds=None, limit=None, seed=0, tau=0.5, k=10,
                       profile="embedded", store=None, llm_decomposition=True, systems=["naive"])
    result = RunResult(config=config, systems={"naive": SystemResult(
        name="naive", label="naive <i>", kind="naive", metrics={"implicit_r@1": 0.25, "implicit_r@5": 1.0})})
    write_results(result, folder / "results.json")
    write_report(result, folder, html_report=True)
    listed = client.get("/api/reports").json()
    demo = next(r for r in listed if r["name"] == "eval-demo")
    assert demo["bench"] == "demo-bench" and demo["queries"] == 4 and demo["summary"][1][0][:2] == ["naive <i>", "0.250"]
    assert client.get("/api/reports/eval-demo").json()["config"]["queries"] == 4
    listing = client.get("/reports").text
    assert 'href="/reports/eval-demo/"' in listing and "naive &lt;i&gt;" in listing
    assert client.get("/reports/eval-demo", follow_redirects=False).headers["location"] == "/reports/eval-demo/"
    page = client.get("/reports/eval-demo/")
    assert page.status_code == 200 and "Eval report: demo-bench" in page.text and "<i>" not in page.text
    html = client.get("/reports/eval-demo/report.html")
    assert html.status_code == 200 and "script-src 'none'" in html.headers["content-security-policy"]
    assert client.get("/api/reports/nope").status_code == 404 and client.get("/reports/nope/").status_code == 404


def test_a_stream_left_by_its_client_stops_the_search() -> None:
    """The bridge from the agent's thread: closing the event stream (the client went away) ends the search at
    its next step instead of running it to the end."""
    import asyncio
    import time

    from twinseek.agent import ProgressEvent
    from twinseek.web.search import SearchParams, SearchService

    class SlowAgent:
        closed = threading.Event()
        steps: list[int] = []

        def stream(self, query: str, k: int = 10, **options: Any) -> Iterator[ProgressEvent]:
            try:
                for i in range(100):
                    self.steps.append(i)
                    time.sleep(0.05)
                    yield ProgressEvent(kind="node", node=f"step{i}")
            finally:
                self.closed.set()

    service = SearchService(SlowAgent())  # type: ignore[arg-type]

    async def first_two() -> list[Any]:
        stream = service.stream(SearchParams(q="anything"))
        got = [await stream.__anext__(), await stream.__anext__()]
        await stream.aclose()  # type: ignore[attr-defined]
        return got

    got = asyncio.run(first_two())
    assert [e.node for e in got] == ["step0", "step1"]
    assert SlowAgent.closed.wait(5) and len(SlowAgent.steps) < 10
    service.close()


def test_the_inspector_lists_refinements_when_the_store_records_them(client: TestClient, agent: Agent) -> None:
    """The refinements overlay of a video: the video page and the API list its rows with their provenance, the
    expected columns first, untrusted text escaped."""
    from twinseek.twins.refinements import Refinement

    store = agent.resources.store
    [row] = store.add_refinements([Refinement(
        video_id="blackswan", track_id=1, frames=[4, 7], action="describe_object", model="embedded:describer",
        field="attributes", value="<b>black</b>", provenance={"query_sha256": "q1", "round": 1})])
    try:
        listed = client.get("/api/videos/blackswan").json()["refinements"]
        assert list(listed[0])[:8] == ["track_id", "field", "value", "confidence", "action", "model", "frames",
                                       "provenance"]
        assert listed[0]["value"] == "<b>black</b>" and listed[0]["provenance"]["round"] == 1
        page = client.get("/videos/blackswan").text
        assert 'id="refinements"' in page and "describe_object" in page and "&lt;b&gt;black&lt;/b&gt;" in page
        assert 'id="refinements-none"' in client.get("/videos/car-roundabout").text
    finally:
        store.clear_refinements("blackswan")


def test_the_index_lock_lets_searches_run_together_and_a_sync_alone() -> None:
    from twinseek.web.search import ReadWriteLock

    lock = ReadWriteLock()
    order: list[str] = []
    first_in, release_first, sync_done = threading.Event(), threading.Event(), threading.Event()

    def long_search() -> None:
        with lock.read():
            first_in.set()
            assert release_first.wait(10)
            order.append("long search done")

    def sync() -> None:
        with lock.write():
            order.append("sync")
        sync_done.set()

    threads = [threading.Thread(target=long_search), threading.Thread(target=sync)]
    threads[0].start()
    assert first_in.wait(10)
    threads[1].start()
    with lock.read():  # a search that starts while the sync waits is not held back
        order.append("second search")
    release_first.set()
    for t in threads:
        t.join(10)
    assert sync_done.is_set() and order == ["second search", "long search done", "sync"]


# -- hardening (issue 28) ---------------------------------------------------------------------------------------
CROSS_SITE = [{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}, {"Origin": "http://evil.example"},
              {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
              {"Origin": "http://127.0.0.1:3000"}]


@pytest.mark.parametrize("path", ["/api/files/masks/%00.png", "/api/files/%00", "/api/files/masks/a%00b/c.png",
                                  "/reports/eval-nul/%00", "/reports/eval-nul/plots/%00.png", "/api/videos/%00/file",
                                  "/videos/%00", "/reports/%00/", "/api/reports/%00"])
def test_a_nul_byte_in_a_path_is_a_404(client: TestClient, store_dir: Path, path: str) -> None:
    run = store_dir.parent / "runs" / "eval-nul"
    run.mkdir(parents=True, exist_ok=True)
    (run / "report.md").write_text("# nul\n")
    assert client.get(path).status_code == 404


def test_a_nul_byte_in_a_folder_to_ingest_is_refused(client: TestClient) -> None:
    for path in ("vids\u0000/..", "\u0000", "store\u0000"):
        response = client.post("/api/ingest/folder", json={"path": path})
        assert response.status_code == 422, response.text
    assert client.post("/api/ingest/folder", json={"path": "~no-such-user-here/x"}).status_code in (403, 404)


@pytest.mark.parametrize("headers", CROSS_SITE)
def test_cross_site_requests_are_refused_on_every_route(client: TestClient, agent: Agent,
                                                        headers: dict[str, str]) -> None:
    """One policy for the app: another site's page can neither run a search (which asks the LLM and writes its
    decomposition to the store) nor read anything, streamed or not."""
    decompositions = agent.resources.store.db["decompositions"].count
    query = {"q": "a cross-site swan", "k": 2}
    for path in ("/api/search", "/api/search/stream", "/api/videos", "/api/videos/blackswan/overlay.gif",
                 "/api/videos/blackswan/file", "/api/stats", "/openapi.json", "/videos/blackswan"):
        response = client.get(path, params=query if "search" in path else None, headers=headers)
        assert response.status_code == 403, (path, response.status_code)
    assert agent.resources.store.db["decompositions"].count == decompositions  # nothing ran


def test_same_origin_requests_and_links_to_pages_pass(client: TestClient) -> None:
    own = {"Origin": BASE, "Sec-Fetch-Site": "same-origin"}
    assert client.get("/api/search", params={"q": QUERY, "k": 2, **NO_LLM}, headers=own).status_code == 200
    assert client.get("/api/health", headers={"Sec-Fetch-Site": "none"}).status_code == 200
    # following a link from elsewhere opens a page (a shared /?q=... link); the page's own requests are same-origin
    link = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document",
            "Accept": "text/html"}
    assert client.get("/", params={"q": QUERY}, headers=link).status_code == 200
    framed = {**link, "Sec-Fetch-Dest": "iframe"}
    assert client.get("/", headers=framed).status_code == 403
    assert client.get("/api/health", headers={**link, "Accept": "application/json"}).status_code == 403


def test_folder_ingest_refuses_a_symlink_out_of_the_roots(client: TestClient, store_dir: Path, clip: Path) -> None:
    vids = store_dir.parent / "linked-vids"
    vids.mkdir()
    (vids / "x.mp4").symlink_to(clip)  # the clip lies outside every ingest root
    jobs = len(client.get("/api/ingest/jobs").json())
    response = client.post("/api/ingest/folder", json={"path": "linked-vids"})
    assert response.status_code == 403 and "x.mp4" in response.json()["detail"]
    assert client.post("/api/ingest/folder", json={"path": "linked-vids/x.mp4"}).status_code == 403
    assert len(client.get("/api/ingest/jobs").json()) == jobs  # nothing was queued


def test_a_video_file_is_served_only_from_below_a_root(store_dir: Path, agent: Agent, tmp_path: Path) -> None:
    app = create_app(settings(store_dir, ingest_roots=[tmp_path]), agent=agent)  # the clips' folder is no root
    with TestClient(app, base_url=BASE) as c:
        refused = c.get("/api/videos/blackswan/file")
        assert refused.status_code == 404 and "not served" in refused.json()["detail"]
        assert c.get("/api/videos/blackswan").status_code == 200  # the twin itself is there
        page = c.get("/videos/blackswan").text  # the page says why it shows the key frames instead of the video
        assert 'id="video"' not in page and 'id="fallback"' in page
        assert 'id="not-played"' in page and "not below an ingest root (serve --ingest-root)" in page
    served = create_app(settings(store_dir, ingest_roots=[sample_clips()[0].parent]), agent=agent)
    with TestClient(served, base_url=BASE) as c:
        page = c.get("/videos/blackswan").text
        assert 'id="video"' in page and 'id="not-played"' not in page
        assert c.get("/api/videos/blackswan/file").status_code == 200


def test_no_server_paths_in_responses_when_a_token_is_set(store_dir: Path, agent: Agent) -> None:
    app = create_app(settings(store_dir, token="s3cret", ingest_roots=[store_dir.parent]), agent=agent)
    clips = str(sample_clips()[0].parent)
    with TestClient(app, base_url=BASE, headers={"Authorization": "Bearer s3cret"}) as c:
        bodies = [c.get("/api/stats"), c.get("/api/videos/blackswan"), c.get("/api/videos"),
                  c.get("/api/search", params={"q": QUERY, "k": 2, **NO_LLM}),
                  c.post("/api/ingest/folder", json={"path": "/etc"}), c.get("/api/ingest/jobs")]
        assert [b.status_code for b in bodies] == [200, 200, 200, 200, 403, 200]
        for body in bodies:
            assert str(store_dir) not in body.text and clips not in body.text and str(store_dir.parent) not in body.text
        assert bodies[0].json()["store"] == store_dir.name
        assert bodies[1].json()["twin"]["video"]["path"] == "blackswan.mp4"
    # without a token (a loopback server for this machine's user) the paths stay
    with TestClient(create_app(settings(store_dir), agent=agent), base_url=BASE) as c:
        assert c.get("/api/stats").json()["store"] == str(store_dir)


def test_a_dropped_stream_cancels_its_search_and_closes_the_llm_request(store_dir: Path) -> None:
    """The client of a stream goes away while the LLM is decomposing its query: the request to the LLM is closed
    at once (the server stops working for nobody) and the search ends within moments, not at the LLM's
    timeout."""
    import asyncio
    import time

    from twinseek.agent import Resources
    from twinseek.config import load_settings
    from twinseek.llm.client import LLMClient
    from twinseek.web.search import SearchParams, SearchService

    from support.llm_stub import HangingServer

    hanging = HangingServer()
    llm = LLMClient(load_settings().llm.model_copy(update={"base_url": hanging.base_url, "api_key": "t",
                                                             "model": "stub", "timeout_s": 60.0}),
                    tier="paper", base_url=hanging.base_url).start()
    agent = Agent(Resources.open(store_dir, load_settings(store=store_dir), llm=llm))
    service = SearchService(agent)

    async def drop_while_decomposing() -> float:
        stream = service.stream(SearchParams(q="a swan that nobody waits for", lr=True, qd=True))
        first = asyncio.ensure_future(stream.__anext__())
        while hanging.requests == 0:  # the decomposition is being asked
            await asyncio.sleep(0.05)
        first.cancel()  # what Starlette does when the client disconnects
        with contextlib.suppress(asyncio.CancelledError):
            await first
        return time.monotonic()

    try:
        dropped_at = asyncio.run(drop_while_decomposing())
        service.executor.shutdown(wait=True)  # the search's worker thread has finished
        assert time.monotonic() - dropped_at < 10.0
        assert hanging.closed and hanging.closed[0] - dropped_at < 2.0
        assert hanging.requests == 1  # nothing else was asked once it was cancelled
    finally:
        agent.close()
        hanging.close()


def test_a_one_megabyte_url_is_answered_414_not_reset(store_dir: Path, agent: Agent) -> None:
    import socket
    from urllib.parse import urlsplit

    from twinseek.web import background_server

    with background_server(create_app(settings(store_dir, warm_llm=False), agent=agent)) as base:
        port = urlsplit(base).port
        request = b"GET /api/search?q=" + b"x" * (1 << 20) + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(request)  # the whole megabyte goes out: no reset half-way
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 414 "), answer[:200]
        # a long URL that fits the buffer still reaches the app (a 422 from the query's length limit)
        assert httpx_get(base + "/api/search?q=" + "x" * 5000).status_code == 422


def httpx_get(url: str) -> Any:
    import httpx

    return httpx.get(url, timeout=30)


def test_the_token_is_in_no_start_up_line_and_no_access_log(store_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    import uvicorn

    from twinseek.web.app import log_config, serve

    ran: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: ran.update(kwargs))
    shown: list[str] = []
    serve(settings(store_dir, token="s3cret-token"), on_ready=shown.append)
    assert shown == ["http://127.0.0.1:8000/"] and ran["log_config"] == log_config()
    # the access log's filter, on a record as uvicorn makes it
    config = ran["log_config"]
    redact = config["filters"]["redact_tokens"]["()"]()
    assert config["handlers"]["access"]["filters"] == ["redact_tokens"]
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "GET", "/videos?token=s3cret-token&page=2", "1.1", 303), None)
    assert redact.filter(record) and "s3cret" not in record.getMessage()
    assert "/videos?token=***&page=2" in record.getMessage()
