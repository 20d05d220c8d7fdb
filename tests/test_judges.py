"""Verdicts on hand-made measurements: each check's judge at the edges of its thresholds.

Judges are pure (a measurement and thresholds in, a Verdict out), so these take milliseconds; the
end-to-end tests in test_check_*.py keep a planted defect and a clean case per check on real data.
"""

from __future__ import annotations

import numpy as np
import pytest

from dnncheck.checks.base import ProbeGap
from dnncheck.errors import ProbeCutShort
from dnncheck.results import Status


def stats(mean, std, lo, hi) -> dict:
    return {k: np.asarray(v, dtype=np.float64) for k, v in dict(mean=mean, std=std, min=lo, max=hi).items()}


CUT_SHORT = ProbeGap(str(ProbeCutShort("fit", 3, 9, 1.0, 9)), True,
                     {"inconclusive": True, "probe": "fit", "steps_done": 3, "steps_planned": 9,
                      "spent_seconds": 1.0, "suggested_budget_seconds": 9})


# -- DNC2 normalization ------------------------------------------------------------------------
def _norm(st, is_image=False, names=("a", "b"), **kw):
    from dnncheck.checks.normalization import Normalization, NormalizationMeasurement

    m = NormalizationMeasurement(is_image, tuple(names), st, "auto", {"mode": "none"}, ("train", "val"), **kw)
    return Normalization.judge(m, Normalization.Thresholds())


@pytest.mark.parametrize("top, status", [(20.0, Status.PASS), (20.01, Status.FAIL)])
def test_normalization_max_abs_value_edge(top, status):
    v = _norm(stats([0, 0], [1, 1], [-1, -top], [1, 1]))
    assert v.status is status
    if status is Status.FAIL:
        assert v.summary.startswith("input values up to 20.01 reach the model") and ":" not in v.summary


def test_normalization_names_raw_pixels():
    v = _norm(stats([120], [60], [0], [255]), is_image=True, names=("channel 0",))
    assert v.status is Status.FAIL and v.summary.startswith("pixel values still in 0..255")


@pytest.mark.parametrize("ratio, status", [(9.99, Status.PASS), (10.0, Status.WARN), (99.9, Status.WARN),
                                           (100.0, Status.FAIL)])
def test_normalization_feature_scale_ratio_edges(ratio, status):
    v = _norm(stats([0, 0], [1.0, 1.0 / ratio], [-1, -1], [1, 1]))
    assert v.status is status and v.metrics["feature_scale_ratio"] == round(ratio, 2)


@pytest.mark.parametrize("mean, std, status", [(1.0, 1.0, Status.PASS), (1.01, 1.0, Status.WARN),
                                               (0.0, 0.1, Status.PASS), (0.0, 0.099, Status.WARN),
                                               (0.0, 10.0, Status.PASS), (0.0, 10.01, Status.WARN)])
def test_normalization_centre_and_scale_edges(mean, std, status):
    v = _norm(stats([mean], [std], [-1], [1]), is_image=True, names=("channel 0",))
    assert v.status is status


def test_normalization_pooled_statistics_leak():
    pooled, train = stats([0, 0], [1, 1], [-2, -2], [2, 2]), stats([0.05, -0.03], [0.98, 1.02], [-2, -2], [2, 2])
    v = _norm(stats([0.05, -0.03], [0.98, 1.02], [-2, -2], [2, 2]), all_stats=pooled, train_stats=train)
    assert v.status is Status.WARN and "all splits together" in v.summary
    assert _norm(stats([0, 0], [1, 1], [-2, -2], [2, 2]), all_stats=pooled, train_stats=pooled).status is Status.PASS


@pytest.mark.parametrize("fed_steps, status", [(28, Status.PASS), (29, Status.WARN)])  # slowdown 1.95, 2.00
def test_normalization_probe_slowdown_edge(fed_steps, status):
    from dnncheck.checks.normalization import ProbeCurves

    steps = 200
    zscored = np.r_[np.linspace(2, 0.5, 10), np.full(steps - 10, 0.5)]  # reaches 0.5 at step 10
    fed = np.r_[np.linspace(2, 0.5, fed_steps), np.full(steps - fed_steps, 0.5)]
    v = _norm(stats([0, 0], [1, 1], [-1, -1], [1, 1]), curves=ProbeCurves("none", "zscore", tuple(fed), tuple(zscored)))
    assert v.status is status, v.metrics


def test_normalization_cut_short_probe_is_inconclusive():
    v = _norm(stats([0, 0], [1, 1], [-1, -1], [1, 1]), probe_gap=CUT_SHORT)
    assert v.status is Status.WARN and v.findings[0].evidence["inconclusive"]


# -- DNC13 training-curves ---------------------------------------------------------------------
def _curves(history, classes=None, gap=None, compact=False):
    from dnncheck.checks.training_curves import TrainingCurves, TrainingCurvesMeasurement

    return TrainingCurves.judge(TrainingCurvesMeasurement(history, classes, "test", gap, compact),
                                TrainingCurves.Thresholds())


@pytest.mark.parametrize("last_loss, compact, status", [
    (0.61, False, Status.FAIL),  # training loss fell 12%: nothing is learned
    (0.55, False, Status.WARN),  # fell 21%: learns train, does not generalise
    (0.61, True, Status.WARN),  # a compact probe's few steps: no fall is a warning at most
    (0.55, True, Status.PASS),  # ...and learning train without generalising yet is expected (info)
])
def test_curves_chance_accuracy_reads_the_training_loss(last_loss, compact, status):
    v = _curves({"loss": [0.7, 0.65, last_loss], "val_acc": [0.5, 0.5, 0.5]}, classes=2, compact=compact)
    assert v.status is status
    assert "near chance" in " ".join(f.message for f in v.findings)


def test_curves_overfitting_in_a_compact_probe_is_a_note():
    history = {"loss": [1.0, 0.8, 0.6, 0.5], "val_loss": [1.0, 0.5, 1.0, 1.2]}  # +100% sustained
    assert _curves(history).status is Status.FAIL
    compact = _curves(history, compact=True)
    assert compact.status is Status.PASS and compact.findings[0].severity is Status.INFO
    assert "compact probe" in compact.summary


def test_curves_flat_validation_in_a_compact_probe_is_a_note():
    """torchvision's MobileNetV3 (BatchNorm momentum 0.01) after 24 steps from scratch: evaluation sees a
    near-constant model, validation loss sits at ln 2. Flat over a whole run warns; over a compact probe
    it is said as a note."""
    history = {"loss": [0.73, 0.6, 0.45, 0.36], "val_loss": [0.6931, 0.6932, 0.6934, 0.6930]}
    assert _curves(history).status is Status.WARN and _curves(history).summary.startswith("validation loss is flat")
    compact = _curves(history, compact=True)
    assert compact.status is Status.PASS and "flat" in compact.findings[0].message
    assert compact.findings[0].severity is Status.INFO and "compact probe" in compact.findings[0].message


@pytest.mark.parametrize("rise, status", [(0.099, Status.PASS), (0.1, Status.WARN), (0.499, Status.WARN),
                                          (0.5, Status.FAIL)])
def test_curves_overfit_rise_edges(rise, status):
    """The rise must hold in each of the last overfit_min_epochs (2) epochs: the lower of the two counts."""
    v = _curves({"loss": [1.0, 0.8, 0.6, 0.5], "val_loss": [1.0, 0.5, 0.5 * (1 + rise) + 0.2, 0.5 * (1 + rise)]})
    assert v.status is status
    if status is not Status.PASS:
        assert v.summary.startswith("overfitting from epoch 2") and "stop early" not in v.summary


@pytest.mark.parametrize("val_loss", [[1.0, 0.6, 0.5, 0.8], [1.0, 0.5, 0.8, 0.52]])
def test_curves_a_rise_in_the_last_epoch_alone_is_a_wobble(val_loss):
    """pytorch/examples' MNIST net: +15% in the sixth and last probe epoch was called overfitting; a
    60% jump at the end, or one that falls back near the best, is no onset either."""
    v = _curves({"loss": [1.0, 0.8, 0.6, 0.5], "val_loss": val_loss})
    assert v.status is Status.PASS, v.summary
    assert v.metrics["val_loss_rise_since_best"] > 0


def test_curves_chart_marks_the_best_validation_epoch():
    v = _curves({"loss": [1.0, 0.8, 0.6, 0.5], "val_loss": [1.0, 0.5, 0.7, 0.9]})
    assert v.figures["history"].marks == {"best val_loss (epoch 2)": 2}
    assert _curves({"loss": [1.0, 0.8, 0.6]}).figures["history"].marks == {}  # no validation loss, no mark


@pytest.mark.parametrize("last, status", [(1.5, Status.PASS), (1.51, Status.FAIL)])
def test_curves_divergence_factor_edge(last, status):
    assert _curves({"loss": [1.0, 0.8, last]}).status is status


@pytest.mark.parametrize("span, status", [(0.0099, Status.WARN), (0.0102, Status.PASS)])
def test_curves_plateau_edge(span, status):
    assert _curves({"loss": [1.0, 0.8, 0.6], "val_loss": [1.0, 1.0, 1.0 + span]}).status is status


@pytest.mark.parametrize("acc, status", [(0.14, Status.FAIL), (0.16, Status.PASS)])
def test_curves_chance_margin_edge(acc, status):
    v = _curves({"loss": [2.3, 2.2, 2.1], "val_acc": [0.1, 0.12, acc]}, classes=10)
    assert v.status is status


@pytest.mark.parametrize("first, status", [(0.33, Status.WARN), (2.3, Status.PASS)])
def test_curves_loss_scale_names_bce_over_softmax(first, status):
    assert _curves({"loss": [first, first * 0.9, first * 0.8]}, classes=10).status is status


def test_curves_oscillation_edges():
    zigzag = [1.0, 1.3, 1.0, 1.3, 1.0, 1.3, 1.0]  # every step reverses, swings ~26% of the median
    assert _curves({"loss": zigzag}).status is Status.WARN
    assert _curves({"loss": [1.0, 1.01, 1.0, 1.01, 1.0, 1.01, 1.0]}).status is Status.PASS  # swings of 1%


def test_curves_cut_short_probe_is_inconclusive():
    v = _curves({}, gap=CUT_SHORT)
    assert v.status is Status.WARN and v.summary.startswith("inconclusive, the fit probe was not finished")
    assert "could not" not in " ".join(f.message for f in v.findings)  # not finished is no evidence against the model


# -- DNC12 learning-rate -------------------------------------------------------------------------
def _range_test(user_lr, stopped_by="plan", smoothed=None, compact=False, fit_losses=()):
    from dnncheck.checks.learning_rate import LearningRate, LearningRateMeasurement

    lrs = np.logspace(-5, 0, 51)
    if smoothed is None:  # falls fastest near 1e-3, bottoms at 1e-2 (index 30), then climbs
        x = np.log10(lrs)
        smoothed = 2.0 - 1.5 / (1 + np.exp(-4 * (x + 3))) + np.where(x > -2, 3 * (x + 2) ** 2, 0.0)
    m = LearningRateMeasurement(user_lr, tuple(lrs), tuple(smoothed), tuple(smoothed), stopped_by, compact=compact,
                                fit_losses=fit_losses)
    return LearningRate.judge(m, LearningRate.Thresholds())


@pytest.mark.parametrize("user_lr, full, compact", [(0.02, Status.WARN, Status.PASS),  # just above the band
                                                     (1e-7, Status.WARN, Status.PASS),  # far below it
                                                     (0.5, Status.FAIL, Status.PASS)])  # far above the band
def test_a_compact_range_test_band_is_advice_but_its_blow_up_is_not(user_lr, full, compact):
    assert _range_test(user_lr).status is full
    v = _range_test(user_lr, compact=True)
    assert v.status is compact and "compact range test" in v.summary
    # at or beyond the rate where the loss blew up (the test's last rate, 1.0): decisive at any length
    assert _range_test(1.0, stopped_by="loss exploded", compact=True).status is Status.FAIL


def test_learning_rate_range_is_read_from_the_curve():
    v = _range_test(1e-3)
    assert v.status is Status.PASS and v.metrics["lr_at_min_loss"] == pytest.approx(1e-2, rel=0.3)
    assert v.metrics["suggested_lr_min"] == pytest.approx(v.metrics["lr_steepest"] / 10)


def test_learning_rate_chart_marks_the_configured_lr_and_the_suggested_range():
    v = _range_test(1e-3)
    chart = v.figures["range_test"]
    assert chart.marks == {"your lr 0.001": 1e-3}
    assert chart.band == ("suggested range", v.metrics["suggested_lr_min"], v.metrics["suggested_lr_max"])


def test_learning_rate_edges_around_the_range():
    top = _range_test(1e-3).metrics["suggested_lr_max"]
    bottom = _range_test(1e-3).metrics["suggested_lr_min"]
    assert _range_test(top).status is Status.PASS
    # just past the minimum the curve is flat (within the sweep's resolution): a note, not a warning
    flat = _range_test(top * 1.01)
    assert flat.status is Status.PASS and flat.metrics["loss_rise_at_user_lr"] < 0.1
    assert flat.summary == "lr 0.0101 is at the range test's flat bottom"
    climbed = _range_test(top * 2)  # the smoothed loss has climbed back 17% of its fall: past the bottom
    assert climbed.status is Status.WARN and climbed.metrics["loss_rise_at_user_lr"] == pytest.approx(0.17, abs=0.01)
    assert "climbed back 17% of its fall" in climbed.findings[0].message
    assert climbed.summary.startswith("lr 0.02 is above the suggested range [")
    assert _range_test(top * 10).status is Status.WARN  # fail_factor: strictly above 10x
    assert _range_test(top * 10.01).status is Status.FAIL
    assert _range_test(bottom / 100).status is Status.PASS  # low_factor: strictly below
    v = _range_test(bottom / 100.5)
    assert v.status is Status.WARN and v.summary.endswith("]") and "crawl" not in v.summary


def test_learning_rate_at_the_blow_up_fails():
    lrs_end = 1.0
    v = _range_test(lrs_end, stopped_by="loss exploded")
    assert v.status is Status.FAIL and "blew up at 1" in v.summary


def test_learning_rate_unreadable_curve_warns():
    v = _range_test(1e-3, smoothed=[1.0, 2.0, 4.0, 8.0] + [float("nan")] * 47)
    assert v.status is Status.WARN and v.summary == "the range test diverged at once"


@pytest.mark.parametrize("lowest, status", [(0.89, Status.PASS), (0.91, Status.WARN)])
def test_learning_rate_defers_to_the_model_when_no_rate_helps(lowest, status):
    curve = np.r_[np.linspace(1.0, lowest, 30), np.linspace(lowest, 1.5, 21)]  # bottoms at 1e-2, then climbs
    v = _range_test(1e-3, smoothed=curve)
    assert v.status is status
    if status is Status.WARN:
        assert v.summary.startswith("no learning rate from 1e-05 to 1 makes this model learn")
        assert "suggested_lr_max" not in v.metrics  # no range is suggested from a curve that never falls


@pytest.mark.parametrize("fit_losses, status", [((2.3, 1.9, 1.8), Status.PASS),  # fell 22%: learns
                                                ((2.3, 2.2, 1.87), Status.WARN),  # fell 19%: does not
                                                ((), Status.WARN)])  # no fit probe ran
def test_a_flat_range_test_defers_to_a_fit_that_learns_at_the_users_lr(fit_losses, status):
    """ViT-tiny from scratch: 100 sweep steps over 8 decades show no fall, while the fit probe at the
    user's lr trains to 0.86 balanced accuracy. The sweep was too short, the lr is not in question."""
    curve = np.r_[np.linspace(1.0, 0.97, 30), np.linspace(0.97, 1.5, 21)]
    v = _range_test(1e-3, smoothed=curve, fit_losses=fit_losses)
    assert v.status is status
    if status is Status.PASS:
        assert "the sweep is too short" in v.summary and "training loss 2.3 -> 1.8" in v.summary
        assert v.remedy == ""
    else:
        assert v.summary.startswith("no learning rate from 1e-05 to 1 makes this model learn")


def test_learning_rate_cut_short_is_inconclusive_not_evidence():
    from dnncheck.checks.learning_rate import LearningRate, LearningRateMeasurement

    v = LearningRate.judge(LearningRateMeasurement(1e-3, (), (), (), "budget", CUT_SHORT), LearningRate.Thresholds())
    assert v.status is Status.WARN and v.findings[0].evidence["inconclusive"] and "suggested_lr_max" not in v.metrics


# -- DNC9 imbalance ------------------------------------------------------------------------------
def _imbalance(train, val=None, y_true=None, y_pred=None, classes=None):
    from dnncheck.checks.imbalance import Imbalance, ImbalanceMeasurement, ProbePredictions

    train = np.asarray(train)
    classes = classes or tuple(f"c{i}" for i in range(len(train)))
    counts = {"train": train}
    if val is not None:
        counts["val"] = np.asarray(val)
    if y_true is None:  # a perfect probe on a balanced sample: no probe finding
        y_true = np.repeat(np.arange(len(train)), 10)
        y_pred = y_true
    m = ImbalanceMeasurement("classification", tuple(classes), counts,
                             ProbePredictions("val", np.asarray(y_true), np.asarray(y_pred)))
    return Imbalance.judge(m, Imbalance.Thresholds())


@pytest.mark.parametrize("big, status", [(14950, Status.PASS), (15000, Status.WARN), (99950, Status.WARN),
                                         (100000, Status.FAIL)])
def test_imbalance_ratio_edges(big, status):
    v = _imbalance([big, 5000])
    assert v.status is status and v.metrics["imbalance_ratio"] == round(big / 5000, 3)
    if status is Status.FAIL:
        assert v.summary.startswith("imbalance ratio 20.0: the smallest classes are c1 (5000)")


def test_low_recall_of_a_probe_at_chance_on_balanced_classes_is_not_judged():
    y_true = np.repeat([0, 1], 30)
    at_chance = _imbalance([5000, 5000], y_true=y_true, y_pred=np.zeros(60, int))  # predicts one class
    assert at_chance.status is Status.PASS and "not judged" in at_chance.findings[-1].message
    learns = np.concatenate([np.zeros(30, int), np.r_[np.ones(10, int), np.zeros(20, int)]])  # recall 1.0 / 0.33
    v = _imbalance([5000, 5000], y_true=y_true, y_pred=learns)
    assert v.status is Status.WARN and "rarely recognises: c1" in v.summary + " ".join(f.message for f in v.findings)


def _weak_probe(classes=2, correct=8):
    """A probe that recognises `correct` of 10 validation samples per class."""
    y_true = np.repeat(np.arange(classes), 10)
    y_pred = y_true.copy()
    for c in range(classes):
        y_pred[c * 10 + correct:(c + 1) * 10] = (c + 1) % classes
    return y_true, y_pred


@pytest.mark.parametrize("smallest, words", [(999, "small data"), (1000, "moderate data"), (4999, "moderate data"),
                                             (5000, None)])
def test_imbalance_data_volume_edges(smallest, words):
    y_true, y_pred = _weak_probe(correct=8)  # balanced accuracy 0.8: the advice is a warning
    v = _imbalance([smallest, smallest], y_true=y_true, y_pred=y_pred)
    if words is None:
        assert v.status is Status.PASS
    else:
        assert v.status is Status.WARN and words in v.findings[0].message
        # the summary states the warning's reason first (base.with_reason)
        assert v.summary.startswith(f"{smallest} training instances in the smallest class")


@pytest.mark.parametrize("correct, severity", [(8, Status.WARN), (9, Status.INFO)])
def test_imbalance_small_data_is_info_once_the_probe_does_well(correct, severity):
    y_true, y_pred = _weak_probe(correct=correct)  # balanced accuracy 0.8 or 0.9 (small_data_info_accuracy)
    v = _imbalance([500, 500], y_true=y_true, y_pred=y_pred)
    assert v.findings[0].severity is severity and "small data" in v.findings[0].message
    assert v.status is (Status.PASS if severity is Status.INFO else Status.WARN)


@pytest.mark.parametrize("correct_minority, status", [(2, Status.FAIL), (3, Status.WARN)])
def test_imbalance_probe_must_beat_the_majority_baseline_by_the_margin(correct_minority, status):
    y_true = np.r_[np.zeros(90, int), np.ones(10, int)]  # majority baseline 0.90; margin 0.02
    y_pred = np.zeros(100, int)
    y_pred[90:90 + correct_minority] = 1  # accuracy 0.92 (no better) or 0.93
    v = _imbalance([30000, 10000], y_true=y_true, y_pred=y_pred)
    assert v.status is status and v.metrics["majority_baseline_accuracy"] == 0.9


def test_imbalance_low_recall_class_is_named_at_half_the_median():
    y_true = np.repeat([0, 1, 2], 20)  # min_eval_per_class (20) evaluated samples per class
    y_pred = y_true.copy()
    y_pred[40:52] = 0  # class 2 recall 0.4 < 0.5 x median 1.0
    v = _imbalance([6000, 6000, 6000], y_true=y_true, y_pred=y_pred)
    assert v.status is Status.WARN and "c2 (recall 0.40)" in v.findings[0].message
    y_pred[40:52] = 2
    y_pred[40:50] = 0  # recall 0.5: not below half the median
    assert _imbalance([6000, 6000, 6000], y_true=y_true, y_pred=y_pred).status is Status.PASS


def test_imbalance_classes_only_in_validation_fail_and_one_based_labels_are_named():
    v = _imbalance([6000, 0], val=[100, 100])
    assert v.status is Status.FAIL and "val has classes that train lacks: c1" in v.summary
    v = _imbalance([0, 6000, 6000], classes=("0", "1", "2"))
    assert v.status is Status.FAIL and v.summary.startswith("class 0 has no samples in any split while 1..2 do")


@pytest.mark.parametrize("moved, status", [(17, Status.WARN), (18, Status.FAIL)])
def test_imbalance_validation_labels_in_another_encoding_fail_at_relabel_gain(moved, status):
    """Classes 0 and 1 swapped in val for `moved` of their 24 samples each (min_eval_per_class is
    20): renaming 0 <-> 1 gains (2 x moved - 24) / 48 accuracy, 0.208 at 17 and exactly relabel_gain
    0.25 at 18. At 17 the two classes' recall (0.29) is low, a true warning, but not a renaming."""
    y_true = np.repeat([0, 1, 2, 3], 24)
    y_pred = y_true.copy()
    y_pred[:moved] = 1
    y_pred[24:24 + moved] = 0
    v = _imbalance([6000] * 4, y_true=y_true, y_pred=y_pred)
    assert v.status is status, v.summary
    assert ("encoded differently" in v.summary) is (status is Status.FAIL)
    if status is Status.FAIL:
        assert v.summary.startswith("val labels look encoded differently") and "c0 -> c1 (75%)" in v.summary


def test_imbalance_clean_labels_rename_to_themselves():
    y_true = np.repeat([0, 1, 2], 20)
    y_pred = y_true.copy()
    y_pred[::4] = (y_true[::4] + 1) % 3  # a weak probe's scattered errors
    v = _imbalance([6000] * 3, y_true=y_true, y_pred=y_pred)
    assert v.metrics["renamed_accuracy"] == v.metrics["probe_accuracy"] and v.status is Status.PASS


def test_imbalance_regression_target_outside_train_range_edge():
    from dnncheck.checks.imbalance import Imbalance, ImbalanceMeasurement

    train = np.linspace(0, 1, 1000)
    for outside, status in ((5, Status.PASS), (6, Status.WARN)):  # 5% of val: not above out_of_range_share
        val = np.r_[np.full(100 - outside, 0.5), np.full(outside, 2.0)]
        m = ImbalanceMeasurement("regression", (), {}, targets={"train": train, "val": val},
                                 target_ids={"train": (), "val": tuple(f"v{i}" for i in range(100))})
        v = Imbalance.judge(m, Imbalance.Thresholds())
        assert v.status is status


# -- DNC8 overfit ------------------------------------------------------------------------------
def _overfit(params=1000, train_samples=100, dense=(), batch_stop="target reached", reached=True, epochs=None,
             shuffled=None, losses=(2.3, 1.0, 0.1), **kw):
    from dnncheck.checks.overfit import OneBatch, Overfit, OverfitMeasurement

    batch = OneBatch(32, tuple(losses), batch_stop, reached) if batch_stop else None
    m = OverfitMeasurement(params, params, train_samples, ({"layer": "fc", "type": "Linear", "parameters": params},),
                           tuple(dense), batch, fit_epochs=epochs,
                           fit_curves={} if epochs is not None else None, shuffled_train_acc=shuffled, **kw)
    return Overfit.judge(m, Overfit.Thresholds())


OVERFITTING = ({"train_acc": 1.0, "val_acc": 0.7, "val_loss": 0.5},)  # gap 0.3 > gap_warn
GENERALISING = ({"train_acc": 1.0, "val_acc": 0.97, "val_loss": 0.1},)


@pytest.mark.parametrize("params, said", [(100_000, False), (100_100, True)])
def test_overfit_parameters_per_sample_edge(params, said):
    """1,000 per sample is said above; as info for a model that generalises, a warning beside overfitting."""
    quiet = _overfit(params=params, train_samples=100, epochs=GENERALISING)
    assert quiet.status is Status.PASS
    assert any(f.severity is Status.INFO and "per sample" in f.message for f in quiet.findings) is said
    loud = _overfit(params=params, train_samples=100, epochs=OVERFITTING)
    assert any(f.severity is Status.WARN and "per sample" in f.message for f in loud.findings) is said


@pytest.mark.parametrize("shape, said", [((1000, 1000), False), ((1000, 1001), True)])
def test_overfit_dense_layer_edge(shape, said):
    quiet = _overfit(dense=[("fc", *shape)], epochs=GENERALISING)
    assert quiet.status is Status.PASS
    assert any(f.severity is Status.INFO and "oversized dense" in f.message for f in quiet.findings) is said
    loud = _overfit(dense=[("fc", *shape)], epochs=OVERFITTING)
    assert any(f.severity is Status.WARN and "oversized dense" in f.message for f in loud.findings) is said


def test_overfit_one_batch_failures_name_the_cause():
    v = _overfit(batch_stop="max steps", losses=(2.3, 2.0, 1.2))
    assert v.status is Status.FAIL and v.summary == "cannot overfit one batch of 32: loss 2.3 -> best 1.2 in 3 steps"
    assert "detached" in _overfit(batch_stop="max steps", reached=False).findings[0].message
    assert "frozen" in _overfit(params=0, batch_stop=None).summary


@pytest.mark.parametrize("best, status", [(1.15, Status.WARN), (1.16, Status.FAIL)])
def test_overfit_slow_one_batch_fit_is_a_warning_at_slow_fit_ratio(best, status):
    v = _overfit(batch_stop="max steps", losses=(2.3, 1.8, best))  # slow_fit_ratio 0.5 of 2.3 = 1.15
    assert v.status is status
    if status is Status.WARN:
        assert v.summary.startswith("fits one batch of 32 only slowly")


@pytest.mark.parametrize("val_acc, status", [(0.851, Status.PASS), (0.849, Status.WARN)])
def test_overfit_accuracy_gap_edge(val_acc, status):
    epochs = ({"train_acc": 1.0, "val_acc": val_acc, "val_loss": 0.5},)
    assert _overfit(epochs=epochs).status is status  # gap_warn 0.15: strictly above warns


@pytest.mark.parametrize("shuffled, status", [(0.9, Status.PASS), (0.91, Status.WARN)])
def test_overfit_memorisation_edge(shuffled, status):
    epochs = ({"train_acc": 1.0, "val_acc": 0.95},)
    v = _overfit(epochs=epochs, shuffled=(shuffled,))
    assert v.status is status and v.metrics["memorisation_ratio"] == shuffled


def test_overfit_cut_short_one_batch_is_inconclusive():
    v = _overfit(batch_stop=None, batch_gap=CUT_SHORT)
    assert v.status is Status.WARN and v.findings[0].evidence["inconclusive"]


# -- DNC11 gradient-health -----------------------------------------------------------------------
def _gradients(grad_norms=None, updates=None, dead=None, saturated=None, init=None):
    from dnncheck.checks.gradient_health import GradientHealth, GradientHealthMeasurement

    grad_norms = grad_norms if grad_norms is not None else {"fc1.weight": [1.0, 1.0], "fc2.weight": [1.0, 1.0]}
    m = GradientHealthMeasurement(grad_norms, updates or {"fc1.weight": 1e-3}, dead or {}, saturated or {},
                                  init or {"fc1": ("He", 1.0)})
    return GradientHealth.judge(m, GradientHealth.Thresholds())


def test_gradient_chart_is_drawn_over_training_steps():
    """The norms are recorded every k-th step: the x axis says which steps, not the record number."""
    from dnncheck.checks.gradient_health import GradientHealth, GradientHealthMeasurement

    m = GradientHealthMeasurement({"fc1.weight": [1.0, 0.5, 0.2]}, {"fc1.weight": 1e-3}, {}, {},
                                  {"fc1": ("He", 1.0)}, grad_steps=(1, 5, 9))
    chart = GradientHealth.judge(m, GradientHealth.Thresholds()).figures["grad_norms"]
    assert chart.x == [1, 5, 9] and chart.xlabel == "training step"


def test_gradient_health_clean_passes():
    assert _gradients().status is Status.PASS


@pytest.mark.parametrize("top, status", [(1000.0, Status.PASS), (1000.1, Status.FAIL), (float("nan"), Status.FAIL)])
def test_gradient_health_exploding_edge(top, status):
    v = _gradients({"fc1.weight": [1.0, top], "fc2.weight": [1.0, 1.0]})
    assert v.status is status
    if status is Status.FAIL:
        assert v.summary.startswith("exploding gradients") and "clip" not in v.summary


@pytest.mark.parametrize("first, status", [(1e-3, Status.PASS), (0.99e-3, Status.WARN)])
def test_gradient_health_vanishing_edge(first, status):
    v = _gradients({"fc1.weight": [first], "fc1.bias": [1e-9], "fc2.weight": [1.0]})
    assert v.status is status


@pytest.mark.parametrize("ratio, status", [(1e-6, Status.PASS), (0.99e-6, Status.WARN), (0.1, Status.PASS),
                                           (0.101, Status.WARN)])
def test_gradient_health_update_ratio_edges(ratio, status):
    assert _gradients(updates={"fc1.weight": ratio}).status is status


@pytest.mark.parametrize("fraction, status", [(0.5, Status.PASS), (0.51, Status.WARN)])
def test_gradient_health_dead_and_saturated_edges(fraction, status):
    assert _gradients(dead={"relu1": fraction}).status is status
    assert _gradients(saturated={"sig1": fraction}).status is status


@pytest.mark.parametrize("ratio, status", [(0.2, Status.PASS), (0.19, Status.WARN), (5.0, Status.PASS),
                                           (5.1, Status.WARN)])
def test_gradient_health_init_scale_edges(ratio, status):
    assert _gradients(init={"fc1": ("He", ratio)}).status is status


def test_relus_silent_from_the_start_are_info_and_relus_killed_by_training_warn():
    """Squeeze-excitation ReLUs never fire on about half their units already in the fresh model: the
    architecture's, not a training fault. Units that fired before training and stopped did die."""
    from dnncheck.checks.gradient_health import GradientHealth, GradientHealthMeasurement

    def judged(died):
        m = GradientHealthMeasurement({"fc1.weight": [1.0], "fc2.weight": [1.0]}, {"fc1.weight": 1e-3},
                                      {"se.relu": 0.6}, {}, {"fc1": ("He", 1.0)}, died_fraction={"se.relu": died})
        return GradientHealth.judge(m, GradientHealth.Thresholds())

    silent = judged(0.05)
    assert silent.status is Status.PASS and "silent since initialisation" in silent.findings[0].message
    assert "se.relu 60% never fire (5% stopped in training)" in silent.findings[0].message
    killed = judged(0.55)
    assert killed.status is Status.WARN and killed.summary.startswith("dead ReLUs: se.relu 60%")


def test_died_fraction_counts_units_that_fired_before_training_only():
    import torch
    from torch import nn
    from dnncheck.checks.gradient_health import _tally_units

    torch.manual_seed(0)
    fresh = nn.Sequential(nn.Linear(4, 10), nn.ReLU())
    with torch.no_grad():
        fresh[0].bias[:2] = -100.0  # silent from the start
    trained = nn.Sequential(nn.Linear(4, 10), nn.ReLU())
    trained.load_state_dict(fresh.state_dict())
    with torch.no_grad():
        trained[0].bias[2:7] = -100.0  # killed by "training"
    x = torch.randn(64, 4)
    before, after = _tally_units(fresh, x, "cpu")["1"], _tally_units(trained, x, "cpu")["1"]
    assert after.dead_fraction() == 0.7 and after.died_fraction(before) == 0.5


def test_gradient_health_fully_dead_layer_fails():
    v = _gradients(dead={"relu1": 1.0, "relu2": 0.6})
    assert v.status is Status.FAIL and v.summary.startswith("every unit of relu1 is dead")
    assert any(f.severity is Status.WARN and "relu2 60%" in f.message for f in v.findings)


def test_gradient_health_cut_short_is_inconclusive():
    from dnncheck.checks.gradient_health import GradientHealth, GradientHealthMeasurement

    v = GradientHealth.judge(GradientHealthMeasurement({}, {}, {}, {}, {}, CUT_SHORT), GradientHealth.Thresholds())
    assert v.status is Status.WARN and v.findings[0].evidence["inconclusive"]


# -- DNC4 loss-sanity ----------------------------------------------------------------------------
def _loss(loss="cross_entropy", units=10, kind="logits", head=None, initial=2.30, error=None, metric=None,
          y=None, curve=(2.3, 1.0, 0.5), task="classification", classes=10, mixing=0.0):
    from dnncheck.checks.loss_sanity import LossSanity, LossSanityMeasurement, ProbeLossCurve
    from dnncheck.models.introspect import OutputInfo

    y = np.arange(100) % classes if y is None else np.asarray(y)
    info = OutputInfo(units=units, kind=kind, min=-1.0, max=1.0, finite=True)
    m = LossSanityMeasurement(task, loss, tuple(str(i) for i in range(classes)), info, head, True, y,
                              tuple(f"s{i}" for i in range(len(y))), initial, error, metric,
                              ProbeLossCurve(tuple(curve), len(curve), 1, 0.1, curve[0]), None, mixing)
    return LossSanity.judge(m, LossSanity.Thresholds())


def test_loss_sanity_clean_passes():
    assert _loss().status is Status.PASS


@pytest.mark.parametrize("initial, status", [(3.45, Status.PASS), (3.46, Status.WARN), (1.16, Status.PASS),
                                             (1.15, Status.WARN)])
def test_loss_sanity_initial_loss_tolerance_edges(initial, status):
    assert _loss(initial=initial).status is status  # ln 10 = 2.303, tolerance 0.5 of it


def test_loss_sanity_wiring_failures():
    assert _loss(units=5).status is Status.FAIL
    assert _loss(kind="probabilities", head="softmax").summary.startswith("the model outputs probabilities")
    assert _loss(loss="nll").status is Status.FAIL  # logits into NLLLoss
    v = _loss(error="RuntimeError: shape mismatch")
    assert v.status is Status.FAIL and v.summary == "the loss cannot be computed on the model's outputs"
    assert _loss(initial=float("nan")).status is Status.FAIL


@pytest.mark.parametrize("mixing, status", [(1e-6, Status.PASS), (1e-3, Status.PASS), (2e-3, Status.FAIL)])
def test_loss_sanity_batch_mixing_tolerance(mixing, status):
    assert _loss(mixing=mixing).status is status


def test_loss_sanity_names_a_final_relu_and_a_softmax_over_the_batch():
    v = _loss(head="relu", kind="sigmoid")  # small non-negative outputs once read as "sigmoid outputs"
    assert v.status is Status.FAIL and v.summary == "the model ends in a ReLU: its outputs cannot be negative"
    assert not any("sigmoid" in f.message for f in v.findings)
    v = _loss(loss="nll", head="log_softmax_over_batch", kind="logits")
    assert v.summary == "the model's final log-softmax normalises over dimension 0, the batch"
    assert not any("NLLLoss expects" in f.message for f in v.findings)


@pytest.mark.parametrize("final, status", [(2.07, Status.PASS), (2.08, Status.WARN)])
def test_loss_sanity_min_fall_ratio_edge(final, status):
    assert _loss(curve=(2.3,) * 10 + (final,) * 10).status is status  # the tail must fall below 0.9 x 2.3


def test_loss_sanity_non_finite_probe_loss_fails():
    v = _loss(curve=(2.3, 1.0, float("inf")))
    assert v.status is Status.FAIL and v.summary == "the probe's loss became inf at step 3"


@pytest.mark.parametrize("big, status", [(29, Status.PASS), (30, Status.WARN)])
def test_loss_sanity_accuracy_metric_on_imbalanced_data_edge(big, status):
    y = np.r_[np.zeros(big, int), np.ones(10, int)]  # ratio 2.9 or 3.0
    assert _loss(metric="accuracy", y=y, classes=2, units=2, initial=0.69).status is status


@pytest.mark.parametrize("scale, status", [(9.0, Status.PASS), (11.0, Status.WARN)])
def test_loss_sanity_names_an_unscaled_regression_target(scale, status):
    y = np.full(10, scale)  # root mean square = scale; target_rms_warn 10
    v = _loss(loss="mse", units=1, task="regression", y=y, classes=1, initial=scale ** 2)
    assert v.status is status
    if status is Status.WARN:
        assert v.summary.startswith("the regression target is not scaled (root mean square 11")


def test_loss_sanity_regression_with_a_bounded_head_fails():
    v = _loss(loss="mse", units=1, head="sigmoid", task="regression", y=[0.5, 2.0, 3.0], classes=1, initial=4.0)
    assert v.status is Status.FAIL and len(v.findings[0].samples) == 2


# -- DNC1 input-fidelity -------------------------------------------------------------------------
def _fidelity(std=None, lo=None, hi=None, nonfinite=None, sizes=None, modes=None, resolution=None, unreadable=()):
    from dnncheck.checks.input_fidelity import InputFidelity, InputFidelityMeasurement, ResolutionTest

    n = 20
    std = np.full(n, 50.0) if std is None else np.asarray(std, float)
    stats = {"train": {"std": std, "min": np.zeros(n) if lo is None else np.asarray(lo, float),
                       "max": np.full(n, 255.0) if hi is None else np.asarray(hi, float),
                       "nonfinite": np.zeros(n, int) if nonfinite is None else np.asarray(nonfinite)}}
    ids = np.array([f"img{i}" for i in range(n)])
    m = InputFidelityMeasurement(True, n, tuple(unreadable), (), {"train": ids}, stats, 3,
                                 tuple((i, "RGB") for i in ids) if modes is None else tuple(zip(ids, modes)),
                                 np.tile([375.0, 500.0], (n, 1)) if sizes is None else np.asarray(sizes, float), ids,
                                 resolution or ResolutionTest(None, (64, 64)), None)
    return InputFidelity.judge(m, InputFidelity.Thresholds())


def test_input_fidelity_clean_passes():
    v = _fidelity()
    assert v.status is Status.PASS and v.summary == "20 samples decode with finite, informative values"


def test_input_fidelity_unreadable_and_non_finite_fail():
    assert _fidelity(unreadable=[("a.jpg", "truncated")]).status is Status.FAIL
    v = _fidelity(nonfinite=[1] + [0] * 19)
    assert v.status is Status.FAIL and v.findings[0].samples == ("img0",)


def test_input_fidelity_flat_and_low_information_edges():
    t = _low_information_ratio()
    flat = _fidelity(std=[0.0] + [50.0] * 19, hi=[0.0] + [255.0] * 19)
    assert flat.status is Status.WARN and "single flat value" in flat.summary
    assert _fidelity(std=[50.0 * t] + [50.0] * 19).status is Status.PASS  # at the floor: not below it
    low = _fidelity(std=[50.0 * t * 0.99] + [50.0] * 19)
    assert low.status is Status.WARN and low.findings[0].samples == ("img0",)


def _low_information_ratio():
    from dnncheck.checks.input_fidelity import InputFidelity

    return InputFidelity.Thresholds().low_information_ratio


def test_input_fidelity_size_outlier_edges():
    sizes = np.tile([100.0, 100.0], (20, 1))
    sizes[0] = [100.0, 249.0]  # aspect 2.49 < 2.5: fine
    assert _fidelity(sizes=sizes).status is Status.PASS
    sizes[0] = [100.0, 251.0]
    assert _fidelity(sizes=sizes).findings[0].samples == ("img0",)
    sizes[0] = [25.0, 25.0]  # shorter side 0.25 of the median: not below
    assert _fidelity(sizes=sizes).status is Status.PASS
    sizes[0] = [24.0, 24.0]
    assert _fidelity(sizes=sizes).status is Status.WARN


def test_input_fidelity_mixed_modes_warn():
    v = _fidelity(modes=["L"] + ["RGB"] * 19)
    assert v.status is Status.WARN and v.summary.startswith("mixed image modes (19 RGB, 1 L)") and "pipeline" not in v.summary


@pytest.mark.parametrize("model_score, status", [(0.851, Status.PASS), (0.849, Status.WARN), (float("nan"), Status.PASS)])
def test_input_fidelity_resize_drop_edge(model_score, status):
    from dnncheck.checks.input_fidelity import ResolutionTest

    v = _fidelity(resolution=ResolutionTest((128, 96), (32, 32), 0.9, model_score, 1000, 2))
    assert v.status is status  # resize_drop_warn 0.05: a drop above it warns


# -- DNC10 pixel-attack --------------------------------------------------------------------------
def _pixels(marked_in_class=5, marked_in_other=0, per_class=100, trigger=None, flips=None):
    from dnncheck.checks.pixel_attack import PixelAttack, PixelAttackMeasurement, ShortcutScan

    y = np.repeat([0, 1], per_class)
    hits = np.zeros((len(y), 2 * 2 * 1 * 2), dtype=bool)  # a 2x2 one-channel grid, (high, low) per pixel
    hits[:marked_in_class, 0] = True  # pixel (0, 0) saturated high in class 0...
    hits[per_class:per_class + marked_in_other, 0] = True  # ...and in some of class 1
    scan = ShortcutScan((2, 2), True, (2, 2, 1, 2), hits, y, tuple(f"s{i}" for i in range(len(y))),
                        {0: np.zeros((2, 2, 1)), 1: np.zeros((2, 2, 1))})
    m = PixelAttackMeasurement(("cat", "dog"), scan, trigger, None, flips)
    return PixelAttack.judge(m, PixelAttack.Thresholds())


@pytest.mark.parametrize("marked, status", [(4, Status.PASS), (5, Status.FAIL)])
def test_pixel_attack_min_count_edge(marked, status):
    v = _pixels(marked_in_class=marked)
    assert v.status is status
    if status is Status.FAIL:
        assert v.findings[0].evidence["pixels"] == [[0, 0]] and v.findings[0].samples[0] == "s0"


def test_pixel_attack_min_support_and_precision_edges():
    assert _pixels(marked_in_class=9, per_class=200).status is Status.PASS  # 4.5% of the class
    assert _pixels(marked_in_class=10, per_class=200).status is Status.FAIL  # 5%
    assert _pixels(marked_in_class=19, marked_in_other=1).status is Status.FAIL  # precision 0.95
    assert _pixels(marked_in_class=18, marked_in_other=1).status is Status.PASS  # 0.947


def test_pixel_attack_trigger_and_flip_edges():
    from dnncheck.checks.pixel_attack import FlipResult, TriggerResult

    clean = dict(marked_in_class=0)
    assert _pixels(**clean, trigger=TriggerResult("cat", 10, 0.9, 0.5)).status is Status.PASS
    v = _pixels(**clean, trigger=TriggerResult("cat", 10, 0.9, 0.51))
    assert v.status is Status.WARN and "planted trigger success 0.51" in v.summary
    assert _pixels(**clean, flips=FlipResult("val", 40, 20, 100)).status is Status.PASS
    assert _pixels(**clean, flips=FlipResult("val", 40, 21, 100)).status is Status.WARN


def _property_scan(class0_values, class1_values):
    from dnncheck.data.properties import PropertyScan, _class_vs_rest_auc

    values = np.r_[class0_values, class1_values].astype(float)[:, None]
    y = np.r_[np.zeros(len(class0_values), int), np.ones(len(class1_values), int)]
    return PropertyScan(("brightness",), values, y, tuple(f"s{i}" for i in range(len(y))),
                        _class_vs_rest_auc(values[:, 0], y, 2)[None], np.bincount(y), 0.6, 0.5)


@pytest.mark.parametrize("overlap, status", [(2, Status.PASS), (1, Status.WARN), (0, Status.FAIL)])
def test_pixel_attack_image_property_auc_edges(overlap, status):
    """100 cats at 0..99, 100 dogs at 100..199 with `overlap` dogs moved below every cat: ROC AUC
    1 - overlap/100, so 0.98 passes, 0.99 warns (property_auc_warn), 1.0 fails (property_auc_fail 0.999)."""
    from dnncheck.checks.pixel_attack import PixelAttack, PixelAttackMeasurement, ShortcutScan

    dogs = np.arange(100, 200)
    dogs[:overlap] = -1
    scan = ShortcutScan((2, 2), True, (2, 2, 1, 2), np.zeros((200, 8), bool), np.repeat([0, 1], 100),
                        tuple(f"s{i}" for i in range(200)), {0: np.zeros((2, 2, 1)), 1: np.zeros((2, 2, 1))})
    m = PixelAttackMeasurement(("cat", "dog"), scan, properties=_property_scan(np.arange(100), dogs))
    v = PixelAttack.judge(m, PixelAttack.Thresholds())
    assert v.status is status, v.summary
    if status is not Status.PASS:
        assert v.summary.startswith("image-property shortcut for class cat: cat images are darker than dog images "
                                    "(mean brightness, 0-1: median 0.19 vs 0.59")
        assert v.findings[0].samples[0] == "s0"  # the class's most extreme image first
        assert v.metrics["property_balanced_accuracy"] == 0.6 and "property_cat" in v.figures


def test_pixel_attack_names_the_darker_of_two_classes_as_people_say_it():
    """Two classes: one finding, about the class lower in the property (a darkening export lowers the
    class it was applied to), whichever class comes first."""
    from dnncheck.checks.pixel_attack import PixelAttack, PixelAttackMeasurement, ShortcutScan

    scan = ShortcutScan((2, 2), True, (2, 2, 1, 2), np.zeros((200, 8), bool), np.repeat([0, 1], 100),
                        tuple(f"s{i}" for i in range(200)), {0: np.zeros((2, 2, 1)), 1: np.zeros((2, 2, 1))})
    m = PixelAttackMeasurement(("ants", "bees"), scan, properties=_property_scan(np.arange(100, 200), np.arange(100)))
    v = PixelAttack.judge(m, PixelAttack.Thresholds())
    (finding,) = [f for f in v.findings if "property" in f.evidence]
    assert finding.evidence["class"] == "bees" and finding.evidence["said_as"] == "mean brightness"
    assert "bees images are darker than ants images" in finding.message


# -- DNC5 separability ---------------------------------------------------------------------------
def _separability(model_accuracy, knn, silhouette=0.3, chance=0.1):
    from dnncheck.checks.separability import Separability, SeparabilityMeasurement

    m = SeparabilityMeasurement("val", "the probe", 500, model_accuracy, chance, silhouette, knn, {}, 64)
    return Separability.judge(m, Separability.Thresholds())


@pytest.mark.parametrize("knn, status", [(0.5, Status.PASS), (0.49, Status.FAIL)])
def test_separability_structure_ratio_edge(knn, status):
    v = _separability(0.9, knn)  # gain 0.8 over chance 0.1: feature 5-NN must recover half of it
    assert v.status is status
    if status is Status.FAIL:
        assert v.summary.startswith("accuracy above chance") and "representation" not in v.summary


@pytest.mark.parametrize("accuracy, status", [(0.19, Status.PASS), (0.21, Status.FAIL)])
def test_separability_min_gain_edge(accuracy, status):
    assert _separability(accuracy, 0.1).status is status  # below 0.1 over chance the test does not apply


@pytest.mark.parametrize("silhouette, status", [(0.0, Status.PASS), (-0.01, Status.WARN), (None, Status.PASS)])
def test_separability_silhouette_edge(silhouette, status):
    assert _separability(0.9, 0.85, silhouette).status is status


def test_separability_unmeasurable_structure_gives_no_verdict():
    v = _separability(0.9, None, None)
    assert v.status is Status.PASS and "not measured" in v.findings[0].message and v.remedy == ""


# -- DNC6 split-leakage --------------------------------------------------------------------------
def _leakage(pairs=(), groups=None, counts=None, made=(), smallest=2000):
    from dnncheck.checks.split_leakage import SplitLeakage, SplitLeakageMeasurement

    counts = counts or {"train": np.array([500, 500]), "val": np.array([100, 100])}
    m = SplitLeakageMeasurement(("cat", "dog"), tuple(made), (), smallest, tuple(pairs), groups or {}, counts,
                                {n: int(c.sum()) for n, c in counts.items()}, [])
    return SplitLeakage.judge(m, SplitLeakage.Thresholds())


def _pair(kind, label_b=0):
    return {"a": "train/cat/1.png", "b": "val/cat/1.png", "kind": kind, "similarity": 1.0, "label_a": 0,
            "label_b": label_b, "split_a": "train", "split_b": "val"}


def test_split_leakage_clean_passes_and_copies_fail():
    assert _leakage().status is Status.PASS
    v = _leakage([_pair("exact")])
    assert v.status is Status.FAIL and v.summary == ("1 exact copies across splits (1 train-val); 1 val sample has "
                                                     "a sibling in train, in 1 cluster")
    v = _leakage([_pair("near")])  # 1 of 200 val samples: a look-alike too few to inflate val (near_fail_share 1%)
    assert v.status is Status.WARN and v.summary.startswith("1 near copies across splits (1 train-val);")
    v = _leakage([_pair("near"), {**_pair("near"), "a": "train/cat/2.png", "b": "val/cat/2.png"}])  # 2 of 200
    assert v.status is Status.FAIL and v.summary == ("2 near copies across splits (2 train-val); 2 val samples have "
                                                     "a sibling in train, in 2 clusters")
    v = _leakage([_pair("exact", label_b=1)])
    assert v.metrics["conflicting_label_pairs"] == 1 and "carry different labels" in v.summary
    conflict = [f for f in v.findings if "carry different labels" in f.message]
    assert conflict[0].severity is Status.FAIL  # the same bytes under two labels: one label is wrong
    # a look-alike pair under two labels among many samples may be two distinct images met by chance
    v = _leakage([_pair("near", label_b=1)])
    conflict = [f for f in v.findings if "carry different labels" in f.message]
    assert conflict[0].severity is Status.WARN and "meet by chance" in conflict[0].message


def test_split_leakage_groups_in_two_splits_fail():
    v = _leakage(groups={"patient7": {"train": ["a"], "val": ["b"]}})
    assert v.status is Status.FAIL and v.metrics["leaked_groups"] == 1


def test_split_leakage_made_splits_are_info_and_suggest_kfold_below_1000():
    v = _leakage(made=("val",), smallest=999)
    assert v.status is Status.PASS and v.findings[0].severity is Status.INFO and "k-fold" in v.findings[0].message
    assert "k-fold" not in _leakage(made=("val",), smallest=1000).findings[0].message


@pytest.mark.parametrize("val, status", [((100, 100), Status.PASS), ((130, 70), Status.WARN), ((106, 94), Status.PASS)])
def test_split_leakage_label_shift_needs_both_p_value_and_share_difference(val, status):
    # 130/70 against 500/500: p << 0.001 and a 15% share difference; 106/94: a 3% difference
    v = _leakage(counts={"train": np.array([5000, 5000]), "val": np.array(val)})
    assert v.status is status


# -- DNC7 external-validation --------------------------------------------------------------------
def _external(internal_acc=0.9, external_acc=0.85, shift_auc=0.6, comparison=True):
    from dnncheck.checks.external_validation import Comparison, ExternalValidation, ExternalValidationMeasurement

    def scores(acc):
        return {"accuracy": acc, "accuracy_ci": [acc - 0.02, acc + 0.02], "balanced_accuracy": acc,
                "recall": {0: acc, 1: acc}}

    c = Comparison("the probe", "val", 200, 200, scores(internal_acc), scores(external_acc), shift_auc) if comparison else None
    return ExternalValidation.judge(ExternalValidationMeasurement(("cat", "dog"), None, c),
                                    ExternalValidation.Thresholds())


@pytest.mark.parametrize("external, status", [(0.801, Status.PASS), (0.799, Status.FAIL)])
def test_external_validation_max_drop_edge(external, status):
    v = _external(0.9, external)
    assert v.status is status
    if status is Status.FAIL:
        assert v.findings[0].short.startswith("accuracy drops from 0.90") and "hardest" not in v.findings[0].short


@pytest.mark.parametrize("auc, status", [(0.8, Status.PASS), (0.81, Status.WARN), (None, Status.PASS)])
def test_external_validation_shift_auc_edge(auc, status):
    assert _external(shift_auc=auc).status is status


def test_external_validation_without_an_external_set_is_info_not_a_warning():
    v = _external(comparison=False)
    assert v.status is Status.PASS and v.summary == "no external validation set"
    assert v.findings[0].severity is Status.INFO and "PROBAST" in v.findings[0].message


# -- DNC3 label-noise ----------------------------------------------------------------------------
def _noise(rate, confidence=0.95, conflicts=(), gap=None):
    from dnncheck.checks.label_noise import ConfidentLearning, LabelNoise, LabelNoiseMeasurement

    y = np.repeat([0, 1], 50)
    probs = np.where(np.eye(2)[y] > 0, confidence, 1 - confidence)  # confident and right on every sample
    suspects = np.array([0, 1])
    confident = ConfidentLearning(probs, suspects, np.full(100, 0.9), rate) if gap is None else None
    m = LabelNoiseMeasurement(("cat", "dog"), tuple(f"s{i}" for i in range(100)), y, 4, tuple(conflicts),
                              confident=confident, estimators=("probe", "svm"), probe_gap=gap)
    return LabelNoise.judge(m, LabelNoise.Thresholds())


@pytest.mark.parametrize("rate, status", [(0.02, Status.PASS), (0.0201, Status.WARN), (0.05, Status.WARN),
                                          (0.0501, Status.FAIL)])
def test_label_noise_rate_edges(rate, status):
    v = _noise(rate)
    assert v.status is status and v.metrics["estimator_skill"] == pytest.approx(0.9)


@pytest.mark.parametrize("confidence, status", [(0.81, Status.FAIL), (0.79, Status.PASS)])
def test_label_noise_weak_estimators_are_information(confidence, status):
    # skill = min((mean top prob - 1/2) / (1/2), accuracy gain) = 2 x confidence - 1: 0.62 and 0.58 around 0.6
    v = _noise(0.2, confidence)
    assert v.status is status
    assert v.summary.startswith("weak evidence") is (status is Status.PASS)
    if status is Status.PASS:
        assert [f.severity for f in v.findings] == [Status.INFO] * len(v.findings)


def test_label_noise_weak_evidence_warns_when_identical_samples_with_two_labels_confirm_it():
    v = _noise(0.2, 0.79, conflicts=[("a.png", "b.png", "cat", "dog")])
    assert v.status is Status.FAIL  # the conflict itself fails; the suspects warn beside it
    weak = [f for f in v.findings if f.message.startswith("weak evidence")]
    assert weak and weak[0].severity is Status.WARN and "confirmed by identical samples" in weak[0].message


def _ten_class_noise(suggested_for_suspects):
    from dnncheck.checks.label_noise import ConfidentLearning, LabelNoise, LabelNoiseMeasurement

    classes = tuple(str(d) for d in range(10))
    y = np.repeat(np.arange(10), 20)
    probs = np.full((200, 10), 0.5 / 9)
    probs[np.arange(200), y] = 0.5  # weak: top probability 0.5 of 10 classes (skill 0.44)
    suspects = np.flatnonzero(y == 7)[:12]
    probs[suspects] = 0.5 / 9
    probs[suspects, suggested_for_suspects] = 0.5  # the estimators' suggestion for each suspect
    confident = ConfidentLearning(probs, suspects, np.full(200, 0.5), 0.2)
    m = LabelNoiseMeasurement(classes, tuple(f"s{i}" for i in range(200)), y, 4, (), confident=confident,
                              estimators=("probe",))
    return LabelNoise.judge(m, LabelNoise.Thresholds())


def test_label_noise_weak_evidence_concentrated_on_one_class_pair_warns():
    concentrated = _ten_class_noise(1)  # every suspect labelled 7 looks like a 1: a systematic confusion
    assert concentrated.status is Status.WARN and concentrated.metrics["weak_evidence_confirmed"] is True
    assert any("12 of 12 suspects labelled 7 look like 1" in f.message for f in concentrated.findings)
    scattered = _ten_class_noise(np.arange(12) % 7)  # spread over seven classes: candidates only
    assert scattered.status is Status.PASS and scattered.metrics["weak_evidence_confirmed"] is False


def test_label_noise_identical_samples_with_two_labels_fail_even_when_cut_short():
    conflicts = [("a.png", "b.png", "cat", "dog")]
    assert _noise(0.0, conflicts=conflicts).status is Status.FAIL
    v = _noise(0.0, conflicts=conflicts, gap=CUT_SHORT)
    assert v.status is Status.FAIL and v.summary.startswith("inconclusive, the fit probe")
    assert _noise(0.0, gap=CUT_SHORT).status is Status.WARN


@pytest.mark.parametrize("score, status", [(0.989, Status.PASS), (0.99, Status.FAIL)])
def test_split_leakage_single_feature_leak_edge(score, status):
    from dnncheck.checks.split_leakage import SplitLeakage, SplitLeakageMeasurement

    counts = {"train": np.array([500, 500]), "val": np.array([100, 100])}
    m = SplitLeakageMeasurement(("cat", "dog"), (), (), 500, (), {}, counts, {"train": 1000, "val": 200}, None,
                                {"age": 0.7, "label_copy": score})
    v = SplitLeakage.judge(m, SplitLeakage.Thresholds())
    assert v.status is status and v.metrics["best_single_feature"] == "label_copy"
    if status is Status.FAIL:
        assert v.summary.startswith("1 feature(s) alone predict the target almost perfectly: label_copy (0.990)")


@pytest.mark.parametrize("auc, status", [(0.8, Status.PASS), (0.81, Status.WARN)])
def test_split_leakage_covariate_shift_edge(auc, status):
    from dnncheck.checks.split_leakage import SplitLeakage, SplitLeakageMeasurement

    counts = {"train": np.array([500, 500]), "val": np.array([100, 100])}
    m = SplitLeakageMeasurement(("cat", "dog"), (), (), 500, (), {}, counts, {"train": 1000, "val": 200}, None,
                                shift_auc={"val": auc, "test": 0.5})
    v = SplitLeakage.judge(m, SplitLeakage.Thresholds())
    assert v.status is status and v.metrics["split_shift_auc"]["val"] == auc


def _siblings(source: int, train: int, val: int) -> list[dict]:
    """Every pair among the copies of one photo (the square of the cluster's size), `train` of them
    in train and `val` in val: what augmenting before splitting makes."""
    members = [("train", f"train/{source}-{k}.jpg") for k in range(train)]
    members += [("val", f"val/{source}-{k}.jpg") for k in range(val)]
    return [{"a": a, "b": b, "kind": "geometric", "similarity": 0.5, "inliers": 20, "mirrored": False,
             "size_ratio": 1.2, "label_a": 0, "label_b": 0, "split_a": sa, "split_b": sb}
            for k, (sa, a) in enumerate(members) for sb, b in members[k + 1:]]


def test_split_leakage_names_clusters_of_siblings_not_only_their_square_of_pairs():
    """Ten photos, each copied 48 times into train and 12 into val: 17,700 pairs, 10 clusters.
    The finding names the 120 val samples with a training sibling and the 10 clusters; the pairs
    listed stop at MAX_PAIRS, with the total beside them."""
    from dnncheck.checks.split_leakage import MAX_PAIRS, SplitLeakage, SplitLeakageMeasurement

    pairs = [p for source in range(10) for p in _siblings(source, 48, 12)]
    cross = tuple(p for p in pairs if p["split_a"] != p["split_b"])
    within = tuple(p for p in pairs if p["split_a"] == p["split_b"])
    counts = {"train": np.array([240, 240]), "val": np.array([60, 60])}
    m = SplitLeakageMeasurement(("cat", "dog"), (), (), 240, cross, {}, counts, {"train": 480, "val": 120}, None,
                                within_pairs=within)
    v = SplitLeakage.judge(m, SplitLeakage.Thresholds())
    assert v.status is Status.FAIL and v.metrics["duplicate_clusters_across_splits"] == 10
    assert v.metrics["leaked_evaluation_samples"] == 120
    (finding,) = [f for f in v.findings if "pairs" in f.evidence and "clusters" in f.evidence]
    assert finding.short == ("5760 crops, mirror images or rescaled copies across splits (5760 train-val); 120 val "
                             "samples have a sibling in train, in 10 clusters")
    e = finding.evidence
    assert len(e["pairs"]) == MAX_PAIRS and e["pairs_total"] == 5760 and e["pairs_truncated"]
    assert e["clusters_total"] == 10 and e["leaked_samples"] == {"val": 120}
    first = e["clusters"][0]
    assert first["size"] == 60 and first["splits"] == {"train": 48, "val": 12} and first["leaked"] == {"val": 12}
    assert len(first["members"]["train"]) == 25 and len(first["members"]["val"]) == 12
    # a cluster wholly inside train is a set of copies, said in the within-split finding, never leakage
    alone = tuple(_siblings(99, 5, 0))
    m = SplitLeakageMeasurement(("cat", "dog"), (), (), 240, (), {}, counts, {"train": 480, "val": 120}, None,
                                within_pairs=alone)
    v = SplitLeakage.judge(m, SplitLeakage.Thresholds())
    assert v.status is Status.WARN and v.metrics["leaked_evaluation_samples"] == 0
    assert "in 1 set of copies" in v.findings[0].message and v.findings[0].evidence["clusters"][0]["size"] == 5


def test_split_leakage_within_split_pairs_warn_and_are_listed_up_to_a_thousand():
    from dnncheck.checks.split_leakage import MAX_PAIRS as MAX_WITHIN_LISTED
    from dnncheck.checks.split_leakage import SplitLeakage, SplitLeakageMeasurement

    counts = {"train": np.array([500, 500]), "val": np.array([100, 100])}
    within = tuple({"a": f"train:{k}", "b": f"train:{k + 2000}", "kind": "geometric", "similarity": 0.5,
                    "inliers": 20, "mirrored": False, "size_ratio": 1.2, "label_a": 0, "label_b": 0,
                    "split_a": "train", "split_b": "train"} for k in range(MAX_WITHIN_LISTED + 5))
    m = SplitLeakageMeasurement(("cat", "dog"), (), (), 500, (), {}, counts, {"train": 1000, "val": 200}, None,
                                within_pairs=within)
    v = SplitLeakage.judge(m, SplitLeakage.Thresholds())
    assert v.status is Status.WARN and v.metrics["within_split_duplicate_pairs"] == MAX_WITHIN_LISTED + 5
    listed = v.findings[0].evidence["within_split_pairs"]
    assert len(listed) == MAX_WITHIN_LISTED and set(listed[0]) == {"a", "b", "kind", "similarity", "inliers",
                                                                   "mirrored", "size_ratio"}
    assert v.findings[0].evidence["pairs_total"] == MAX_WITHIN_LISTED + 5 and v.findings[0].evidence["pairs_truncated"]
    assert v.summary.startswith(f"{MAX_WITHIN_LISTED + 5} duplicate pair(s) within splits ({MAX_WITHIN_LISTED + 5} geometric)")
    # cross-split geometric pairs are named as crop/mirror/rescaled copies; like every look-alike they
    # fail from near_fail_share of an evaluation split (2 of 200 val samples) and warn below (1 of 200:
    # one flat shape can fit another by chance)
    cross = [{**within[k], "b": f"val:{k}", "split_b": "val"} for k in range(2)]
    for pairs, status in ((cross, Status.FAIL), (cross[:1], Status.WARN)):
        m = SplitLeakageMeasurement(("cat", "dog"), (), (), 500, tuple(pairs), {}, counts,
                                    {"train": 1000, "val": 200}, None)
        v = SplitLeakage.judge(m, SplitLeakage.Thresholds())
        assert v.status is status and v.metrics["geometric_duplicate_pairs"] == len(pairs)
        assert v.summary.startswith(f"{len(pairs)} crops, mirror images or rescaled copies across splits "
                                    f"({len(pairs)} train-val)")
    # three geometric pairs within train (6 of its 1,000 samples) are said, not warned
    assert SplitLeakage.judge(SplitLeakageMeasurement(("cat", "dog"), (), (), 500, (), {}, counts,
                                                      {"train": 1000, "val": 200}, None, within_pairs=within[:3]),
                              SplitLeakage.Thresholds()).findings[0].severity is Status.INFO


# -- DNC3 label-noise: labels unrelated to their inputs (issue 33) ---------------------------------
@pytest.mark.parametrize("score, structure, unrelated", [
    (0.128, 0.70, True),   # 2.95 standard deviations above shuffled labels, structured inputs: no signal
    (0.129, 0.70, False),  # 3.06: weak but real signal stays with the estimators' evidence
    (0.128, 0.86, False),  # no structure in the inputs: the estimators' weakness is the likelier reading
])
def test_label_signal_edges(score, structure, unrelated):
    from dnncheck.checks.label_noise import LabelNoise
    from dnncheck.checks.label_signal import LabelSignal

    # five shuffles at 0.1: their spread is 0, so the binomial one counts, sqrt(0.1 * 0.9 / 1000) = 0.0095
    signal = LabelSignal("accuracy", score, (0.1,) * 5, structure, 1000)
    assert signal.unrelated(LabelNoise.Thresholds()) is unrelated


@pytest.mark.parametrize("score, structure, status, said", [
    (0.04, 0.70, Status.FAIL, "the targets look unrelated to the inputs"),  # z 2.5 on structured inputs
    (0.04, 0.86, Status.PASS, "no verdict on the labels"),
    (0.40, 0.70, Status.PASS, "the targets carry signal about the inputs"),
])
def test_target_signal_judge(score, structure, status, said):
    from dnncheck.checks.label_noise import LabelNoise, _judge_target
    from dnncheck.checks.label_signal import LabelSignal

    target = LabelSignal("R2", score, (0.0, 0.02, -0.02, 0.01, -0.01), structure, 400)  # sd 0.0158
    v = _judge_target(target, LabelNoise.Thresholds())
    assert v.status is status and said in v.summary
