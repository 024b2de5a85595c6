"""Ingestion on Ray actors: ``--ray local`` and a simulated two-node cluster give the same store as a serial ingest.

Ray is the optional ``twinseek[ray]`` extra; scripts/bootstrap.sh installs it, so these tests run in CI.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
from ray.cluster_utils import Cluster
from typer.testing import CliRunner

from twinseek.cli import app
from twinseek.config import load_settings
from twinseek.twins.parallel import RayBuildExecutor

from support.flaky_builder import FlakyBuilder, fault_videos
from support.parallel import assert_same, ingest
from support.synthetic import Scene, write_video

runner = CliRunner()
NODE_ARGS = {"num_cpus": 1, "object_store_memory": 80 * 2**20, "include_dashboard": False}


@pytest.fixture(scope="module")
def worker_path() -> Iterator[None]:
    """Ray's worker processes are started by its raylets, not forked from pytest: they find twinseek and the
    tests' helper modules (flaky_builder) through PYTHONPATH."""
    tests, root = Path(__file__).parents[1], Path(__file__).parents[2]
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(root), str(tests), *([before] if before else [])])
    yield
    if before is None:
        del os.environ["PYTHONPATH"]
    else:
        os.environ["PYTHONPATH"] = before


@pytest.fixture(scope="module")
def cluster(worker_path: None) -> Iterator[Cluster]:
    """Two Ray nodes of one CPU each on this machine (``ray.cluster_utils.Cluster``): an actor needs a whole CPU,
    so two actors land on two different nodes, as on two machines."""
    assert not ray.is_initialized()
    two_nodes = Cluster(initialize_head=True, head_node_args=NODE_ARGS)
    two_nodes.add_node(**NODE_ARGS)
    two_nodes.wait_for_nodes()
    yield two_nodes
    if ray.is_initialized():
        ray.shutdown()
    two_nodes.shutdown()


def test_ray_local_builds_the_same_store_as_serial(sample_store: Path, worker_path: None, tmp_path: Path) -> None:
    from twinseek.data import sample_clips

    result = runner.invoke(app, ["ingest", *map(str, sample_clips()), "--ray", "local", "--workers", "2",
                                 "--store", str(tmp_path / "ray")])
    assert result.exit_code == 0, result.output
    assert "3 ingested, 0 skipped, 0 failed" in result.output
    assert not ray.is_initialized()  # the CLI started its own Ray instance and shut it down
    assert_same(sample_store, tmp_path / "ray")


def test_cli_joins_a_two_node_cluster_by_address(cluster: Cluster, tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    for seed, name in enumerate(["a.mp4", "b.mp4", "c.gif"]):
        write_video(videos / name, Scene(frames=8, seed=seed))
    store = tmp_path / "cluster"
    result = runner.invoke(app, ["ingest", str(videos), "--ray", cluster.address, "--store", str(store)])
    assert result.exit_code == 0, result.output
    assert "3 ingested, 0 skipped, 0 failed" in result.output
    assert "2 workers on 2 Ray nodes" in result.output  # one actor per node
    ingest(tmp_path / "serial", [videos], None)
    assert_same(tmp_path / "serial", store)


def test_cluster_retries_lost_actors_and_reports_failures_per_file(cluster: Cluster, tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    folder = fault_videos(tmp_path / "videos", "good.mp4", "worker-crash-once.mp4", "nfs-fails-once.mp4",
                          "model-always-fails.mp4", "broken.mp4")
    ray.init(address=cluster.address, logging_level=logging.WARNING, log_to_driver=False)
    try:
        with RayBuildExecutor(load_settings(), builder=FlakyBuilder) as executor:
            assert len(set(executor.node_ids)) == 2
            with caplog.at_level(logging.WARNING, logger="twinseek"):
                # retries=2: a job queued on the actor that crashes is lost with it, and that costs it a try
                results = {Path(r.path).name: r for r in ingest(tmp_path / "store", [folder], executor, retries=2)}
    finally:
        ray.shutdown()
    assert {name: r.status for name, r in results.items()} == {
        "broken.mp4": "failed", "good.mp4": "ingested", "model-always-fails.mp4": "failed",
        "nfs-fails-once.mp4": "ingested", "worker-crash-once.mp4": "ingested"}
    assert "corrupt" in results["broken.mp4"].error and "RuntimeError" in results["model-always-fails.mp4"].error
    messages = [r.getMessage() for r in caplog.records]
    assert sum("Ray actor died" in m for m in messages) == 1  # the crashed actor was replaced, only it
    retried = {name for m in messages if "trying again" in m for name in results if name in m}
    # (a job that was waiting on the crashed actor may be retried as well: it was lost with it)
    assert {"worker-crash-once.mp4", "nfs-fails-once.mp4", "model-always-fails.mp4"} <= retried
    assert "broken.mp4" not in retried  # bad input fails the same way every time
