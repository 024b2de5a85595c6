"""Calibrated relevance: a map from what is known about a candidate to P(relevant), fitted on labelled queries.

With it, ``tau = 0.5`` means "more likely relevant than not", and a query that matches nothing (every candidate
unlikely) returns no hit. Platt scaling is the default: a logistic regression (scikit-learn's
``LogisticRegression``) over the candidate's features (:func:`candidate_features`): the LLM's judgement when it
judged the candidate, its absolute retrieval similarity and its retrieval rank; with the one feature ``score`` it
is the classic ``sigmoid(a * score + b)``. A feature fitted against its direction is dropped (:data:`DIRECTION`).
Isotonic regression over one feature (``IsotonicRegression``) is the alternative for large label sets.

Two calibrators work together: ``<judge>`` for the candidates the LLM judged, and ``retrieval`` for the others
(below ``agent.judge_top``), from similarity and rank alone. Where a search finds them (:func:`find_calibrator`),
first match wins:

1. ``agent.calibration`` in the settings (a JSON file written by ``twinseek calibrate``; the retrieval one beside
   it, :func:`retrieval_sibling`);
2. ``calibration-<judge>.json`` / ``calibration-retrieval.json`` in the store folder (``twinseek calibrate BENCH
   --store S`` writes them there);
3. the files shipped in the package for the embedded model (``twinseek/data/calibration/<llm>-<judge>.json``).

With none, the relevance is the uncalibrated score. A calibrator is fitted for one LLM and one judge mode: a file
for another one is not used.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from importlib import resources as package_files
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, model_validator

from twinseek.errors import TwinseekError

logger = logging.getLogger(__name__)

CalibrationMethod = Literal["platt", "isotonic"]
FeatureName = Literal["score", "judged", "similarity", "rank"]
FORMAT = "twinseek-calibration-v2"
RETRIEVAL_JUDGE = "retrieval"  # the calibrator of candidates the LLM did not judge (retrieval similarity and rank)
OLD_FORMATS = ("twinseek-calibration-v1",)  # one feature ("score"), Platt as a, b: still read


def candidate_features(*, similarity: float, rank: int, judged: float | None = None,
                       score: float | None = None) -> dict[str, float]:
    """What a calibrator may read about one candidate: ``judged`` (the LLM's judgement in [0, 1], e.g. P(yes)),
    ``similarity`` (its absolute retrieval similarity), ``rank`` (log(1 + its 0-based retrieval position): the
    retrieval's own confidence, which an absolute similarity misses) and ``score`` (the blended score)."""
    values = {"similarity": float(similarity), "rank": math.log1p(max(0, rank))}
    if judged is not None:
        values["judged"] = float(judged)
    if score is not None:
        values["score"] = float(score)
    return values


def sigmoid(z: float) -> float:
    """The logistic function, without overflow for large negative ``z``."""
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def _one_score() -> list[FeatureName]:
    return ["score"]


class CalibrationError(TwinseekError):
    """A calibrator that cannot be fitted or read."""


class Calibrator(BaseModel):
    """``P(relevant | features)``: Platt scaling as a logistic regression over ``features`` (one feature: the
    classic ``sigmoid(a * score + b)``), or isotonic regression over the first feature."""

    format: str = FORMAT
    method: CalibrationMethod
    features: list[FeatureName] = Field(default_factory=_one_score)
    coef: list[float] = Field(default_factory=list)
    intercept: float = 0.0
    xs: list[float] = Field(default_factory=list)
    ys: list[float] = Field(default_factory=list)
    llm: str = Field(description="The LLM the scores came from (its model name), e.g. qwen2.5-coder-0.5b.")
    judge: str = Field(description="The judge mode the scores came from ('retrieval': candidates not judged).")
    fitted_on: dict[str, object] = Field(default_factory=dict, description="Bench, query ids, pair counts, date.")

    @model_validator(mode="before")
    @classmethod
    def _from_v1(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("format") in OLD_FORMATS:
            data = {k: v for k, v in data.items() if k not in ("a", "b", "format")} | {
                "features": ["score"], "coef": [data.get("a", 0.0)], "intercept": data.get("b", 0.0)}
        return data

    @model_validator(mode="after")
    def _shapes(self) -> Calibrator:
        if not self.features:
            raise ValueError("a calibrator needs at least one feature")
        if self.method == "platt" and len(self.coef) != len(self.features):
            raise ValueError(f"{len(self.features)} features but {len(self.coef)} coefficients")
        if self.method == "isotonic" and (len(self.xs) != len(self.ys) or not self.xs):
            raise ValueError("an isotonic calibrator needs as many xs as ys, at least one")
        return self

    def probability(self, values: Mapping[str, float]) -> float:
        """P(relevant) from the candidate's feature values (:func:`candidate_features`)."""
        missing = [f for f in self.features if f not in values]
        if missing:
            raise CalibrationError(f"the calibrator reads {missing}, which this candidate lacks")
        if self.method == "isotonic":
            return float(np.interp(values[self.features[0]], self.xs, self.ys))
        return sigmoid(self.intercept + sum(c * values[f] for c, f in zip(self.coef, self.features)))

    def __call__(self, score: float) -> float:
        """P(relevant) of a one-feature calibrator from that feature's value."""
        if len(self.features) != 1:
            raise CalibrationError(f"this calibrator reads {self.features}: call probability() with all of them")
        return self.probability({self.features[0]: score})

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


def fit_calibrator(rows: Sequence[Mapping[str, float]] | Sequence[float], labels: Sequence[bool], *, llm: str,
                   judge: str, method: CalibrationMethod = "platt", features: Sequence[FeatureName] = ("score",),
                   fitted_on: dict[str, object] | None = None) -> Calibrator:
    """Fit ``P(relevant | features)`` on labelled candidates from labelled queries (both classes needed).

    ``rows`` are the candidates' feature values (:func:`candidate_features`), or plain scores for the one
    feature ``score``. Isotonic regression reads the first feature only.
    """
    names = list(features)
    x = np.asarray([[float(r[f]) for f in names] if isinstance(r, Mapping) else [float(r)] for r in rows],
                   dtype=np.float64).reshape(len(rows), -1)
    y = np.asarray(labels, dtype=bool)
    if x.shape[0] != y.shape[0] or y.ndim != 1 or x.shape[1] != len(names):
        raise CalibrationError(f"need one row of {len(names)} feature(s) per label ({x.shape} vs {y.shape})")
    if not (y.any() and (~y).any()):
        raise CalibrationError(f"need relevant and irrelevant pairs to fit, got {int(y.sum())} of {len(y)} relevant")
    meta = {"pairs": int(len(y)), "relevant": int(y.sum()),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), **(fitted_on or {})}
    if method == "platt":
        return _fit_platt(x, y, names, llm=llm, judge=judge, meta=meta)
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x[:, 0], y.astype(np.float64))
    return Calibrator(method="isotonic", features=names[:1], xs=[float(v) for v in iso.X_thresholds_],
                      ys=[float(v) for v in iso.y_thresholds_], llm=llm, judge=judge, fitted_on=meta)


# The direction each feature may push P(relevant): a "yes", a higher similarity or a better rank never lowers it.
# A fitted coefficient against its direction means the feature carries no usable signal in these labels (e.g. a
# small LLM's P(yes) that is noise): the feature is dropped and the rest refitted, and ``fitted_on`` says so.
DIRECTION: dict[str, int] = {"score": 1, "judged": 1, "similarity": 1, "rank": -1}


def _fit_platt(x: np.ndarray, y: np.ndarray, names: list[FeatureName], *, llm: str, judge: str,
               meta: dict[str, object]) -> Calibrator:
    from sklearn.linear_model import LogisticRegression

    keep = list(range(len(names)))
    dropped: list[FeatureName] = []
    while True:
        # weak regularisation: with one feature the fit is the maximum-likelihood sigmoid of Platt (1999)
        model = LogisticRegression(C=100.0).fit(x[:, keep], y)
        coef = [float(c) for c in model.coef_[0]]
        wrong = [i for i, c in zip(keep, coef) if c * DIRECTION[names[i]] < 0]
        if not wrong or len(keep) == 1:
            break
        worst = min(wrong, key=lambda i: coef[keep.index(i)] * DIRECTION[names[i]])
        dropped.append(names[worst])
        keep.remove(worst)
    if dropped:
        logger.warning("calibration: %s dropped (fitted against its direction: no usable signal)", ", ".join(dropped))
    used = [names[i] for i in keep]
    return Calibrator(method="platt", features=used, coef=coef, intercept=float(model.intercept_[0]), llm=llm,
                      judge=judge, fitted_on={**meta, "features_dropped": list(dropped)})


def retrieval_sibling(path: Path, judge: str) -> Path:
    """Where the retrieval calibrator fitted with the one at ``path`` (for ``judge``) lives:
    ``calibration-yesno.json`` -> ``calibration-retrieval.json``, ``mine.json`` -> ``mine-retrieval.json``."""
    path = Path(path)
    suffix = f"-{judge}.json"
    if path.name.endswith(suffix):
        return path.with_name(path.name[: -len(suffix)] + f"-{RETRIEVAL_JUDGE}.json")
    return path.with_name(f"{path.stem}-{RETRIEVAL_JUDGE}.json")


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

