"""Speech demo (#21): is a video found by what is said in it, and what does speech cost at ingest?

Makes, in a temp dir, a 60 s clip from a dev-bench DAVIS clip (looped with ffmpeg) in three versions: with speech
(espeak-ng reading a short cooking monologue, muxed in by ffmpeg, padded with silence to 60 s), with a silent audio
track, and without audio. Ingests the three after a few other DAVIS clips into a temp store (embedded default;
the Whisper model is loaded before the first video, its load time reported apart; the other clips go first, so
that the three versions' step times carry no model's first-use cost), then searches without the LLM
(rule decomposition, no reasoning: ``Agent.search(q, decomposer="rules", lr=False, jit=False)``) with paraphrases
of what is said, and reports the rank of each version per tool (dense, compositional, fused). Cost: the speech
step's seconds against the audio's length (Whisper on one CPU thread, int8), and ingest seconds per step of each
version.

    .venv/bin/python benchmarks/speech.py [--bench DIR] [--clip bmx-trees] [--others blackswan,camel,...]
        [--out benchmarks/results/speech.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from twinseek.agent import Agent
from twinseek.config import load_settings
from twinseek.twins.pipeline import Ingestor
from twinseek.twins.specialists import build_specialists
from twinseek.twins.store import TwinStore

ROOT = Path(__file__).resolve().parent.parent
SECONDS = 60
MONOLOGUE = (
    "Hello and welcome back to my kitchen. Today I will show you how to bake a simple loaf of bread at home. "
    "First, mix flour, water, salt and a little yeast in a large bowl. "
    "Knead the dough for ten minutes, then let it rise for one hour in a warm place. "
    "Bake it in a hot oven for forty minutes, until the crust is golden brown. Enjoy it with butter."
)
QUERIES = (
    "someone explains how to make homemade bread",
    "a recipe where the dough is kneaded and left to rise before baking",
    "a cooking tutorial about baking a loaf in the oven",
)
OTHERS = ("blackswan", "camel", "cows", "dog", "kite-surf")


def run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def make_clips(bench: Path, clip: str, tmp: Path) -> dict[str, Path]:
    """The three 60 s versions of ``clip``: with speech, with a silent track, without audio."""
    for tool in ("ffmpeg", "espeak-ng"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (Debian package {tool}; scripts/bootstrap.sh installs it)")
    loop = tmp / "loop.mp4"
    run(["ffmpeg", "-y", "-stream_loop", "-1", "-i", str(bench / "videos" / f"{clip}.mp4"), "-t", str(SECONDS),
         "-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", str(loop)])
    said = tmp / "said.wav"
    run(["espeak-ng", "-s", "140", "-w", str(said), MONOLOGUE])
    out = {"speech": tmp / f"{clip}-speech.mp4", "silence": tmp / f"{clip}-silence.mp4",
           "no-audio": tmp / f"{clip}-no-audio.mp4"}
    # the speech starts 3 s in and is padded with silence to the clip's length
    run(["ffmpeg", "-y", "-i", str(loop), "-i", str(said), "-filter_complex",
         f"[1:a]adelay=3000|3000,apad,atrim=0:{SECONDS}[a]", "-map", "0:v", "-map", "[a]", "-c:v", "copy",
         "-c:a", "aac", "-b:a", "96k", "-ar", "44100", "-ac", "2", str(out["speech"])])
    run(["ffmpeg", "-y", "-i", str(loop), "-f", "lavfi", "-i", "anullsrc=r=44100:cl=stereo", "-map", "0:v",
         "-map", "1:a", "-c:v", "copy", "-c:a", "aac", "-t", str(SECONDS), str(out["silence"])])
    shutil.copyfile(loop, out["no-audio"])
    return out


def speech_seconds(wav_dir: Path) -> float:
    return float(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                                 str(wav_dir / "said.wav")], check=True, capture_output=True, text=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", type=Path, default=ROOT.parent / "shared" / "data" / "dev-bench")
    parser.add_argument("--clip", default="bmx-trees")
    parser.add_argument("--others", default=",".join(OTHERS))
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "speech.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="twinseek-speech-") as tmp_name:
        tmp = Path(tmp_name)
        clips = make_clips(args.bench, args.clip, tmp)
        spoken_s = speech_seconds(tmp)
        settings = load_settings(store=tmp / "store")
        specialists = build_specialists(settings)
        assert specialists.speech is not None
        t0 = time.perf_counter()
        specialists.speech.load()  # type: ignore[attr-defined]
        model_load_s = time.perf_counter() - t0
        ingests: dict[str, Any] = {}
        with TwinStore(tmp / "store") as store:
            ingestor = Ingestor(store, settings, specialists)
            # the other clips first: the first ingest pays the other models' first-use costs
            others = [ingestor.ingest(args.bench / "videos" / f"{name}.mp4") for name in args.others.split(",")]
            for name, path in clips.items():
                result = ingestor.ingest(path)
                twin = store.get_twin(result.video_id or "")
                speech = twin.speech
                ingests[name] = {
                    "video_id": result.video_id, "seconds": round(result.seconds, 2),
                    "timings": {k: round(v, 3) for k, v in result.timings.items()},
                    "speech_status": speech.status if speech else None,
                    "transcript": [[s.start, s.end, s.text, s.confidence] for s in speech.segments] if speech else [],
                    "description": twin.video.description,
                }
        ids = {name: info["video_id"] for name, info in ingests.items()}
        ranks: dict[str, dict[str, dict[str, int | None]]] = {}
        with Agent.open(tmp / "store") as agent:
            for query in QUERIES:
                ranks[query] = {}
                for tool in ("dense", "compositional", "fused"):
                    result = agent.search(query, k=args.k, tool=tool, decomposer="rules", lr=False, jit=False,
                                          tau=0.0)
                    order = [h.video_id for h in result.hits]
                    ranks[query][tool] = {name: order.index(vid) + 1 if vid in order else None
                                          for name, vid in ids.items()}
    speech_step = ingests["speech"]["timings"].get("speech", 0.0)
    report = {
        "clip": args.clip, "seconds": SECONDS, "spoken_s": round(spoken_s, 2), "monologue": MONOLOGUE,
        "store_videos": len(clips) + len(others), "others": args.others.split(","),
        "whisper_model_load_s": round(model_load_s, 2),
        "speech_step_s": {name: info["timings"].get("speech") for name, info in ingests.items()},
        "speech_realtime_factor": round(speech_step / SECONDS, 3),
        "ingests": ingests, "ranks": ranks, "k": args.k,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({"ranks": ranks, "speech_step_s": report["speech_step_s"],
                      "realtime_factor": report["speech_realtime_factor"], "model_load_s": report["whisper_model_load_s"],
                      "timings": {n: i["timings"] for n, i in ingests.items()},
                      "transcript": ingests["speech"]["transcript"]}, indent=1))


if __name__ == "__main__":
    main()
