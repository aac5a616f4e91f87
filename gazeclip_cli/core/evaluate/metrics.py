"""Open-set attribution and detection metrics (SPEC section 5), computed from arrays of predictions.

Per test set the caller gives the attribution expert's softmax (N, x), the detection expert's
softmax (N, 2), the true DFA labels (-1 = unseen generator or unseen real) and DFD labels
(0 real, 1 fake), and optionally the video id of each frame. :func:`evaluate_sets` returns one
:class:`SetMetrics` per set and the averages over unseen and over seen sets, laid out as the
paper's Tables II and III need them. Every definition is written out in ``docs/EVALUATION.md``.

scikit-learn is imported inside the functions that need it: it takes about a second to import
and the CLI imports this module at start-up.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from gazeclip_cli.core.errors import ConfigError, DataError

DEFAULT_TAU = 0.9
"""The paper's open-set threshold: top attribution probability below it means "unknown"."""

UNSEEN_LABEL = -1
"""DFA label of every sample whose generator (or real source) was not seen in training."""

HEADS = ("attribution", "detection")
"""The two experts; a model trained with one alone (the paper's Fig. 9) is evaluated on it only."""

REPORT_FORMAT = "gazeclip-evaluation/1"
ROBUSTNESS_FORMAT = "gazeclip-robustness/1"


@dataclass(frozen=True, eq=False)
class SetPredictions:
    """What the model said about one test set, with the true labels.

    Args:
        attribution_probs: (N, x) softmax of the attribution expert; x = real + seen generators.
            None for a model without that expert (the paper's Fig. 9); its metrics are then None.
        detection_probs: (N, 2) softmax of the detection expert; column 1 is P(fake). None for a
            model without that expert.
        dfa_labels: (N,) true attribution labels, 0..x-1 for seen classes, -1 for unseen.
        dfd_labels: (N,) true detection labels, 0 real, 1 fake.
        video_ids: optional (N,) source-video id of each frame, "" for still images; frames of
            one video are averaged for the video-level AUC.
    """

    attribution_probs: np.ndarray | None
    detection_probs: np.ndarray | None
    dfa_labels: np.ndarray
    dfd_labels: np.ndarray
    video_ids: Sequence[str] | np.ndarray | None = None


@dataclass(frozen=True)
class SetMetrics:
    """Every metric of one test set; ``None`` where the metric is undefined for this set.

    Fractions in [0, 1]. ``kind`` is ``"seen"`` (DFA labels >= 0) or ``"unseen"`` (all -1).
    ``paired_with`` names the real set whose samples were added to compute the detection
    AUC, EER, AP and video AUC of an all-fake set (``None`` when the set's own labels sufficed
    or no pairing was given). ``unknown_auroc`` and ``oscr`` are given for unseen sets, measured
    against the samples of all seen sets together.
    """

    name: str
    kind: str
    num_samples: int
    open_set_acc: float | None  # None without the attribution expert (as every attribution metric)
    closed_set_acc: float | None
    detection_acc: float | None  # None without the detection expert (as every detection metric)
    detection_auc: float | None
    detection_eer: float | None
    detection_ap: float | None
    video_auc: float | None
    num_videos: int
    paired_with: str | None
    unknown_auroc: float | None
    oscr: float | None


AVERAGED_METRICS = (
    "open_set_acc",
    "closed_set_acc",
    "detection_acc",
    "detection_auc",
    "detection_eer",
    "detection_ap",
    "video_auc",
    "unknown_auroc",
    "oscr",
)
"""The :class:`SetMetrics` fields that :class:`GroupAverage` averages."""

ATTRIBUTION_METRICS = ("open_set_acc", "closed_set_acc", "unknown_auroc", "oscr")
"""The metrics the attribution expert gives; every other one is the detection expert's."""


def expert_of(metric: str) -> str:
    """The expert (an entry of :data:`HEADS`) a :class:`SetMetrics` field is computed from."""
    return "attribution" if metric in ATTRIBUTION_METRICS else "detection"


AVERAGE_KEYS = tuple(f"{group}_{metric}" for group in ("seen", "unseen") for metric in AVERAGED_METRICS)
"""Names of :meth:`EvaluationReport.averages`: ``seen_closed_set_acc``, ``unseen_open_set_acc``, ..."""


@dataclass(frozen=True)
class GroupAverage:
    """Mean of each metric over the sets of one kind (Tables II and III's "Average" column).

    A metric is averaged over the sets where it is defined (e.g. the detection AUC skips an
    unpaired all-fake set and the all-real set itself); ``None`` when no set defines it.
    """

    kind: str
    sets: tuple[str, ...]
    open_set_acc: float | None
    closed_set_acc: float | None
    detection_acc: float | None
    detection_auc: float | None
    detection_eer: float | None
    detection_ap: float | None
    video_auc: float | None
    unknown_auroc: float | None
    oscr: float | None


@dataclass(frozen=True)
class EvaluationReport:
    """Result of :func:`evaluate_sets`: per-set metrics, averages, and pooled open-set scores.

    ``unknown_auroc`` and ``oscr`` pool every unseen sample against every seen sample (the
    number the open-set literature reports); ``None`` without both. ``heads`` names the
    experts the model has; the other expert's metrics are all ``None``.
    """

    tau: float
    sets: tuple[SetMetrics, ...]
    unseen_average: GroupAverage | None
    seen_average: GroupAverage | None
    unknown_auroc: float | None
    oscr: float | None
    heads: tuple[str, ...] = HEADS

    def set(self, name: str) -> SetMetrics:
        """The metrics of the set called ``name``."""
        for s in self.sets:
            if s.name == name:
                return s
        raise DataError(_unknown_set_message(name, [s.name for s in self.sets], "evaluation report"))

    def averages(self) -> dict[str, float]:
        """Every average the tables print, as ``<seen|unseen>_<metric>`` (:data:`AVERAGE_KEYS`); undefined ones left out."""
        out = {}
        for group, average in (("seen", self.seen_average), ("unseen", self.unseen_average)):
            for metric in AVERAGED_METRICS:
                value = None if average is None else getattr(average, metric)
                if value is not None:
                    out[f"{group}_{metric}"] = value
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; :meth:`from_dict` reads it back to an equal report."""
        return {
            "format": REPORT_FORMAT,
            "tau": self.tau,
            "sets": [asdict(s) for s in self.sets],
            "unseen_average": _average_to_dict(self.unseen_average),
            "seen_average": _average_to_dict(self.seen_average),
            "unknown_auroc": self.unknown_auroc,
            "oscr": self.oscr,
            "heads": list(self.heads),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "evaluation report") -> EvaluationReport:
        """Rebuild a report written by :meth:`to_dict`; ``where`` names the source in errors."""
        _check_format(data, REPORT_FORMAT, where)
        try:
            return cls(
                tau=float(data["tau"]),
                sets=tuple(SetMetrics(**s) for s in data["sets"]),
                unseen_average=_average_from_dict(data["unseen_average"]),
                seen_average=_average_from_dict(data["seen_average"]),
                unknown_auroc=data["unknown_auroc"],
                oscr=data["oscr"],
                heads=tuple(data.get("heads", HEADS)),  # reports before Fig. 9 had both experts
            )
        except (KeyError, TypeError) as exc:
            raise DataError(
                f"{where}: malformed evaluation report ({exc}); write it again with gazeclip evaluate"
            ) from exc


@dataclass(frozen=True)
class RobustnessResult:
    """One metric per corruption and severity (the paper's Fig. 6).

    ``values[i][j]`` is the metric for ``corruptions[i]`` at ``severities[j]``; severity 0 is the
    clean test data and is the same number for every corruption.
    """

    metric: str
    corruptions: tuple[str, ...]
    severities: tuple[int, ...]
    values: tuple[tuple[float | None, ...], ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; :meth:`from_dict` reads it back to an equal result."""
        return {
            "format": ROBUSTNESS_FORMAT,
            "metric": self.metric,
            "corruptions": list(self.corruptions),
            "severities": list(self.severities),
            "values": [list(row) for row in self.values],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "robustness result") -> RobustnessResult:
        """Rebuild a result written by :meth:`to_dict`; ``where`` names the source in errors."""
        _check_format(data, ROBUSTNESS_FORMAT, where)
        try:
            result = cls(
                metric=str(data["metric"]),
                corruptions=tuple(data["corruptions"]),
                severities=tuple(int(s) for s in data["severities"]),
                values=tuple(tuple(row) for row in data["values"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(
                f"{where}: malformed robustness result ({exc}); write it again with gazeclip evaluate"
            ) from exc
        if len(result.values) != len(result.corruptions) or any(
            len(row) != len(result.severities) for row in result.values
        ):
            raise DataError(
                f"{where}: values do not form a {len(result.corruptions)} x {len(result.severities)} grid "
                "(corruptions x severities); write it again with gazeclip evaluate"
            )
        return result


# --- single metrics on arrays ---------------------------------------------------------------


def open_set_correct(
    attribution_probs: np.ndarray, dfa_labels: np.ndarray, tau: float = DEFAULT_TAU
) -> np.ndarray:
    """Per-sample correctness of open-set attribution at threshold ``tau``.

    A sample is predicted "unknown" when its top probability is below ``tau``. An unseen sample
    (label -1) is correct when predicted unknown; a seen sample is correct when the argmax is its
    label and the top probability is >= ``tau``. The comparison is made in the dtype of the
    probabilities, so a float32 softmax of exactly 0.9 counts as known at tau = 0.9.

    Args:
        attribution_probs: (N, x) softmax probabilities.
        dfa_labels: (N,) labels, -1 for unseen.
        tau: the threshold, in (0, 1].

    Returns:
        (N,) bool array.
    """
    probs = np.asarray(attribution_probs)
    labels = np.asarray(dfa_labels)
    top = probs.max(axis=1)
    # Cast tau to the probabilities' dtype: float32(0.9) < float64(0.9) would otherwise turn an
    # exactly-at-threshold float32 prediction into "unknown".
    threshold = np.asarray(tau, dtype=top.dtype) if np.issubdtype(top.dtype, np.floating) else tau
    known = top >= threshold
    right_class = probs.argmax(axis=1) == labels
    return np.where(labels == UNSEEN_LABEL, ~known, known & right_class)


def open_set_accuracy(
    attribution_probs: np.ndarray, dfa_labels: np.ndarray, tau: float = DEFAULT_TAU
) -> float:
    """Share of samples :func:`open_set_correct` counts as correct (the paper's attribution ACC)."""
    return float(np.mean(open_set_correct(attribution_probs, dfa_labels, tau)))


def closed_set_accuracy(attribution_probs: np.ndarray, dfa_labels: np.ndarray) -> float | None:
    """Argmax accuracy over the seen samples (label >= 0); ``None`` when there are none."""
    labels = np.asarray(dfa_labels)
    seen = labels != UNSEEN_LABEL
    if not seen.any():
        return None
    return float(np.mean(np.asarray(attribution_probs)[seen].argmax(axis=1) == labels[seen]))


def detection_accuracy(detection_probs: np.ndarray, dfd_labels: np.ndarray) -> float:
    """Argmax accuracy of the detection expert (a tie counts as real, column 0)."""
    return float(np.mean(np.asarray(detection_probs).argmax(axis=1) == np.asarray(dfd_labels)))


def _both_classes(labels: np.ndarray) -> bool:
    return bool((labels == 0).any() and (labels == 1).any())


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve of ``scores`` for positives ``labels == 1``; ``None`` without both classes."""
    labels = np.asarray(labels)
    if not _both_classes(labels):
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, np.asarray(scores, dtype=np.float64)))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Average precision (area under precision-recall, step-wise); ``None`` without both classes."""
    labels = np.asarray(labels)
    if not _both_classes(labels):
        return None
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(labels, np.asarray(scores, dtype=np.float64)))


def equal_error_rate(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Equal error rate: where the false positive rate equals the false negative rate.

    Interpolated linearly on the ROC segment where FNR - FPR changes sign, so ties between a real
    and a fake score give the exact crossing; ``None`` without both classes.
    """
    labels = np.asarray(labels)
    if not _both_classes(labels):
        return None
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, np.asarray(scores, dtype=np.float64), drop_intermediate=False)
    gap = (1.0 - tpr) - fpr  # non-increasing from 1 at (0, 0) to -1 at (1, 1)
    j = int(np.argmax(gap <= 0))
    if gap[j] == 0:
        return float(fpr[j])
    t = gap[j - 1] / (gap[j - 1] - gap[j])
    return float(fpr[j - 1] + t * (fpr[j] - fpr[j - 1]))


def unknown_auroc(known_scores: np.ndarray, unknown_scores: np.ndarray) -> float | None:
    """AUROC of telling known from unknown samples by maximum softmax probability.

    Knowns are the positives: the chance that a random known sample has a higher top probability
    than a random unknown one (ties count one half). ``None`` when either side is empty.
    """
    known_scores = np.asarray(known_scores, dtype=np.float64)
    unknown_scores = np.asarray(unknown_scores, dtype=np.float64)
    if known_scores.size == 0 or unknown_scores.size == 0:
        return None
    labels = np.r_[np.ones(known_scores.size), np.zeros(unknown_scores.size)]
    return roc_auc(labels, np.r_[known_scores, unknown_scores])


def oscr(known_scores: np.ndarray, known_correct: np.ndarray, unknown_scores: np.ndarray) -> float | None:
    """Open-set classification rate (Dhamija et al., 2018): area under CCR against FPR.

    For a threshold d on the top probability, CCR(d) is the share of known samples classified
    correctly with score >= d and FPR(d) the share of unknown samples with score >= d. The curve
    runs from (0, 0) through every distinct score to (1, closed-set accuracy) and is integrated
    with the trapezoid rule, so tied scores give a straight segment. With every known scored above
    every unknown, OSCR equals the closed-set accuracy. ``None`` when either side is empty.

    Args:
        known_scores: (K,) top probability of each known sample.
        known_correct: (K,) whether its argmax is its true label.
        unknown_scores: (U,) top probability of each unknown sample.
    """
    known_scores = np.asarray(known_scores, dtype=np.float64)
    unknown_scores = np.asarray(unknown_scores, dtype=np.float64)
    if known_scores.size == 0 or unknown_scores.size == 0:
        return None
    from sklearn.metrics import auc

    scores = np.r_[known_scores, unknown_scores]
    correct = np.r_[np.asarray(known_correct, dtype=bool), np.zeros(unknown_scores.size, dtype=bool)]
    is_unknown = np.r_[np.zeros(known_scores.size, dtype=bool), np.ones(unknown_scores.size, dtype=bool)]
    order = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    ccr = np.cumsum(correct[order]) / known_scores.size
    fpr = np.cumsum(is_unknown[order]) / unknown_scores.size
    # One curve point per distinct threshold: the last sample of each run of equal scores.
    last = np.r_[ranked[1:] != ranked[:-1], True]
    return float(auc(np.r_[0.0, fpr[last]], np.r_[0.0, ccr[last]]))


def video_level(
    scores: np.ndarray, labels: np.ndarray, video_ids: Sequence[str] | np.ndarray, where: str = "test set"
) -> tuple[np.ndarray, np.ndarray]:
    """Average frame scores per video.

    Frames with an empty video id are still images and are left out.

    Returns:
        (V,) mean score and (V,) label of each video, ordered by video id.

    Raises:
        DataError: a video's frames carry different labels.
    """
    ids = np.asarray(video_ids, dtype=str)
    with_video = ids != ""
    names, index = np.unique(ids[with_video], return_inverse=True)
    frame_scores = np.asarray(scores, dtype=np.float64)[with_video]
    frame_labels = np.asarray(labels)[with_video]
    counts = np.bincount(index, minlength=names.size)
    mean = np.bincount(index, weights=frame_scores, minlength=names.size) / np.maximum(counts, 1)
    low = np.full(names.size, np.iinfo(np.int64).max)
    high = np.full(names.size, np.iinfo(np.int64).min)
    np.minimum.at(low, index, frame_labels)
    np.maximum.at(high, index, frame_labels)
    mixed = np.flatnonzero(low != high)
    if mixed.size:
        raise DataError(
            f"{where}: video '{names[mixed[0]]}' has frames labelled both real and fake; "
            "give each video one detection label in the manifest"
        )
    return mean, low


# --- per-set evaluation -------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Checked:
    """One set's arrays after validation, in the shapes and dtypes the metrics use."""

    name: str
    kind: str
    heads: tuple[str, ...]  # the experts whose probabilities were given
    top: np.ndarray | None  # (N,) float64 top attribution probability
    open_correct: np.ndarray | None  # (N,) bool
    closed_correct: np.ndarray | None  # (N,) bool, argmax == label
    dfa: np.ndarray  # (N,) int64
    dfd: np.ndarray  # (N,) int64
    p_fake: np.ndarray | None  # (N,) float64
    detection_acc: float | None
    video_ids: np.ndarray  # (N,) str, "" for still images


def _check_set(name: str, p: SetPredictions, tau: float) -> _Checked:
    where = f"test set '{name}'"
    if p.attribution_probs is None and p.detection_probs is None:
        raise DataError(f"{where}: neither attribution nor detection probabilities given")
    dfa = np.asarray(p.dfa_labels)
    dfd = np.asarray(p.dfd_labels)
    attr = det = None
    given = []
    if p.attribution_probs is not None:
        attr = np.asarray(p.attribution_probs)
        if attr.ndim != 2 or attr.shape[0] == 0 or attr.shape[1] < 2:
            raise DataError(
                f"{where}: attribution_probs has shape {attr.shape}; expected (N, classes) with N >= 1"
            )
        n = attr.shape[0]
        given.append(("attribution_probs", attr))
    if p.detection_probs is not None:
        det = np.asarray(p.detection_probs)
        if attr is None and (det.ndim != 2 or det.shape[0] == 0):
            raise DataError(f"{where}: detection_probs has shape {det.shape}; expected (N, 2) with N >= 1")
        n = attr.shape[0] if attr is not None else det.shape[0]  # samples: the attribution's, if given
        if det.shape != (n, 2):
            raise DataError(f"{where}: detection_probs has shape {det.shape}; expected ({n}, 2)")
        given.append(("detection_probs", det))
    for label_name, labels in (("dfa_labels", dfa), ("dfd_labels", dfd)):
        if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
            raise DataError(
                f"{where}: {label_name} must be {n} integers, got shape {labels.shape} {labels.dtype}"
            )
    for probs_name, probs in given:
        if not np.issubdtype(probs.dtype, np.floating) or not np.isfinite(probs).all():
            raise DataError(f"{where}: {probs_name} must be finite floats")
        # Loose tolerance: a bf16 softmax sums to 1 only within ~1e-2; logits miss by far more.
        if (probs.min() < 0) or (probs.max() > 1) or not np.allclose(probs.sum(axis=1), 1.0, atol=2e-2):
            raise DataError(
                f"{where}: {probs_name} rows must be softmax probabilities (apply softmax to the logits)"
            )
    classes = attr.shape[1] if attr is not None else None
    if dfa.min() < UNSEEN_LABEL or (classes is not None and dfa.max() >= classes):
        bound = f"-1..{classes - 1} for {classes} attribution classes" if classes else "-1 or above"
        raise DataError(f"{where}: dfa_labels must lie in {bound}")
    if not np.isin(dfd, (0, 1)).all():
        raise DataError(f"{where}: dfd_labels must be 0 (real) or 1 (fake)")
    unseen = dfa == UNSEEN_LABEL
    if unseen.any() and not unseen.all():
        raise DataError(
            f"{where}: mixes seen (DFA label >= 0) and unseen (DFA label -1) samples; "
            "evaluate each generator as its own set"
        )
    if p.video_ids is None:
        video_ids = np.full(n, "", dtype=str)
    else:
        video_ids = np.asarray(["" if v is None else str(v) for v in p.video_ids], dtype=str)
        if video_ids.shape != (n,):
            raise DataError(f"{where}: video_ids has {video_ids.shape[0]} entries; expected {n}")
    return _Checked(
        name=name,
        kind="unseen" if unseen.all() else "seen",
        heads=tuple(h for h, probs in zip(HEADS, (attr, det), strict=True) if probs is not None),
        top=None if attr is None else attr.max(axis=1).astype(np.float64),
        open_correct=None if attr is None else open_set_correct(attr, dfa, tau),
        closed_correct=None if attr is None else attr.argmax(axis=1) == dfa,
        dfa=dfa.astype(np.int64),
        dfd=dfd.astype(np.int64),
        p_fake=None if det is None else det[:, 1].astype(np.float64),
        detection_acc=None if det is None else detection_accuracy(det, dfd),
        video_ids=video_ids,
    )


def _unknown_set_message(name: str, known: Sequence[str], where: str) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else f" (sets: {', '.join(known)})"
    return f"{where}: no test set named '{name}'{hint}"


def _resolve_pairing(
    checked: Mapping[str, _Checked], pair_reals: str | Mapping[str, str] | None
) -> dict[str, str]:
    """Map each all-fake set to the all-real set it is paired with for AUC, EER, AP."""
    if pair_reals is None:
        return {}
    if isinstance(pair_reals, str):
        reals = {pair_reals}
        requested = {name: pair_reals for name, c in checked.items() if (c.dfd == 1).all()}
    else:
        reals = set(pair_reals.values())
        requested = dict(pair_reals)
    for name in sorted(reals | set(requested)):
        if name not in checked:
            raise DataError(_unknown_set_message(name, list(checked), "pairing of all-fake sets with reals"))
    for real_name in sorted(reals):
        if not (checked[real_name].dfd == 0).all():
            raise DataError(
                f"test set '{real_name}' is named to pair all-fake sets with, but it is not all real (DFD label 0)"
            )
    for fake_name in requested:
        if not (checked[fake_name].dfd == 1).all():
            raise DataError(
                f"test set '{fake_name}' is paired with reals, but it is not all fake; "
                "only all-fake sets need pairing (a set with both labels uses its own)"
            )
    return requested


def _mean_defined(values: Sequence[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def _group_average(kind: str, sets: Sequence[SetMetrics]) -> GroupAverage | None:
    members = [s for s in sets if s.kind == kind]
    if not members:
        return None
    means = {m: _mean_defined([getattr(s, m) for s in members]) for m in AVERAGED_METRICS}
    return GroupAverage(kind=kind, sets=tuple(s.name for s in members), **means)


def _check_tau(tau: float) -> None:
    if not 0.0 < tau <= 1.0:
        raise ConfigError(f"open-set threshold tau = {tau} is outside (0, 1]; the paper uses 0.9")


def evaluate_sets(
    per_set: Mapping[str, SetPredictions],
    tau: float = DEFAULT_TAU,
    pair_reals: str | Mapping[str, str] | None = None,
) -> EvaluationReport:
    """All metrics for every test set, averages over unseen and seen sets, pooled open-set scores.

    Args:
        per_set: test-set name (e.g. the generator, ``"SimSwap"``) -> its predictions, in the
            order the tables should list them. Each set is all seen (DFA labels >= 0) or all
            unseen (-1).
        tau: open-set threshold in (0, 1].
        pair_reals: the real set(s) that give an all-fake set its negatives for detection AUC,
            EER, AP and video AUC. A name (e.g. ``"FFHQ"``) pairs every all-fake set with it; a
            mapping pairs named sets only (e.g. seen fakes with ``"CelebA-HQ"``, unseen with
            ``"FFHQ"``). ``None``: all-fake sets get no AUC.

    Returns:
        The :class:`EvaluationReport`.

    Raises:
        DataError: a set is empty, malformed, mixes seen and unseen samples, or the pairing names
            a missing set, a set that is not all real, or one that is not all fake.
        ConfigError: ``tau`` is outside (0, 1].
    """
    if not per_set:
        raise DataError("no test sets to evaluate; check that the manifest has rows in the test split")
    _check_tau(tau)
    checked = {name: _check_set(name, preds, tau) for name, preds in per_set.items()}
    heads = next(iter(checked.values())).heads
    odd = next((c for c in checked.values() if c.heads != heads), None)
    if odd is not None:
        raise DataError(
            f"test set '{odd.name}' has probabilities of {list(odd.heads)} but others of {list(heads)}; "
            "give every set the same experts' outputs"
        )
    pairing = _resolve_pairing(checked, pair_reals)
    attribution, detection = "attribution" in heads, "detection" in heads

    seen_sets = [c for c in checked.values() if c.kind == "seen"]
    known_scores = np.concatenate([c.top for c in seen_sets]) if seen_sets and attribution else np.zeros(0)
    known_correct = (
        np.concatenate([c.closed_correct for c in seen_sets])
        if seen_sets and attribution
        else np.zeros(0, bool)
    )

    # Per-set video means, so that pairing never merges two sets' videos that share an id.
    videos = {
        name: video_level(c.p_fake, c.dfd, c.video_ids, f"test set '{name}'")
        for name, c in checked.items()
        if detection
    }
    results = []
    for name, c in checked.items():
        paired_with = pairing.get(name)
        unseen = c.kind == "unseen"
        detection_metrics = dict.fromkeys(("detection_auc", "detection_eer", "detection_ap", "video_auc"))
        if detection:
            labels, scores = c.dfd, c.p_fake
            video_scores, video_labels = videos[name]
            if paired_with is not None:
                r = checked[paired_with]
                labels, scores = np.r_[labels, r.dfd], np.r_[scores, r.p_fake]
                video_scores = np.r_[video_scores, videos[paired_with][0]]
                video_labels = np.r_[video_labels, videos[paired_with][1]]
            detection_metrics = {
                "detection_auc": roc_auc(labels, scores),
                "detection_eer": equal_error_rate(labels, scores),
                "detection_ap": average_precision(labels, scores),
                "video_auc": roc_auc(video_labels, video_scores),
            }
        results.append(
            SetMetrics(
                name=name,
                kind=c.kind,
                num_samples=int(c.dfa.size),
                open_set_acc=float(np.mean(c.open_correct)) if attribution else None,
                closed_set_acc=None if unseen or not attribution else float(np.mean(c.closed_correct)),
                detection_acc=c.detection_acc,
                **detection_metrics,
                num_videos=int(np.unique(c.video_ids[c.video_ids != ""]).size),
                paired_with=paired_with if detection else None,
                unknown_auroc=unknown_auroc(known_scores, c.top) if unseen and attribution else None,
                oscr=oscr(known_scores, known_correct, c.top) if unseen and attribution else None,
            )
        )

    unseen_sets = [c for c in checked.values() if c.kind == "unseen"]
    unknown_scores = (
        np.concatenate([c.top for c in unseen_sets]) if unseen_sets and attribution else np.zeros(0)
    )
    return EvaluationReport(
        tau=float(tau),
        sets=tuple(results),
        unseen_average=_group_average("unseen", results),
        seen_average=_group_average("seen", results),
        unknown_auroc=unknown_auroc(known_scores, unknown_scores),
        oscr=oscr(known_scores, known_correct, unknown_scores),
        heads=heads,
    )


# --- robustness ---------------------------------------------------------------------------


def robustness_from_reports(
    clean: EvaluationReport,
    corrupted: Mapping[tuple[str, int], EvaluationReport],
    metric: str = "unseen.open_set_acc",
) -> RobustnessResult:
    """Collect one averaged metric per corruption and severity (the paper's Fig. 6).

    Args:
        clean: the report on uncorrupted data (severity 0 of every corruption).
        corrupted: (corruption name, severity >= 1) -> the report on that corrupted data. Every
            corruption must have the same severities.
        metric: ``"<group>.<field>"``, group ``unseen`` or ``seen`` and field one of
            :data:`AVERAGED_METRICS`. The default, open-set attribution ACC averaged over the
            unseen sets, is what Fig. 6 plots.

    Returns:
        The :class:`RobustnessResult`, corruptions in first-seen order, severities ascending.
    """
    group, _, field = metric.partition(".")
    if group not in ("unseen", "seen") or field not in AVERAGED_METRICS:
        options = [f"{g}.{f}" for g in ("unseen", "seen") for f in AVERAGED_METRICS]
        close = difflib.get_close_matches(metric, options, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(
            f"unknown robustness metric '{metric}'{hint}; use <unseen|seen>.<{'|'.join(AVERAGED_METRICS)}>"
        )
    if not corrupted:
        raise DataError("no corrupted evaluations to collect; give at least one corruption and severity")

    def pick(report: EvaluationReport) -> float | None:
        average = report.unseen_average if group == "unseen" else report.seen_average
        return None if average is None else getattr(average, field)

    per_corruption: dict[str, dict[int, EvaluationReport]] = {}
    for (name, severity), report in corrupted.items():
        if severity < 1:
            raise DataError(
                f"corruption '{name}' at severity {severity}: severities start at 1 (0 is the clean data)"
            )
        per_corruption.setdefault(name, {})[int(severity)] = report
    severities = sorted(next(iter(per_corruption.values())))
    for name, by_severity in per_corruption.items():
        if sorted(by_severity) != severities:
            raise DataError(
                f"corruption '{name}' has severities {sorted(by_severity)} but others have {severities}; "
                "evaluate every corruption at the same severities"
            )
    return RobustnessResult(
        metric=metric,
        corruptions=tuple(per_corruption),
        severities=(0, *severities),
        values=tuple(
            (pick(clean), *(pick(by_severity[s]) for s in severities))
            for by_severity in per_corruption.values()
        ),
    )


# --- JSON helpers -------------------------------------------------------------------------


def _average_to_dict(average: GroupAverage | None) -> dict[str, Any] | None:
    if average is None:
        return None
    data = asdict(average)
    data["sets"] = list(average.sets)
    return data


def _average_from_dict(data: Mapping[str, Any] | None) -> GroupAverage | None:
    if data is None:
        return None
    values = {f.name: data[f.name] for f in fields(GroupAverage)}
    values["sets"] = tuple(values["sets"])
    return GroupAverage(**values)


def _check_format(data: Mapping[str, Any], expected: str, where: str) -> None:
    found = data.get("format") if isinstance(data, Mapping) else None
    if found != expected:
        raise DataError(
            f"{where}: format is {found!r}, expected {expected!r}; write it again with gazeclip evaluate"
        )
