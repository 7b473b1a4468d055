"""Compare flywheel's logistic fit with scikit-learn's on the same design matrix.

Usage: sklearn_compare.py EXPORT_DIR   (written by `flywheel train --export-design EXPORT_DIR`)
For each target it fits LogisticRegression(C = 1/alpha) on train.csv — the same objective as
linfa's (sum of log-losses + alpha/2 * |w|^2, intercept not penalised) — and compares the holdout
ROC AUC with flywheel's. Exits 1 when they differ by more than 0.005."""
import json
import os
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

root = sys.argv[1]
worst = 0.0
for target in sorted(os.listdir(root)):
    d = os.path.join(root, target)
    ours = json.load(open(os.path.join(d, "flywheel.json")))
    train = np.loadtxt(os.path.join(d, "train.csv"), delimiter=",", skiprows=1)
    hold = np.loadtxt(os.path.join(d, "holdout.csv"), delimiter=",", skiprows=1)
    model = LogisticRegression(C=1.0 / ours["alpha"], max_iter=5000, tol=1e-8)
    model.fit(train[:, :-1], train[:, -1])
    auc = roc_auc_score(hold[:, -1], model.predict_proba(hold[:, :-1])[:, 1])
    diff = abs(auc - ours["roc_auc"])
    worst = max(worst, diff)
    print(f"{target}: flywheel holdout ROC AUC {ours['roc_auc']:.5f}, scikit-learn {auc:.5f}, |diff| {diff:.5f}")
sys.exit(0 if worst <= 0.005 else 1)
