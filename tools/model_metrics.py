#!/usr/bin/python3
"""Measures the bundled Fashion-MNIST models with candor (issue 7, acceptance 5).

Every probability comes from the candor CLI and every reported metric from
`candor report` / `candor calibrate`; NumPy only prepares the inputs and, with
--check, recomputes the metrics from the probabilities candor saved.

Protocol (docs/models.md, "Calibration metrics measured by candor"):
  evaluation set   the 8,000 Fashion-MNIST test images that are not in the
                   calibration sample (/usr/share/datasets/fashion-mnist)
  temperature      fitted by `candor calibrate` on models/calib (2,000 images,
                   --split 0.5 --seed 0: 1,000 rows fit T), applied to the
                   evaluation set's logits by `candor report --calibration`
  MC dropout       `candor predict --mc T --seed 0` (mean of T samples)
  ensemble         `candor predict --ensemble` over fmnist_ens_{0..4} (mean)

  /usr/bin/python3 tools/model_metrics.py --candor build/candor --out /tmp/mm [--check]

Exit 77 when the dataset is missing (the test then skips).
"""
import argparse
import gzip
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATASET = "/usr/share/datasets/fashion-mnist"
METRICS = ("accuracy", "nll", "brier", "ece")
TOL = 1e-6


def read_idx(path):
    raw = gzip.open(path).read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def preprocess(images, sidecar):
    """The sidecar's preprocessing, (pixel/scale - mean)/std, in float32 as candor does."""
    pp = json.load(open(sidecar))["preprocess"]
    x = images.astype(np.float32) / np.float32(pp["scale"])
    x = (x - np.float32(pp["mean"][0])) / np.float32(pp["std"][0])
    return x.reshape(-1, 1, images.shape[-2], images.shape[-1]).astype(np.float32)


def candor(cli, *args, stdout=None):
    cmd = [cli] + [str(a) for a in args]
    print("+ candor " + " ".join(str(a) for a in args), file=sys.stderr)
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if res.returncode != 0:
        sys.exit("candor failed (%d): %s\n%s" % (res.returncode, " ".join(cmd), res.stderr))
    if stdout:
        with open(stdout, "w") as f:
            f.write(res.stdout)
    return res.stdout


def write_csv(path, rows, labels):
    k = rows.shape[1]
    with open(path, "w") as f:
        f.write(",".join("c%d" % j for j in range(k)) + ",label\n")
        for r, y in zip(rows, labels):
            f.write(",".join(repr(float(v)) for v in r) + ",%d\n" % y)


def read_csv(path):
    data = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64)
    return data[:, :-1], data[:, -1].astype(np.int64)


def report_metrics(path):
    rep = json.load(open(path))
    got = {m["name"]: m["value"] for m in rep["metrics"]}
    return {k: got[k] for k in METRICS}


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def numpy_metrics(p, y, bins=15):
    """GUIDE section 4 definitions, float64."""
    n, k = p.shape
    pred = p.argmax(axis=1)
    conf = p.max(axis=1)
    correct = (pred == y).astype(np.float64)
    nll = -np.mean(np.log(np.maximum(p[np.arange(n), y], 1e-12)))
    onehot = np.eye(k)[y]
    brier = np.mean(np.sum((p - onehot) ** 2, axis=1))
    b = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)  # ((m-1)/M, m/M]
    ece = 0.0
    for m in range(bins):
        sel = b == m
        if sel.any():
            ece += sel.sum() / n * abs(correct[sel].mean() - conf[sel].mean())
    return {"accuracy": correct.mean(), "nll": nll, "brier": brier, "ece": ece}


def saved_probs(a, key, cal):
    """The probabilities behind a table row, from the CSV candor's outputs went into."""
    s, _ = read_csv(os.path.join(a.out, {"temperature": "single"}.get(key, key) + ".csv"))
    if key == "single":
        return softmax(s)
    if key == "temperature":
        return softmax(s / cal["temperature"])
    return s


def calibrate_split(n, split, seed):
    """tools/cmd_calibrate.c's split: splitmix64 Fisher-Yates, calibration = first part."""
    mask = (1 << 64) - 1
    s = seed
    p = list(range(n))
    for i in range(n, 1, -1):
        s = (s + 0x9E3779B97F4A7C15) & mask
        z = s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        z ^= z >> 31
        j = z % i
        p[i - 1], p[j] = p[j], p[i - 1]
    return np.array(p[:int(round(split * n))])


def measure(a):
    if not os.path.exists(os.path.join(DATASET, "t10k-images-idx3-ubyte.gz")):
        print("SKIP: %s missing (Debian package dataset-fashion-mnist)" % DATASET)
        sys.exit(77)
    os.makedirs(a.out, exist_ok=True)
    for f in os.listdir(a.out):  # candor refuses to overwrite its outputs: start clean
        if f.endswith((".npy", ".json", ".csv", ".md")):
            os.remove(os.path.join(a.out, f))
    o = lambda name: os.path.join(a.out, name)
    models = a.models
    cnn = os.path.join(models, "fmnist_cnn.onnx")
    members = [os.path.join(models, "fmnist_ens_%d.onnx" % i) for i in range(5)]
    calib_images = os.path.join(models, "calib", "fmnist_calib_images.npy")
    calib_labels = os.path.join(models, "calib", "fmnist_calib_labels.npy")

    images = read_idx(os.path.join(DATASET, "t10k-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(DATASET, "t10k-labels-idx1-ubyte.gz")).astype(np.int64)
    keep = np.ones(len(labels), bool)
    keep[np.load(os.path.join(models, "calib", "fmnist_calib_index.npy"))] = False
    x, y = images[keep], labels[keep]
    if a.limit:
        x, y = x[:a.limit], y[:a.limit]
    np.save(o("eval_inputs.npy"), preprocess(x, cnn[:-5] + ".candor.json"))
    np.save(o("eval_labels.npy"), y)
    np.save(o("calib_inputs.npy"), preprocess(np.load(calib_images), cnn[:-5] + ".candor.json"))

    # Single model: logits from `candor run`, metrics from `candor report --logits`.
    candor(a.candor, "run", cnn, o("eval_inputs.npy"), "-o", o("single_logits.npy"))
    candor(a.candor, "run", cnn, o("calib_inputs.npy"), "-o", o("calib_logits.npy"))
    write_csv(o("single.csv"), np.load(o("single_logits.npy")), y)
    candor(a.candor, "report", "--predictions", o("single.csv"), "--logits", "--bootstrap", 0,
           "--json", o("single.report.json"))

    # Temperature scaling fitted on the calibration sample, applied to the evaluation set.
    candor(a.candor, "calibrate", cnn, "--data", calib_images, "--labels", calib_labels,
           "--split", a.split, "--seed", 0, "--bootstrap", 0, "--force",
           "-o", o("calib.json"), "--json", o("calib.report.json"))
    candor(a.candor, "report", "--predictions", o("single.csv"), "--logits", "--bootstrap", 0,
           "--calibration", o("calib.json"), "--json", o("temperature.report.json"))

    # MC dropout and the ensemble: candor's mean probabilities (predict --json)
    # and every sample (--samples).
    candor(a.candor, "predict", cnn, o("eval_inputs.npy"), "--mc", a.mc, "--seed", 0,
           "--samples", o("mc.samples.npy"), "--json", stdout=o("mc.json"))
    mc_mean = np.array([r["mean"] for r in json.load(open(o("mc.json")))])
    write_csv(o("mc.csv"), mc_mean, y)
    candor(a.candor, "report", "--predictions", o("mc.csv"), "--bootstrap", 0,
           "--json", o("mc.report.json"))

    candor(a.candor, "predict", *members, "--ensemble", o("eval_inputs.npy"),
           "--samples", o("ensemble.samples.npy"), "--json", stdout=o("ensemble.json"))
    ens_mean = np.array([r["mean"] for r in json.load(open(o("ensemble.json")))])
    write_csv(o("ensemble.csv"), ens_mean, y)
    candor(a.candor, "report", "--predictions", o("ensemble.csv"), "--bootstrap", 0,
           "--json", o("ensemble.report.json"))
    ens_samples = np.load(o("ensemble.samples.npy"))
    for m in range(len(members)):
        write_csv(o("member_%d.csv" % m), ens_samples[:, m, :], y)
        candor(a.candor, "report", "--predictions", o("member_%d.csv" % m),
               "--bootstrap", 0, "--json", o("member_%d.report.json" % m))

    cal = json.load(open(o("calib.json")))
    rows = [("fmnist_cnn (dropout off)", "single"),
            ("fmnist_cnn + temperature T=%.4f" % cal["temperature"], "temperature"),
            ("fmnist_cnn, MC dropout T=%d" % a.mc, "mc")]
    rows += [("fmnist_ens_%d" % m, "member_%d" % m) for m in range(len(members))]
    rows += [("5-ensemble (mean of probabilities)", "ensemble")]
    results = {"n": int(len(y)), "mc_samples": a.mc, "temperature": cal["temperature"],
               "fit_nll_before": cal["fit_nll_before"], "fit_nll_after": cal["fit_nll_after"],
               "rows": {key: dict(name=name, **report_metrics(o(key + ".report.json")))
                        for name, key in rows}}
    for key in results["rows"]:  # candor report has no mean-confidence metric
        results["rows"][key]["mean_confidence"] = float(saved_probs(a, key, cal).max(axis=1).mean())
    json.dump(results, open(o("metrics.json"), "w"), indent=1)
    lines = ["| model | accuracy | NLL | Brier | ECE | mean confidence* |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, key in rows:
        r = results["rows"][key]
        lines.append("| %s | %.2f%% | %.4f | %.4f | %.2f%% | %.2f%% |"
                     % (name, 100 * r["accuracy"], r["nll"], r["brier"], 100 * r["ece"],
                        100 * r["mean_confidence"]))
    member_nll = np.mean([results["rows"]["member_%d" % m]["nll"] for m in range(len(members))])
    lines.append("")
    lines.append("n = %d; temperature fit on %d calibration rows: NLL %.4f -> %.4f; "
                 "members' mean NLL %.4f" % (len(y), len(calibrate_split(2000, a.split, 0)),
                                             cal["fit_nll_before"], cal["fit_nll_after"],
                                             member_nll))
    lines.append("* mean of the top-class probability (NumPy, from candor's probabilities)")
    open(o("table.md"), "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return results


def check(a, results):
    """What must hold, against NumPy recomputations from candor's saved outputs."""
    o = lambda name: os.path.join(a.out, name)
    failures = []

    def close(what, got, want, tol=TOL):
        if not abs(got - want) <= tol:
            failures.append("%s: candor %.10g, NumPy %.10g" % (what, got, want))

    cal = json.load(open(o("calib.json")))
    t = cal["temperature"]
    for key in results["rows"]:
        _, y = read_csv(o("single.csv"))
        ref = numpy_metrics(saved_probs(a, key, cal), y)
        for m in METRICS:
            close("%s %s" % (key, m), results["rows"][key][m], ref[m])

    # The CSVs hold what candor predicted: JSON means = means of the saved samples,
    # the logits CSV = candor run's output.
    for name in ("mc", "ensemble"):
        s, _ = read_csv(o(name + ".csv"))
        samples = np.load(o(name + ".samples.npy")).astype(np.float64)
        close("%s: max |JSON mean - mean of samples|" % name,
              float(np.abs(s - samples.mean(axis=1)).max()), 0.0)
    s, _ = read_csv(o("single.csv"))
    close("single: max |CSV - candor run logits|",
          float(np.abs(s - np.load(o("single_logits.npy"))).max()), 0.0, 0.0)

    # A mixture's log loss never exceeds the members' average.
    members = [results["rows"][k]["nll"] for k in results["rows"] if k.startswith("member")]
    ens = results["rows"]["ensemble"]["nll"]
    if not ens <= np.mean(members) + 1e-12:
        failures.append("ensemble NLL %.6f > members' mean %.6f" % (ens, np.mean(members)))

    # Temperature scaling never raises the calibration-split NLL: candor's own
    # numbers, and NumPy on the same split of candor run's calibration logits.
    if not cal["fit_nll_after"] <= cal["fit_nll_before"] + 1e-12:
        failures.append("calibrate: fit NLL %.6f -> %.6f rose" % (cal["fit_nll_before"],
                                                                  cal["fit_nll_after"]))
    idx = calibrate_split(2000, a.split, 0)
    z = np.load(o("calib_logits.npy")).astype(np.float64)[idx]
    yc = np.load(os.path.join(a.models, "calib", "fmnist_calib_labels.npy"))[idx]
    nll = lambda p: -np.mean(np.log(np.maximum(p[np.arange(len(yc)), yc], 1e-12)))
    before, after = nll(softmax(z)), nll(softmax(z / t))
    close("calibration-split NLL before", cal["fit_nll_before"], before)
    close("calibration-split NLL after", cal["fit_nll_after"], after)
    if not after <= before + 1e-12:
        failures.append("NumPy: calibration-split NLL %.6f -> %.6f rose" % (before, after))
    for ts in (0.5, 0.9, 1.2, 2.0):  # T is a minimiser: nearby temperatures do no better
        if nll(softmax(z / (t * ts))) < after - 1e-9:
            failures.append("T*%.1f gives a lower calibration-split NLL than candor's T" % ts)

    if failures:
        print("FAIL:\n  " + "\n  ".join(failures))
        return 1
    print("ok: %d rows x %d metrics equal NumPy within %g; ensemble NLL %.4f <= members' mean "
          "%.4f; calibration-split NLL %.4f -> %.4f" % (len(results["rows"]), len(METRICS), TOL,
                                                        ens, np.mean(members), before, after))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--candor", required=True, help="the candor binary")
    ap.add_argument("--out", required=True, help="folder for candor's outputs")
    ap.add_argument("--models", default=os.path.normpath(os.path.join(HERE, "..", "models")))
    ap.add_argument("--mc", type=int, default=20, help="MC dropout samples (20)")
    ap.add_argument("--split", type=float, default=0.5, help="calibrate --split (0.5)")
    ap.add_argument("--limit", type=int, default=0, help="first N evaluation images only")
    ap.add_argument("--check", action="store_true", help="assert against NumPy")
    a = ap.parse_args()
    results = measure(a)
    sys.exit(check(a, results) if a.check else 0)


if __name__ == "__main__":
    main()
