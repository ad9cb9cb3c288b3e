#!/usr/bin/python3
"""Independent reference for candor's calibration metrics (NumPy + scikit-learn).

Usage: calib_reference.py FIXTURE.csv BINS > metrics.json
FIXTURE.csv: header, k probability columns, then a 'label' column (int index).
Written from the definitions in GUIDE section 4 / docs/calibration.md, not
from candor's C code. Exit status 77 when scikit-learn is unavailable.
"""
import json
import sys

try:
    import numpy as np
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score
except ImportError as exc:  # the C test turns this into a skip
    print(f"reference unavailable: {exc}", file=sys.stderr)
    sys.exit(77)


def bin_of(p, m):
    """0-based bin of ((j-1)/M, j/M]; p = 0 goes to the first bin."""
    edges = np.arange(m + 1) / m
    j = np.searchsorted(edges, p, side="left")
    return np.clip(j, 1, m) - 1


def weighted_gap(group, hit, score, groups):
    n = len(hit)
    ece, mce = 0.0, 0.0
    for g in range(groups):
        sel = group == g
        c = sel.sum()
        if c == 0:
            continue
        gap = abs(hit[sel].mean() - score[sel].mean())
        ece += c / n * gap
        mce = max(mce, gap)
    return ece, mce


def main():
    path, m = sys.argv[1], int(sys.argv[2])
    data = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64)
    p, y = data[:, :-1], data[:, -1].astype(int)
    n, k = p.shape
    pred = p.argmax(axis=1)
    conf = p.max(axis=1)
    correct = (pred == y).astype(float)
    onehot = np.eye(k)[y]
    out = {}
    out["accuracy"] = correct.mean()
    out["nll"] = -np.log(np.clip(p[np.arange(n), y], 1e-12, None)).mean()
    out["nll_sklearn"] = log_loss(y, p, labels=list(range(k)))
    out["brier"] = ((p - onehot) ** 2).sum(axis=1).mean()
    if k == 2:  # sklearn's binary Brier is half the two-class sum
        out["brier_sklearn"] = 2 * brier_score_loss(y, p[:, 1])
    out["ece"], out["mce"] = weighted_gap(bin_of(conf, m), correct, conf, m)
    order = np.argsort(conf, kind="stable")
    group = np.empty(n, dtype=int)
    sizes = [n // m + (1 if g < n % m else 0) for g in range(m)]
    group[order] = np.repeat(np.arange(m), sizes)
    out["adaptive_ece"], _ = weighted_gap(group, correct, conf, m)
    out["classwise_ece"] = np.mean(
        [weighted_gap(bin_of(p[:, c], m), (y == c).astype(float), p[:, c], m)[0] for c in range(k)])
    if 0 < correct.sum() < n:
        out["auroc"] = roc_auc_score(correct, conf)
    else:
        out["auroc"] = None
    # AURC over distinct thresholds: each tie group enters at once.
    aurc = 0.0
    for t in np.unique(conf):
        accepted = conf >= t
        aurc += (conf == t).sum() / n * (1 - correct[accepted].mean())
    errors = n - correct.sum()
    i = np.arange(1, n + 1)
    oracle = (np.clip(i - (n - errors), 0, None) / i).mean()
    out["aurc"] = aurc
    out["excess_aurc"] = aurc - oracle
    json.dump({key: (None if v is None else float(v)) for key, v in out.items()}, sys.stdout)


if __name__ == "__main__":
    main()
