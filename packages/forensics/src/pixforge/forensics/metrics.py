"""Binary detection metrics on fake probabilities (label 1 = fake), in numpy; a test checks them against
scikit-learn's on fixed scores.

    accuracy(labels, probs)        fraction right with "fake" = prob >= 0.5
    roc_curve(labels, scores)      (fpr, tpr, thresholds) at every distinct score, as sklearn's drop_intermediate=False
    roc_auc(labels, scores)        the area under it (ties counted half: Mann-Whitney U / (P * N))
    log_loss(labels, probs)        mean binary cross-entropy, probabilities clipped to [eps, 1 - eps]
    eer(labels, scores)            the equal error rate: where the false-positive and false-negative rates cross
                                   (linear between the two ROC points around the crossing)
"""

from __future__ import annotations

import numpy as np


def _arrays(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.float64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels but {s.size} scores")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    return y, s


def accuracy(labels, probs, threshold: float = 0.5) -> float:
    y, p = _arrays(labels, probs)
    return float(np.mean((p >= threshold) == (y == 1))) if y.size else float("nan")


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False- and true-positive rates at each distinct score taken as the threshold (descending), starting at
    (0, 0) with threshold +inf."""
    y, s = _arrays(labels, scores)
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    last = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]  # the last index of each run of equal scores
    tps = np.cumsum(y)[last]
    fps = (last + 1) - tps
    nan = np.full(tps.size + 1, np.nan)
    tpr = np.r_[0.0, tps] / tps[-1] if tps.size and tps[-1] > 0 else nan
    fpr = np.r_[0.0, fps] / fps[-1] if fps.size and fps[-1] > 0 else nan
    return fpr, tpr, np.r_[np.inf, s[last]]


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve; nan when only one class is present."""
    y, s = _arrays(labels, scores)
    pos, neg = int(y.sum()), int(y.size - y.sum())
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size)
    sorted_s = s[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_s)) + 1]
    ends = np.r_[starts[1:], s.size]
    for a, b in zip(starts, ends, strict=True):  # average rank (1-based) of each tie group
        ranks[order[a:b]] = (a + b + 1) / 2.0
    u = ranks[y == 1].sum() - pos * (pos + 1) / 2.0
    return float(u / (pos * neg))


def log_loss(labels, probs, eps: float = 1e-15) -> float:
    y, p = _arrays(labels, probs)
    p = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))) if y.size else float("nan")


def eer(labels, scores) -> float:
    """Equal error rate: the ROC's false-positive rate where it equals the false-negative rate 1 - tpr."""
    fpr, tpr, _ = roc_curve(labels, scores)
    if np.isnan(fpr).any() or np.isnan(tpr).any():
        return float("nan")
    fnr = 1.0 - tpr
    diff = fnr - fpr  # decreasing from 1 to -1 along the curve
    k = int(np.flatnonzero(diff <= 0)[0])
    if k == 0 or diff[k] == 0:
        return float(fpr[k])
    t = diff[k - 1] / (diff[k - 1] - diff[k])
    return float(fpr[k - 1] + t * (fpr[k] - fpr[k - 1]))


def summary(labels, probs) -> dict[str, float]:
    """ACC, AUC, log loss, EER and the counts of one set of fake probabilities."""
    y, p = _arrays(labels, probs)
    return {"acc": accuracy(y, p), "auc": roc_auc(y, p), "log_loss": log_loss(y, p), "eer": eer(y, p),
            "n": int(y.size), "n_fake": int(y.sum()), "n_real": int(y.size - y.sum())}
