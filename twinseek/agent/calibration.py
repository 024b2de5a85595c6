"""Calibrated relevance: a monotone map from a candidate's judged score to P(relevant), fitted on labelled queries.

With it, ``tau = 0.5`` means "more likely relevant than not", and a query that matches nothing (every candidate
unlikely) returns no hit. Platt scaling (a logistic fit of the score; scikit-learn's ``LogisticRegression``) is
the default: it is smooth and needs few labelled pairs; isotonic regression (``IsotonicRegression``) is the
alternative for large label sets.

Where a search finds its calibrator (:func:`find_calibrator`), first match wins:

1. ``agent.calibration`` in the settings (a JSON file written by ``twinseek calibrate``);
2. ``calibration-<judge>.json`` in the store folder (``twinseek calibrate BENCH --store S`` writes it there);
3. the file shipped in the package for the embedded model and judge mode (``twinseek/data/calibration``).

With none, the relevance is the uncalibrated score (and a search logs once that tau is not a probability).
A calibrator is fitted for one LLM and one judge mode: a file for another one is not used.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from datetime import datetime, timezone
from importlib import resources as package_files
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from twinseek.errors import TwinseekError

logger = logging.getLogger(__name__)

CalibrationMethod = Literal["platt", "isotonic"]
FORMAT = "twinseek-calibration-v1"


class CalibrationError(TwinseekError):
    """A calibrator that cannot be fitted or read."""


class Calibrator(BaseModel):
    """``P(relevant | score)``: Platt (``sigmoid(a * score + b)``) or isotonic (piecewise linear through points)."""

    format: str = FORMAT
    method: CalibrationMethod
    a: float = 0.0
    b: float = 0.0
    xs: list[float] = Field(default_factory=list)
    ys: list[float] = Field(default_factory=list)
    llm: str = Field(description="The LLM the scores came from (its model name), e.g. qwen2.5-coder-0.5b.")
    judge: str = Field(description="The judge mode the scores came from.")
    fitted_on: dict[str, object] = Field(default_factory=dict, description="Bench, query ids, pair counts, date.")

    def __call__(self, score: float) -> float:
        if self.method == "platt":
            z = self.a * score + self.b
            return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
        return float(np.interp(score, self.xs, self.ys))

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.model_dump_json(indent=2))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> Calibrator:
        try:
            cal = cls.model_validate_json(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise CalibrationError(f"cannot read the calibrator {path}: {exc}") from exc
        if cal.format != FORMAT:
            raise CalibrationError(f"{path} is a {cal.format!r} file, expected {FORMAT!r}")
        return cal


def fit_calibrator(scores: Sequence[float], labels: Sequence[bool], *, llm: str, judge: str,
                   method: CalibrationMethod = "platt", fitted_on: dict[str, object] | None = None) -> Calibrator:
    """Fit ``P(relevant | score)`` on (score, label) pairs from labelled queries (both classes needed)."""
    x = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    if x.shape != y.shape or x.ndim != 1:
        raise CalibrationError(f"scores and labels must be two lists of the same length ({x.shape} vs {y.shape})")
    if not (y.any() and (~y).any()):
        raise CalibrationError(f"need relevant and irrelevant pairs to fit, got {int(y.sum())} of {len(y)} relevant")
    meta = {"pairs": int(len(y)), "relevant": int(y.sum()),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), **(fitted_on or {})}
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        # weak regularisation: with one feature the fit is the maximum-likelihood sigmoid of Platt (1999)
        model = LogisticRegression(C=100.0).fit(x.reshape(-1, 1), y)
        return Calibrator(method="platt", a=float(model.coef_[0, 0]), b=float(model.intercept_[0]), llm=llm,
                          judge=judge, fitted_on=meta)
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x, y.astype(np.float64))
    return Calibrator(method="isotonic", xs=[float(v) for v in iso.X_thresholds_],
                      ys=[float(v) for v in iso.y_thresholds_], llm=llm, judge=judge, fitted_on=meta)


def store_calibration_path(store_root: Path, judge: str) -> Path:
    return Path(store_root) / f"calibration-{judge}.json"


def packaged_calibration_path(llm: str, judge: str) -> Path | None:
    path = Path(str(package_files.files("twinseek.data"))) / "calibration" / f"{llm}-{judge}.json"
    return path if path.is_file() else None


@functools.lru_cache(maxsize=32)
def _load_cached(path: str, mtime: float) -> Calibrator:
    del mtime  # part of the key: a refitted file is read again
    return Calibrator.load(Path(path))


def find_calibrator(explicit: Path | None, store_root: Path, llm: str, judge: str) -> Calibrator | None:
    """The calibrator for ``llm`` and ``judge`` (see the module docstring for the order); None when there is none.
    A file fitted for another LLM or judge mode is skipped with a warning (the explicit one is an error)."""
    found = [(p, p is explicit) for p in (explicit, store_calibration_path(store_root, judge),
                                          packaged_calibration_path(llm, judge)) if p is not None]
    for path, is_explicit in found:
        if not path.is_file():
            if is_explicit:
                raise CalibrationError(f"agent.calibration: no file at {path}")
            continue
        cal = _load_cached(str(path), path.stat().st_mtime)
        if cal.llm == llm and cal.judge == judge:
            return cal
        message = f"{path} was fitted for {cal.llm}/{cal.judge}, not {llm}/{judge}"
        if is_explicit:
            raise CalibrationError(message)
        logger.warning("%s: not used", message)
    return None

