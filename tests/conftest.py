"""Shared test set-up: offline, one torch thread (two threads on a busy 2-core machine are far slower)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

try:
    import torch  # noqa: E402

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is a core dependency
    pass


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No TWINSEEK_* variable from the developer's shell leaks into a test."""
    for key in list(os.environ):
        if key.startswith("TWINSEEK_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("TWINSEEK_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


# Where the paper-tier adapter tests run their tiny models: ``cpu`` here and in CI; ``TEST_DEVICE=cuda`` on a GPU
# machine checks device placement and half-precision dtypes with the same tests.
TEST_DEVICE = os.environ.get("TEST_DEVICE", "cpu")


@pytest.fixture(scope="session")
def device() -> str:
    return TEST_DEVICE


@pytest.fixture
def stub():  # type: ignore[no-untyped-def]
    """A scripted LLM server; ``stub.script`` holds the replies, ``stub.client()`` talks to it."""
    from support.llm_stub import StubLLMServer

    server = StubLLMServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def sample_store(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A store of the three bundled DAVIS clips, ingested once per session with the embedded default. Read-only
    for the tests that share it: copy it (``shutil.copytree``) before writing."""
    from twinseek.config import load_settings
    from twinseek.data import sample_clips
    from twinseek.twins.pipeline import Ingestor
    from twinseek.twins.store import TwinStore

    root = tmp_path_factory.mktemp("sample-store") / "store"
    with TwinStore(root) as store:
        results = Ingestor(store, load_settings(store=root)).ingest_many(sample_clips())
    assert [r.status for r in results] == ["ingested"] * 3, results
    return root
