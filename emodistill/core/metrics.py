"""Classification metrics used by every eval loop: accuracy, UAR, WAR, macro-F1, confusion."""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """[C, C] counts; rows are true classes, columns predictions."""
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def classification_metrics(y_true, y_pred, num_classes: int) -> dict:
    """accuracy (= WAR, weighted average recall), UAR (mean per-class recall over present classes),
    macro-F1 (over present classes) and per-class recall (NaN for absent classes)."""
    cm = confusion_matrix(y_true, y_pred, num_classes)
    support = cm.sum(1)
    tp = np.diag(cm).astype(float)
    total = cm.sum()
    present = support > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(present, tp / np.maximum(support, 1), np.nan)
        predicted = cm.sum(0)
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        rec0 = np.nan_to_num(recall)
        f1 = np.where(precision + rec0 > 0, 2 * precision * rec0 / (precision + rec0), 0.0)
    acc = float(tp.sum() / total) if total else float("nan")
    return {
        "accuracy": acc,
        "war": acc,
        "uar": float(np.nanmean(recall)) if present.any() else float("nan"),
        "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
        "per_class_recall": [None if np.isnan(r) else float(r) for r in recall],
        "num_samples": int(total),
        "confusion": cm.tolist(),
    }
