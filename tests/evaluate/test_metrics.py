"""Metrics against cases small enough to work out by hand; the working is in the comments."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from gazeclip_cli.core.errors import ConfigError, DataError
from gazeclip_cli.core.evaluate.metrics import (
    EvaluationReport,
    SetPredictions,
    average_precision,
    closed_set_accuracy,
    detection_accuracy,
    equal_error_rate,
    evaluate_sets,
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
