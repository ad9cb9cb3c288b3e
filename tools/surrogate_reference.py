#!/usr/bin/python3
"""Independent reference for `candor surrogate` (issue 9, acceptance 4).

Fits scikit-learn's DecisionTreeClassifier on the features candor used
(DIR/features.npy), the model's predicted classes (DIR/predictions.npy) and
candor's training split (DIR/train.npy), with the settings recorded in
DIR/surrogate.json, and prints JSON comparing the two trees:
  sklearn_fidelity_{train,test}  agreement of sklearn's tree with the model
  candor_fidelity_{train,test}   the same for candor's tree, recomputed here
                                 by walking the nodes in surrogate.json
  reported_fidelity_{train,test} what candor reported
  tree_agreement_test            fraction of held-out rows where both trees
                                 predict the same class
  sklearn_nodes, candor_nodes

Usage: /usr/bin/python3 tools/surrogate_reference.py DIR [--seed 0]
"""
import argparse
import json
import os

import numpy as np
from sklearn.tree import DecisionTreeClassifier


def walk(nodes, X):
    out = np.empty(len(X), np.int64)
    for i, row in enumerate(X):
        n = nodes[0]
        while n["feature"] >= 0:
            n = nodes[n["left"] if row[n["feature"]] <= n["threshold"] else n["right"]]
        out[i] = n["class"]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    X = np.load(os.path.join(a.dir, "features.npy")).astype(np.float32)
    y = np.load(os.path.join(a.dir, "predictions.npy"))
    train = np.load(os.path.join(a.dir, "train.npy")).astype(bool)
    with open(os.path.join(a.dir, "surrogate.json")) as f:
        rep = json.load(f)
    s = rep["settings"]
    clf = DecisionTreeClassifier(criterion="gini",
                                 max_depth=s["max_depth"] if s["max_depth"] > 0 else None,
                                 min_samples_leaf=s["min_samples_leaf"],
                                 min_samples_split=s["min_samples_split"],
                                 random_state=a.seed)
    clf.fit(X[train], y[train])
    sk = clf.predict(X)
    cd = walk(rep["tree"]["nodes"], X)
    test = ~train
    print(json.dumps({
        "sklearn_fidelity_train": float((sk[train] == y[train]).mean()),
        "sklearn_fidelity_test": float((sk[test] == y[test]).mean()),
        "candor_fidelity_train": float((cd[train] == y[train]).mean()),
        "candor_fidelity_test": float((cd[test] == y[test]).mean()),
        "reported_fidelity_train": rep["fidelity"]["train"],
        "reported_fidelity_test": rep["fidelity"]["test"],
        "tree_agreement_test": float((sk[test] == cd[test]).mean()),
        "sklearn_nodes": int(clf.tree_.node_count),
        "candor_nodes": len(rep["tree"]["nodes"]),
    }, indent=1))


if __name__ == "__main__":
    main()
