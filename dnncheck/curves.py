"""Training histories: reading the user's (Keras JSON, Lightning-style CSV) and diagnosing any
history (overfitting onset, divergence, NaN, plateau, oscillation, no learning, a wrong-loss scale).

A history is a dict of equal-length per-epoch lists: loss, val_loss, acc, val_acc (any may be
missing). Diagnosis returns (metrics, findings) for the training-curves check to wrap.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from dnncheck.errors import UserError, first_line, require_regular_file
from dnncheck.results import Finding, Status

ALIASES = {
    "loss": ("loss", "train_loss", "train_loss_epoch", "training_loss"),
    "val_loss": ("val_loss", "valid_loss", "validation_loss", "val_loss_epoch"),
    "acc": ("acc", "accuracy", "train_acc", "train_accuracy", "train_acc_epoch"),
    "val_acc": ("val_acc", "val_accuracy", "valid_acc", "validation_accuracy", "val_acc_epoch"),
}


def read_history(path: Path) -> dict[str, list[float]]:
    require_regular_file(path, "history file", "give a Keras history JSON or a CSV log")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _from_json(path)
    if suffix == ".csv":
        return _from_csv(path)
    raise UserError(f"{path}: unsupported history file {suffix or '(no extension)'}; use .json (Keras) or .csv")


def _from_json(path: Path) -> dict:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc}); save history.history with json.dump") from None
    except RecursionError:
        raise UserError(f"{path}: JSON nested too deeply to be a training history; save history.history with "
                        "json.dump") from None
    if isinstance(raw, dict) and isinstance(raw.get("history"), dict):
        raw = raw["history"]
    if not isinstance(raw, dict) or not all(isinstance(v, list) for v in raw.values()):
        raise UserError(f"{path}: expected an object of metric name to list of per-epoch values "
                        '(Keras: {"loss": [...], "val_loss": [...]})')
    return _canonical({k: v for k, v in raw.items()}, path)


def _from_csv(path: Path) -> dict:
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except Exception as exc:
        raise UserError(f"{path}: cannot parse the CSV ({first_line(exc)})") from None
    if "epoch" in frame.columns:
        # Lightning's CSVLogger writes step rows and epoch rows with blanks: the last value per epoch
        frame = frame.groupby("epoch", sort=True).last(skipna=True).reset_index()
    elif "step" in frame.columns:
        frame = frame.sort_values("step")
    return _canonical({c: frame[c].tolist() for c in frame.columns if frame[c].dtype.kind in "fiu"}, path)


def _canonical(raw: dict, path: Path) -> dict:
    out = {}
    for name, aliases in ALIASES.items():
        for alias in aliases:
            if alias in raw:
                try:
                    out[name] = [float(v) if v is not None else math.nan for v in raw[alias]]
                except (TypeError, ValueError):
                    raise UserError(f"{path}: column {alias!r} holds non-numeric values") from None
                break
    if "loss" not in out and "val_loss" not in out:
        raise UserError(f"{path}: no loss found (looked for {', '.join(ALIASES['loss'] + ALIASES['val_loss'])})")
    lengths = {len(v) for v in out.values()}
    if len(lengths) > 1 or 0 in lengths:
        raise UserError(f"{path}: the metric lists have different or zero lengths ({sorted(lengths)})")
    return out


# How much history a reading needs, not how strict it is (the thresholds are): a trend needs a start,
# a middle and an end; a reversal rate over fewer than four changes is noise; "the end of the run"
# for accuracy is its last fifth.
MIN_TREND_EPOCHS = 3
MIN_OSCILLATION_EPOCHS = 5
LAST_SHARE = 5


def diagnose(history: dict, num_classes: int | None, t, short: bool = False) -> tuple[dict, list[Finding]]:
    """Metrics and findings for a per-epoch history (`t`: TrainingCurves.Thresholds). Epochs are
    reported 1-based. `short`: a compact probe (a few steps of a costly model), too short to expect
    a model trained from scratch to generalise."""
    loss = _array(history.get("loss"))
    val = _array(history.get("val_loss"))
    metrics: dict = {"epochs": int(len(loss if loss is not None else val))}
    findings = []
    for name, series in (("loss", loss), ("val_loss", val)):
        if series is not None and not np.all(np.isfinite(series)):
            first = int(np.flatnonzero(~np.isfinite(series))[0]) + 1
            findings.append(Finding(Status.FAIL, f"{name} becomes non-finite at epoch {first}: the run diverged "
                                    "(learning rate too high, log(0) or bad inputs)", evidence={"epoch": first}))
            return metrics, findings
    if loss is not None:
        findings += _divergence(loss, metrics, t)
        findings += _oscillation(loss, metrics, t)
        findings += _loss_scale(loss, num_classes, metrics, t)
    if val is not None and len(val) >= MIN_TREND_EPOCHS:
        findings += _overfitting(loss, val, metrics, t, short)
        findings += _plateau(val, metrics, t, short)
    findings += _no_learning(history, loss, num_classes, metrics, t, short)
    return metrics, findings


def _array(values):
    return None if values is None else np.asarray(values, dtype=float)


def _divergence(loss, metrics, t):
    best = int(np.argmin(loss))
    metrics["train_loss_first"], metrics["train_loss_last"] = round(float(loss[0]), 5), round(float(loss[-1]), 5)
    factor = t.divergence_factor
    if len(loss) >= MIN_TREND_EPOCHS and loss[-1] > factor * loss[0] and loss[-1] > loss[best] * factor:
        head = f"training loss grows from {loss[0]:.4g} to {loss[-1]:.4g}: the run diverges"
        return [Finding(Status.FAIL, f"{head}; lower the learning rate", headline=head)]
    return []


def _overfitting(loss, val, metrics, t, short=False):
    best = int(np.argmin(val))
    rise = float((val[-1] - val[best]) / max(abs(val[best]), 1e-12))
    metrics.update(best_epoch=best + 1, best_val_loss=round(float(val[best]), 5),
                   val_loss_rise_since_best=round(rise, 4))
    if loss is not None:
        metrics["train_val_gap_last"] = round(float(val[-1] - loss[-1]), 5)
    still_falling = loss is None or loss[-1] < loss[best]
    held = int(t.overfit_min_epochs)
    if len(val) - 1 - best < held or not still_falling:
        return []  # the best epoch is among the last `held`: a wobble at the end is not an onset
    # the rise that held through each of the last `held` epochs, not the last epoch's alone
    sustained = float((np.min(val[-held:]) - val[best]) / max(abs(val[best]), 1e-12))
    metrics["val_loss_rise_sustained"] = round(sustained, 4)
    severity = (Status.FAIL if sustained >= t.overfit_rise_fail else Status.WARN if sustained >= t.overfit_rise_warn
                else None)
    if severity is None:
        return []
    head = (f"overfitting from epoch {best + 1}: validation loss is lowest there ({val[best]:.4g}) and has risen "
            f"{rise:.0%} by epoch {len(val)} (at least {sustained:.0%} in each of the last {held} epochs) while "
            "training loss kept falling")
    if short:  # a few dozen samples for a few epochs: the onset says nothing about the user's training
        return [Finding(Status.INFO, f"{head} in the compact probe (a few dozen samples, a few epochs): not evidence "
                        "about full training", evidence={"best_epoch": best + 1, "rise": rise})]
    return [Finding(severity, f"{head}; stop early at epoch {best + 1} or regularise",
                    evidence={"best_epoch": best + 1, "rise": rise}, headline=head)]


def _plateau(val, metrics, t, short=False):
    span = max(3, len(val) // 3)
    tail = val[-span:]
    change = float((tail.max() - tail.min()) / max(abs(tail.mean()), 1e-12))
    overall = float((val.max() - val.min()) / max(abs(val.mean()), 1e-12))
    metrics["val_loss_change_last_third"] = round(change, 5)
    if overall < t.plateau_change:
        head = (f"validation loss is flat over the whole run (range {overall:.2%} of its mean): the model is not "
                "learning what validation measures")
        if short:  # a few epochs on a few dozen samples; BatchNorm's running statistics (torchvision's
            # MobileNetV3 uses momentum 0.01) have not caught up, so evaluation may see a constant model
            return [Finding(Status.INFO, f"{head} in the compact probe (a few dozen samples, a few epochs): not "
                            "evidence about full training")]
        return [Finding(Status.WARN, f"{head}; check the learning rate and inputs", headline=head)]
    return []


def _oscillation(loss, metrics, t):
    if len(loss) < MIN_OSCILLATION_EPOCHS:
        return []
    steps = np.diff(loss)
    flips = float(np.mean(np.sign(steps[1:]) != np.sign(steps[:-1])))
    amplitude = float(np.median(np.abs(steps)) / max(abs(float(np.median(loss))), 1e-12))
    metrics.update(oscillation_sign_flips=round(flips, 3), oscillation_amplitude=round(amplitude, 4))
    if flips >= t.oscillation_flips and amplitude >= t.oscillation_amplitude:
        return [Finding(Status.WARN, f"training loss oscillates ({flips:.0%} of epochs reverse direction, typical swing "
                        f"{amplitude:.0%}): the learning rate is probably too high")]
    return []


# A first loss this far from ln C cannot be cross-entropy at init; only then is a BCE-like value
# conclusive. Not a threshold: for C >= 3 the two values are far apart (0.64 vs 1.10 at C = 3).
CE_DISTINCT_SHARE = 0.5


def _loss_scale(loss, num_classes, metrics, t):
    if not num_classes or num_classes < 3:
        return []
    from dnncheck.probes.losses import bce_over_softmax_initial_loss, expected_initial_loss

    ce, bce = expected_initial_loss(num_classes), bce_over_softmax_initial_loss(num_classes)
    metrics.update(expected_initial_loss=round(ce, 4), bce_over_softmax_initial_loss=round(bce, 4))
    first = float(loss[0])
    if abs(first - bce) < t.loss_scale_tolerance * bce and abs(first - ce) > CE_DISTINCT_SHARE * ce:
        return [Finding(Status.WARN, f"the first loss {first:.3f} matches binary cross-entropy over a {num_classes}-way "
                        f"softmax ({bce:.3f}), not cross-entropy's ln {num_classes} = {ce:.2f}: check the loss function")]
    return []


def _no_learning(history, loss, num_classes, metrics, t, short):
    """Accuracy near chance. Nothing is learned when the training loss does not fall either (fail;
    warn after a compact probe's few steps); when it falls by `learning_drop` the model learns its
    training data but does not generalise: warn (labels that disagree between splits, memorisation),
    info after a compact probe, where a large model trained from scratch has not had the steps to."""
    acc = history.get("val_acc") or history.get("acc")
    if not acc or not num_classes:
        return []
    final = float(np.nanmax(np.asarray(acc, dtype=float)[-max(1, len(acc) // LAST_SHARE):]))
    chance = 1.0 / num_classes
    metrics["final_accuracy"] = round(final, 4)
    if final >= chance + t.chance_margin:
        return []
    where = f"accuracy stays near chance ({final:.2f} vs {chance:.2f} for {num_classes} classes)"
    fell = loss is not None and len(loss) >= 2 and loss[0] > 0 and loss[-1] <= (1 - t.learning_drop) * loss[0]
    if not fell:
        return [Finding(Status.WARN if short else Status.FAIL, f"{where}: nothing is being learned", headline=where)]
    drop = f"training loss fell {1 - loss[-1] / loss[0]:.0%} ({loss[0]:.3g} -> {loss[-1]:.3g})"
    if short:
        return [Finding(Status.INFO, f"{where} after the compact probe's few steps while {drop}: the model learns its "
                        "training samples; generalising takes longer than the probe")]
    return [Finding(Status.WARN, f"{where} while {drop}: the model fits its training data but does not generalise "
                    "(validation labels that disagree with training, or memorisation)", headline=where)]
