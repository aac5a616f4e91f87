"""Metrics against cases small enough to work out by hand; the working is in the comments."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from gazeclip_cli.core.errors import ConfigError, DataError
from gazeclip_cli.core.evaluate.metrics import (
    AVERAGE_KEYS,
    AVERAGED_METRICS,
    EvaluationReport,
    GroupAverage,
    RobustnessResult,
    SetPredictions,
    average_precision,
    closed_set_accuracy,
    detection_accuracy,
    equal_error_rate,
    evaluate_sets,
    expert_of,
    open_set_accuracy,
    open_set_correct,
    oscr,
    robustness_from_reports,
    roc_auc,
    unknown_auroc,
    video_level,
)

# --- open-set attribution ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_open_set_correct_at_and_around_the_threshold(dtype):
    probs = np.array(
        [
            [0.05, 0.9, 0.05],  # seen, label 1, top exactly tau: known and right -> correct
            [0.1, 0.8, 0.1],  # seen, label 1, top 0.8 < tau: "unknown" -> wrong
            [0.02, 0.95, 0.03],  # seen, label 0, confident but wrong class -> wrong
            [0.05, 0.9, 0.05],  # unseen, top exactly tau counts as known -> wrong
            [0.3, 0.4, 0.3],  # unseen, top 0.4 < tau: unknown -> correct
        ],
        dtype=dtype,
    )
    labels = np.array([1, 1, 0, -1, -1])
    assert open_set_correct(probs, labels, 0.9).tolist() == [True, False, False, False, True]
    # tau as a float64 scalar: float32(0.9) < float64(0.9), yet the float32 prediction stays known.
    assert open_set_correct(probs, labels, np.float64(0.9)).tolist() == [True, False, False, False, True]
    assert open_set_accuracy(probs[:3], labels[:3], 0.9) == pytest.approx(1 / 3)
    assert open_set_accuracy(probs[3:], labels[3:], 0.9) == pytest.approx(1 / 2)
    # A lower threshold turns the 0.8 prediction into a known, correct one.
    assert open_set_correct(probs, labels, 0.75).tolist() == [True, True, False, False, True]


def test_closed_set_accuracy_uses_seen_samples_only():
    probs = np.array([[0.1, 0.8, 0.1], [0.02, 0.95, 0.03], [0.2, 0.1, 0.7], [0.9, 0.05, 0.05]])
    labels = np.array([1, 0, 2, -1])
    # argmax 1, 1, 2 against labels 1, 0, 2 -> 2 of 3; the unseen sample does not count.
    assert closed_set_accuracy(probs, labels) == pytest.approx(2 / 3)
    assert closed_set_accuracy(probs[3:], labels[3:]) is None


def test_detection_accuracy_is_argmax():
    probs = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.5, 0.5]])
    # predictions real, fake, real, real (a tie goes to column 0) against 0, 1, 1, 1 -> 2 of 4
    assert detection_accuracy(probs, np.array([0, 1, 1, 1])) == pytest.approx(0.5)


# --- detection: AUC, EER, AP ----------------------------------------------------------------


def test_auc_eer_ap_hand_case():
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.6, 0.4, 0.9])
    # (fake, real) pairs ranked right: (0.4, 0.1), (0.9, 0.1), (0.9, 0.6) -> 3 of 4
    assert roc_auc(labels, scores) == pytest.approx(0.75)
    # ROC (fpr, fnr): (0, 1), (0, .5), (.5, .5), ... -> FPR = FNR = 0.5 at a vertex
    assert equal_error_rate(labels, scores) == pytest.approx(0.5)
    # ranked 0.9 fake (precision 1 at recall .5), 0.6 real, 0.4 fake (precision 2/3 at recall 1)
    assert average_precision(labels, scores) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_eer_is_interpolated_between_roc_points():
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.2, 0.5, 0.5, 0.8])
    # ROC (fpr, fnr): (0, 1), (0, .5), (.5, 0), (1, 0); FNR - FPR goes .5 -> -.5 on the segment
    # from (0, .5) to (.5, 0), crossing halfway at fpr = fnr = 0.25. The nearest vertex would say 0 or 0.5.
    assert equal_error_rate(labels, scores) == pytest.approx(0.25)
    # pairs: 0.5 vs 0.2 right, 0.5 vs 0.5 tie (1/2), 0.8 vs both right -> 3.5 / 4
    assert roc_auc(labels, scores) == pytest.approx(0.875)


def test_perfect_and_one_class_detection():
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.8, 0.9])
    assert roc_auc(labels, scores) == 1.0
    assert equal_error_rate(labels, scores) == 0.0
    assert average_precision(labels, scores) == 1.0
    all_fake = np.array([1, 1])
    assert roc_auc(all_fake, scores[:2]) is None
    assert equal_error_rate(all_fake, scores[:2]) is None
    assert average_precision(all_fake, scores[:2]) is None


# --- open-set literature: AUROC and OSCR --------------------------------------------------


def test_unknown_auroc_hand_case():
    # (known, unknown) pairs with known higher: 0.95 > both, 0.8 > both, 0.6 > 0.5 only -> 5 / 6
    assert unknown_auroc(np.array([0.95, 0.8, 0.6]), np.array([0.7, 0.5])) == pytest.approx(5 / 6)
    assert unknown_auroc(np.array([0.9]), np.array([0.9])) == pytest.approx(0.5)
    assert unknown_auroc(np.array([0.9]), np.array([])) is None


def test_oscr_hand_case():
    # Ranked: 0.9 known right, 0.8 unknown, 0.7 known wrong, 0.6 known right, 0.5 unknown.
    # (FPR, CCR): (0, 0) (0, 1/3) (1/2, 1/3) (1/2, 1/3) (1/2, 2/3) (1, 2/3)
    # area = 1/2 * 1/3 + 1/2 * 2/3 = 1/2
    value = oscr(np.array([0.9, 0.7, 0.6]), np.array([True, False, True]), np.array([0.8, 0.5]))
    assert value == pytest.approx(0.5)


def test_oscr_with_perfect_separation_is_closed_set_accuracy():
    known = np.array([0.99, 0.95, 0.92, 0.91])
    correct = np.array([True, True, False, True])
    assert oscr(known, correct, np.array([0.5, 0.3])) == pytest.approx(0.75)


def test_oscr_ties_give_a_straight_segment():
    # One known (right) and one unknown with the same score: (0, 0) -> (1, 1), area 1/2.
    assert oscr(np.array([0.8]), np.array([True]), np.array([0.8])) == pytest.approx(0.5)
    assert oscr(np.array([0.8]), np.array([True]), np.array([])) is None


# --- video level ---------------------------------------------------------------------------


def test_video_level_averages_frames_and_skips_stills():
    scores = np.array([0.2, 0.4, 0.9, 0.5, 0.1, 0.3, 0.99])
    labels = np.array([0, 0, 1, 1, 1, 1, 1])
    ids = ["a", "a", "b", "b", "c", "c", ""]  # the last is a still image
    means, video_labels = video_level(scores, labels, ids)
    assert means.tolist() == pytest.approx([0.3, 0.7, 0.2])
    assert video_labels.tolist() == [0, 1, 1]
    # fakes 0.7 and 0.2 against real 0.3: one pair of two ranked right
    assert roc_auc(video_labels, means) == pytest.approx(0.5)


def test_video_with_two_labels_is_an_error():
    with pytest.raises(DataError, match="video 'a'"):
        video_level(np.array([0.1, 0.9]), np.array([0, 1]), ["a", "a"])


# --- per-set evaluation, averaging and pairing --------------------------------------------


def test_per_set_values_and_unseen_averages(hand_sets):
    report = evaluate_sets(hand_sets, tau=0.9, pair_reals="FFHQ")
    x = report.set("UnseenX")
    assert x.kind == "unseen" and x.num_samples == 4
    # tops 0.5, 0.6, 0.95, 0.7 -> unknown, unknown, known, unknown -> 3 of 4
    assert x.open_set_acc == pytest.approx(0.75)
    assert x.closed_set_acc is None
    assert x.detection_acc == pytest.approx(0.75)  # P(fake) 0.8, 0.3, 0.6, 0.9 vs all fake
    # fakes 0.8, 0.3, 0.6, 0.9 against FFHQ reals 0.1, 0.4: 0.3 loses to 0.4 only -> 7 / 8
    assert x.paired_with == "FFHQ"
    assert x.detection_auc == pytest.approx(7 / 8)
    # ROC (fpr, fnr) ... (0, .25) -> (.5, .25): FNR - FPR crosses zero at fpr .25
    assert x.detection_eer == pytest.approx(0.25)
    # ranked P P P N P N: precisions 1, 1, 1, 4/5 -> 0.95
    assert x.detection_ap == pytest.approx(0.95)
    y = report.set("UnseenY")
    assert y.open_set_acc == pytest.approx(0.5)
    assert y.detection_acc == 0.0
    assert y.detection_auc == pytest.approx(3 / 4)  # 0.45 beats both reals, 0.2 beats 0.1
    ffhq = report.set("FFHQ")
    assert ffhq.open_set_acc == pytest.approx(0.5) and ffhq.detection_acc == 1.0
    assert ffhq.detection_auc is None and ffhq.paired_with is None

    avg = report.unseen_average
    assert avg.sets == ("FFHQ", "UnseenX", "UnseenY")
    # attribution over unseen sets including FFHQ: (0.5 + 0.75 + 0.5) / 3
    assert avg.open_set_acc == pytest.approx(1.75 / 3)
    assert avg.detection_acc == pytest.approx((1.0 + 0.75 + 0.0) / 3)
    # AUC is averaged where defined: the two fake sets
    assert avg.detection_auc == pytest.approx((7 / 8 + 3 / 4) / 2)


def test_seen_sets_and_open_set_scores(hand_sets):
    report = evaluate_sets(hand_sets, tau=0.9, pair_reals={"GenA": "CelebA-HQ", "UnseenX": "FFHQ"})
    real, gen = report.set("CelebA-HQ"), report.set("GenA")
    assert (real.open_set_acc, real.closed_set_acc, real.detection_acc) == pytest.approx((0.5, 1.0, 0.5))
    assert (gen.open_set_acc, gen.closed_set_acc, gen.detection_acc) == pytest.approx((0.5, 0.5, 1.0))
    # GenA fakes 0.9, 0.6 against CelebA-HQ reals 0.2, 0.7: 0.6 loses to 0.7 -> 3 / 4
    assert gen.detection_auc == pytest.approx(0.75) and gen.paired_with == "CelebA-HQ"
    assert report.set("UnseenY").detection_auc is None  # not in the mapping
    seen = report.seen_average
    assert (seen.open_set_acc, seen.closed_set_acc, seen.detection_acc) == pytest.approx((0.5, 0.75, 0.75))
    assert gen.unknown_auroc is None and gen.oscr is None

    # Knowns: tops 0.95 (right), 0.6 (right), 0.92 (right), 0.7 (wrong).
    ffhq = report.set("FFHQ")
    # unknowns 0.5, 0.91: 0.95 and 0.92 beat both, 0.6 and 0.7 beat 0.5 only -> 6 / 8
    assert ffhq.unknown_auroc == pytest.approx(0.75)
    # ranked .95 K+ .92 K+ .91 U .7 K- .6 K+ .5 U -> (0,.5) (.5,.5) (.5,.75) (1,.75): area .625
    assert ffhq.oscr == pytest.approx(0.625)
    x = report.set("UnseenX")
    # unknowns .5 .6 .95 .7 against knowns: 3.5 + 1.5 + 3 + 2.5 of 16 pairs (ties count 1/2)
    assert x.unknown_auroc == pytest.approx(10.5 / 16)
    # (FPR, CCR): (0,0) (.25,.25) (.25,.5) (.5,.5) (.75,.75) (1,.75) -> area 0.5
    assert x.oscr == pytest.approx(0.5)
    # pooled: 6 + 10.5 + 4 of 32 pairs
    assert report.unknown_auroc == pytest.approx(20.5 / 32)


def test_without_pairing_all_fake_sets_have_no_auc(hand_sets):
    report = evaluate_sets(hand_sets)
    assert report.tau == 0.9
    assert all(s.detection_auc is None and s.paired_with is None for s in report.sets)
    assert report.unseen_average.detection_auc is None


def test_set_with_both_classes_uses_its_own_labels_and_videos():
    n = 6
    probs = np.tile([0.5, 0.3, 0.2], (n, 1))
    p_fake = np.array([0.2, 0.4, 0.9, 0.5, 0.1, 0.3])
    preds = SetPredictions(
        probs,
        np.stack([1 - p_fake, p_fake], axis=1),
        np.full(n, -1),
        np.array([0, 0, 1, 1, 1, 1]),
        video_ids=["a", "a", "b", "b", "c", "c"],
    )
    s = evaluate_sets({"Celeb-DF": preds}, pair_reals=None).set("Celeb-DF")
    # frame level: fakes .9 .5 .1 .3 against reals .2 .4 -> 2 + 2 + 0 + 1 = 5 of 8
    assert s.detection_auc == pytest.approx(5 / 8)
    # video level: fakes .7, .2 against real .3 -> 1 of 2
    assert s.video_auc == pytest.approx(0.5) and s.num_videos == 3


@pytest.mark.parametrize(
    "pair_reals, message",
    [
        ("FFHQX", "did you mean 'FFHQ'"),
        ("UnseenX", "not all real"),
        ({"CelebA-HQ": "FFHQ"}, "not all fake"),
        ({"UnseenX": "Nope"}, "no test set named 'Nope'"),
    ],
)
def test_bad_pairing_is_a_data_error(hand_sets, pair_reals, message):
    with pytest.raises(DataError, match=message):
        evaluate_sets(hand_sets, pair_reals=pair_reals)


def test_malformed_sets_are_data_errors():
    probs = np.array([[0.5, 0.3, 0.2], [0.95, 0.03, 0.02]])
    det = np.array([[0.5, 0.5], [0.5, 0.5]])
    with pytest.raises(DataError, match="mixes seen"):
        evaluate_sets({"s": SetPredictions(probs, det, np.array([-1, 0]), np.array([0, 0]))})
    with pytest.raises(DataError, match="softmax"):
        evaluate_sets({"s": SetPredictions(probs * 3, det, np.array([0, 0]), np.array([0, 0]))})
    with pytest.raises(DataError, match="detection_probs"):
        evaluate_sets({"s": SetPredictions(probs, det[:1], np.array([0, 0]), np.array([0, 0]))})
    with pytest.raises(DataError, match="dfa_labels"):
        evaluate_sets({"s": SetPredictions(probs, det, np.array([0, 3]), np.array([0, 0]))})
    with pytest.raises(DataError, match="no test sets"):
        evaluate_sets({})
    with pytest.raises(ConfigError, match="tau"):
        evaluate_sets({"s": SetPredictions(probs, det, np.array([0, 0]), np.array([0, 0]))}, tau=1.5)


# --- report round trip and robustness ------------------------------------------------------


def test_report_dict_round_trip(hand_sets):
    report = evaluate_sets(hand_sets, pair_reals="FFHQ")
    assert EvaluationReport.from_dict(report.to_dict()) == report
    with pytest.raises(DataError, match="format"):
        EvaluationReport.from_dict({"tau": 0.9})


def test_robustness_collects_the_unseen_average(hand_sets):
    clean = evaluate_sets(hand_sets, tau=0.9)
    strict = evaluate_sets(hand_sets, tau=0.99)  # more predictions fall below tau
    result = robustness_from_reports(
        clean,
        {("jpeg", 1): strict, ("jpeg", 2): clean, ("gaussian_blur", 1): clean, ("gaussian_blur", 2): strict},
    )
    assert result.corruptions == ("jpeg", "gaussian_blur")
    assert result.severities == (0, 1, 2)
    clean_acc = clean.unseen_average.open_set_acc
    strict_acc = strict.unseen_average.open_set_acc
    assert result.values == ((clean_acc, strict_acc, clean_acc), (clean_acc, clean_acc, strict_acc))
    # at tau 0.99 only UnseenY's 0.99 stays known: (1 + 1 + 0.5) / 3
    assert strict_acc == pytest.approx(2.5 / 3)


def test_robustness_errors(hand_sets):
    clean = evaluate_sets(hand_sets)
    with pytest.raises(DataError, match="same severities"):
        robustness_from_reports(clean, {("jpeg", 1): clean, ("jpeg", 2): clean, ("resize", 1): clean})
    with pytest.raises(ConfigError, match="did you mean 'unseen.open_set_acc'"):
        robustness_from_reports(clean, {("jpeg", 1): clean}, metric="unseen.open_set_ac")


def test_importing_metrics_does_not_import_sklearn():
    code = "import sys, gazeclip_cli.core.evaluate.metrics; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- which expert gives which metric; one-expert reports (Fig. 9) ---------------------------


def test_expert_of_every_averaged_metric():
    attribution = {"open_set_acc", "closed_set_acc", "unknown_auroc", "oscr"}
    for metric in AVERAGED_METRICS:
        assert expert_of(metric) == ("attribution" if metric in attribution else "detection")
    assert expert_of("detection_eer") == "detection" and expert_of("oscr") == "attribution"


def _one_expert(sets, keep: str):
    return {
        name: SetPredictions(
            p.attribution_probs if keep == "attribution" else None,
            p.detection_probs if keep == "detection" else None,
            p.dfa_labels,
            p.dfd_labels,
            p.video_ids,
        )
        for name, p in sets.items()
    }


@pytest.mark.parametrize("keep", ["attribution", "detection"])
def test_one_expert_report_has_that_experts_numbers_and_none_else(hand_sets, keep):
    both = evaluate_sets(hand_sets, pair_reals="FFHQ")
    one = evaluate_sets(_one_expert(hand_sets, keep), pair_reals="FFHQ")
    assert one.heads == (keep,)
    for s_both, s_one in zip(both.sets, one.sets, strict=True):
        for metric in AVERAGED_METRICS:
            expected = getattr(s_both, metric) if expert_of(metric) == keep else None
            assert getattr(s_one, metric) == expected, (s_one.name, metric)
        assert s_one.paired_with == (s_both.paired_with if keep == "detection" else None)
    assert (one.unknown_auroc, one.oscr) == (
        (both.unknown_auroc, both.oscr) if keep == "attribution" else (None, None)
    )
    assert EvaluationReport.from_dict(one.to_dict()) == one


# --- pooled open-set scores, averages and the report's JSON ---------------------------------


def test_pooled_oscr_and_group_kinds(hand_sets):
    report = evaluate_sets(hand_sets, pair_reals="FFHQ")
    # Knowns .95+ .92+ .6+ .7-; unknowns .99 .95 .91 .7 .6 .5 .5 .4. (FPR, CCR) at each distinct
    # score: (1/8, 0) (2/8, 1/4) (2/8, 1/2) (3/8, 1/2) (4/8, 1/2) (5/8, 3/4) (7/8, 3/4) (1, 3/4)
    # -> trapezoids 1/64 + 4/64 + 4/64 + 5/64 + 12/64 + 6/64 = 1/2
    assert report.oscr == pytest.approx(0.5)
    assert (report.seen_average.kind, report.unseen_average.kind) == ("seen", "unseen")
    seen_only = evaluate_sets({k: hand_sets[k] for k in ("CelebA-HQ", "GenA")})
    assert seen_only.unseen_average is None
    assert (seen_only.unknown_auroc, seen_only.oscr) == (None, None)


def test_averages_names_every_defined_average(hand_sets):
    report = evaluate_sets(hand_sets)  # unpaired: no set defines a detection AUC, EER, AP
    averages = report.averages()
    assert averages["seen_closed_set_acc"] == pytest.approx(0.75)
    assert averages["unseen_open_set_acc"] == pytest.approx(1.75 / 3)
    assert averages["unseen_oscr"] == pytest.approx(report.unseen_average.oscr)
    expected = {
        f"{group}_{metric}"
        for group, average in (("seen", report.seen_average), ("unseen", report.unseen_average))
        for metric in AVERAGED_METRICS
        if getattr(average, metric) is not None
    }
    assert set(averages) == expected
    assert "unseen_detection_auc" not in averages and "seen_unknown_auroc" not in averages
    assert set(averages) <= set(AVERAGE_KEYS)
    seen_only = evaluate_sets({k: hand_sets[k] for k in ("CelebA-HQ", "GenA")}).averages()
    assert not any(key.startswith("unseen_") for key in seen_only)


def test_report_dict_layout_and_older_reports(hand_sets):
    data = evaluate_sets(hand_sets, pair_reals="FFHQ").to_dict()
    assert data["heads"] == ["attribution", "detection"]
    assert set(data["seen_average"]) == {f.name for f in dataclasses.fields(GroupAverage)}
    assert data["seen_average"]["sets"] == ["CelebA-HQ", "GenA"]
    assert json.loads(json.dumps(data)) == data
    older = {k: v for k, v in data.items() if k != "heads"}  # written before Fig. 9: both experts
    assert EvaluationReport.from_dict(older).heads == ("attribution", "detection")


def test_report_and_robustness_read_errors_are_exact():
    def exactly(message):
        return f"^{re.escape(message)}$"

    fmt = "format is None, expected 'gazeclip-evaluation/1'; write it again with gazeclip evaluate"
    with pytest.raises(DataError, match=exactly(f"evaluation report: {fmt}")):
        EvaluationReport.from_dict({"tau": 0.9})
    with pytest.raises(DataError, match=exactly(f"evaluation report: {fmt}")):
        EvaluationReport.from_dict([0.9])
    with pytest.raises(DataError, match=exactly(f"r.json: {fmt}")):
        EvaluationReport.from_dict({}, where="r.json")
    with pytest.raises(
        DataError, match=r"^evaluation report: malformed evaluation report \('sets'\); write it"
    ):
        EvaluationReport.from_dict({"format": "gazeclip-evaluation/1", "tau": 0.9})
    fmt = "format is None, expected 'gazeclip-robustness/1'; write it again with gazeclip evaluate"
    with pytest.raises(DataError, match=exactly(f"robustness result: {fmt}")):
        RobustnessResult.from_dict({})
    with pytest.raises(
        DataError, match=r"^robustness result: malformed robustness result \('metric'\); write"
    ):
        RobustnessResult.from_dict({"format": "gazeclip-robustness/1"})
    grid = {"format": "gazeclip-robustness/1", "metric": "m", "corruptions": ["a"], "severities": [0, 1]}
    with pytest.raises(
        DataError,
        match=exactly(
            "robustness result: values do not form a 1 x 2 grid (corruptions x severities); "
            "write it again with gazeclip evaluate"
        ),
    ):
        RobustnessResult.from_dict({**grid, "values": [[0.5]]})


def test_unknown_set_name_in_a_report(hand_sets):
    report = evaluate_sets(hand_sets)
    with pytest.raises(
        DataError, match=r"^evaluation report: no test set named 'GenX' \(did you mean 'GenA'\?\)$"
    ):
        report.set("GenX")


def test_open_set_accuracy_uses_the_given_tau():
    probs = np.array([[0.85, 0.15], [0.2, 0.8]])
    labels = np.array([0, 1])
    assert open_set_accuracy(probs, labels) == 0.0  # default tau 0.9: both unknown
    assert open_set_accuracy(probs, labels, 0.8) == 1.0


def test_eer_interpolates_between_two_inner_roc_points():
    # Reals .1 .4 .6 .65, fakes .3 .5 .8. ROC (fpr, fnr): (0, 1) (0, 2/3) (1/4, 2/3) (1/2, 2/3)
    # (1/2, 1/3) ...: FNR - FPR goes 1/6 -> -1/6 on the vertical segment at fpr 1/2, where
    # FNR passes 1/2: EER 1/2 (not the neighbouring vertex's 1/4 or the segment's far end).
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.4, 0.6, 0.65, 0.3, 0.5, 0.8])
    assert equal_error_rate(labels, scores) == pytest.approx(0.5)
    # Reals .1 .5, fakes .3 .7 .9: (0, 1) (0, 2/3) (0, 1/3) (1/2, 1/3) (1/2, 0): crossing at
    # fpr 1/3 on the segment from (0, 1/3) to (1/2, 1/3): EER 1/3.
    assert equal_error_rate(np.array([0, 0, 1, 1, 1]), np.array([0.1, 0.5, 0.3, 0.7, 0.9])) == pytest.approx(
        1 / 3
    )


def test_video_level_single_frame_videos_and_default_where():
    means, labels = video_level(np.array([0.4, 0.8, 0.6]), np.array([1, 0, 0]), ["a", "b", "b"])
    assert means.tolist() == pytest.approx([0.4, 0.7]) and labels.tolist() == [1, 0]
    message = (
        "test set: video 'a' has frames labelled both real and fake; give each video one detection label in "
        "the manifest"
    )
    with pytest.raises(DataError, match=f"^{re.escape(message)}$"):
        video_level(np.array([0.1, 0.9]), np.array([0, 1]), ["a", "a"])


def test_paired_video_auc_joins_both_sets_videos():
    # All-fake set: videos f1 (.9, .7 -> .8), f2 (.3 -> .3); real set: r1 (.2, .3 -> .25), r2 (.6 -> .6).
    def det(p):
        p = np.array(p)
        return np.stack([1 - p, p], 1)

    attr = np.tile([0.8, 0.1, 0.1], (3, 1))
    sets = {
        "Fake": SetPredictions(
            attr, det([0.9, 0.7, 0.3]), np.full(3, -1), np.ones(3, int), ["f1", "f1", "f2"]
        ),
        "Real": SetPredictions(
            attr, det([0.2, 0.3, 0.6]), np.full(3, -1), np.zeros(3, int), ["r1", "r1", "r2"]
        ),
    }
    fake = evaluate_sets(sets, pair_reals="Real").set("Fake")
    # video pairs (fake, real): (.8, .25) (.8, .6) (.3, .25) right, (.3, .6) wrong -> 3 / 4
    assert fake.video_auc == pytest.approx(3 / 4)
    assert fake.num_videos == 2 and fake.paired_with == "Real"


# --- robustness: the seen group, missing groups, exact errors --------------------------------


def test_robustness_of_a_seen_metric_and_of_a_missing_group(hand_sets):
    clean = evaluate_sets(hand_sets, tau=0.9)
    strict = evaluate_sets(hand_sets, tau=0.99)
    result = robustness_from_reports(clean, {("jpeg", 1): strict}, metric="seen.open_set_acc")
    # seen open-set ACC: CelebA-HQ 1/2 and GenA 1/2 at tau 0.9; none of their tops reaches 0.99
    assert result.metric == "seen.open_set_acc"
    assert result.values == ((0.5, 0.0),)
    assert robustness_from_reports(clean, {("jpeg", 1): strict}).metric == "unseen.open_set_acc"
    unseen_only = evaluate_sets({k: hand_sets[k] for k in ("FFHQ", "UnseenX")})
    gap = robustness_from_reports(unseen_only, {("jpeg", 1): unseen_only}, metric="seen.closed_set_acc")
    assert gap.values == ((None, None),)


def test_robustness_errors_are_exact(hand_sets):
    clean = evaluate_sets(hand_sets)

    def exactly(message):
        return f"^{re.escape(message)}$"

    usage = f"use <unseen|seen>.<{'|'.join(AVERAGED_METRICS)}>"
    with pytest.raises(ConfigError, match=exactly(f"unknown robustness metric 'banana'; {usage}")):
        robustness_from_reports(clean, {("jpeg", 1): clean}, metric="banana")
    with pytest.raises(
        ConfigError,
        match=exactly(
            f"unknown robustness metric 'seen.closed_set_ac' (did you mean 'seen.closed_set_acc'?); {usage}"
        ),
    ):
        robustness_from_reports(clean, {("jpeg", 1): clean}, metric="seen.closed_set_ac")
    with pytest.raises(
        DataError,
        match=exactly("no corrupted evaluations to collect; give at least one corruption and severity"),
    ):
        robustness_from_reports(clean, {})
    with pytest.raises(
        DataError,
        match=exactly("corruption 'jpeg' at severity 0: severities start at 1 (0 is the clean data)"),
    ):
        robustness_from_reports(clean, {("jpeg", 0): clean})
    with pytest.raises(
        DataError,
        match=exactly(
            "corruption 'resize' has severities [1] but others have [1, 2]; "
            "evaluate every corruption at the same severities"
        ),
    ):
        robustness_from_reports(clean, {("jpeg", 1): clean, ("jpeg", 2): clean, ("resize", 1): clean})
