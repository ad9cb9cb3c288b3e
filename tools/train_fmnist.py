#!/usr/bin/python3
"""Trains and exports candor's bundled Fashion-MNIST models (issue 7).

Usage:
  /usr/bin/python3 tools/train_fmnist.py [--out models] [--only cnn,ens,seg,data]
      [--data /usr/share/datasets/fashion-mnist] [--threads 1]

Writes into --out (default: models/ next to this script's parent):
  fmnist_cnn.onnx        CNN with nn.Dropout, 3 epochs, exported with its
                         Dropout nodes kept (tools/export_with_dropout.py)
  fmnist_ens_{0..4}.onnx 5-member deep ensemble: same small CNN, seeds 100..104,
                         2 epochs each, plain eval-mode export (no dropout)
  fmnist_seg.onnx        small U-Net with nn.Dropout for 64x64 scenes of 2-3
                         Fashion-MNIST items; per-pixel logits, 11 classes
                         (0 background, 1 + Fashion-MNIST class)
  NAME.candor.json       sidecars (labels, preprocessing, output kind)
  samples/               6 test-split images (PNG and JPEG, one ambiguous),
                         2 test-split scenes for the segmentation model,
                         samples.json describing them
  calib/                 2,000 test-split images (uint8 N x 28 x 28) + labels
  train_results.json     test metrics measured here with PyTorch

Everything is seeded (torch.manual_seed / numpy default_rng). Models take
input (x/255 - 0.2860)/0.3530, shape N x 1 x 28 x 28 (segmentation:
N x 1 x 64 x 64), named "input"; output "output", dynamic batch axis.
Test metrics use the 8,000 test images NOT in calib/ (the calibration sample
must stay unseen by any choice made here); the sample images also come from
those 8,000.
"""
import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_with_dropout import export_with_dropout, verify  # noqa: E402

LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
          "Shirt", "Sneaker", "Bag", "Ankle boot"]
MEAN, STD = 0.2860, 0.3530
PREPROCESS = {"scale": 255, "mean": [MEAN], "std": [STD], "color": "gray"}
N_CALIB = 2000
SEG_SIZE = 64
SEG_THRESHOLD = 40  # an item pixel > 40/255 counts as the item, else background
QUICK = False       # --quick: tiny smoke run of the whole pipeline


# --------------------------------------------------------------- data ------
def load_idx(path):
    """Reads a gzipped idx file (magic 0x0000 08 NDIM, big-endian dims)."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError("%s: not a uint8 idx file" % path)
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    return data.reshape(dims)


def load_split(root, split):
    prefix = "train" if split == "train" else "t10k"
    x = load_idx(os.path.join(root, prefix + "-images-idx3-ubyte.gz"))
    y = load_idx(os.path.join(root, prefix + "-labels-idx1-ubyte.gz"))
    return x, y.astype(np.int64)


def to_input(images_u8):
    x = torch.from_numpy(images_u8.astype(np.float32) / 255.0)
    return ((x - MEAN) / STD).unsqueeze(1)


def split_test(n_test):
    """Seeded permutation of the test split: calibration sample + the rest."""
    perm = np.random.default_rng(7).permutation(n_test)
    return np.sort(perm[:N_CALIB]), np.sort(perm[N_CALIB:])


def make_scenes(images, labels, n, rng):
    """n canvases of SEG_SIZE^2 with 2-3 items pasted at random positions;
    later items cover earlier ones where their pixels exceed SEG_THRESHOLD.
    Returns uint8 canvases (n, 64, 64) and int64 label maps (n, 64, 64)."""
    canv = np.zeros((n, SEG_SIZE, SEG_SIZE), np.uint8)
    lab = np.zeros((n, SEG_SIZE, SEG_SIZE), np.int64)
    for i in range(n):
        for _ in range(rng.integers(2, 4)):
            k = rng.integers(len(images))
            r, c = rng.integers(0, SEG_SIZE - 28 + 1, size=2)
            item = images[k]
            mask = item > SEG_THRESHOLD
            canv[i, r:r + 28, c:c + 28][mask] = item[mask]
            lab[i, r:r + 28, c:c + 28][mask] = labels[k] + 1
    return canv, lab


# ------------------------------------------------------------- models ------
class FmnistCNN(nn.Module):
    """Conv(32)-ReLU-Pool-Conv(64)-ReLU-Pool-Dropout-FC(128)-ReLU-Dropout-FC.
    Only element-wise nn.Dropout (Dropout2d cannot be exported in training
    mode) and no BatchNorm (keeps the MC-dropout export trivially inference
    form)."""

    def __init__(self, c1=32, c2=64, hidden=128, p_conv=0.25, p_fc=0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        layers = [nn.Flatten()]
        if p_conv > 0:
            layers.append(nn.Dropout(p_conv))
        layers += [nn.Linear(c2 * 7 * 7, hidden), nn.ReLU()]
        if p_fc > 0:
            layers.append(nn.Dropout(p_fc))
        layers.append(nn.Linear(hidden, 10))
        self.head = nn.Sequential(*layers)

    def forward(self, x):
        return self.head(self.features(x))


class SegNet(nn.Module):
    """Small U-Net: 64 -> 32 -> 16 (two convs + Dropout) -> bilinear x2 with
    skip concat -> ConvTranspose x2 with skip concat -> 1x1 head, 11 classes."""

    def __init__(self, w=8, classes=11, p=0.3):
        super().__init__()
        self.enc1 = nn.Sequential(nn.Conv2d(1, w, 3, padding=1), nn.ReLU())
        self.enc2 = nn.Sequential(nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU())
        self.mid = nn.Sequential(
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(4 * w, 4 * w, 3, padding=2, dilation=2), nn.ReLU(),
            nn.Dropout(p))
        self.dec2 = nn.Sequential(nn.Conv2d(6 * w, 2 * w, 3, padding=1),
                                  nn.ReLU(), nn.Dropout(p))
        self.up1 = nn.ConvTranspose2d(2 * w, w, 2, stride=2)
        self.dec1 = nn.Sequential(nn.Conv2d(2 * w, w, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(w, classes, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        m = self.mid(F.max_pool2d(e2, 2))
        u2 = F.interpolate(m, scale_factor=2.0, mode="bilinear",
                           align_corners=False)
        d2 = self.dec2(torch.cat([u2, e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        return self.head(d1)


# ----------------------------------------------------------- training ------
def train(model, x, y, epochs, seed, batch=128, lr=1e-3, log=""):
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = len(x)
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        total, t0 = 0.0, time.time()
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total += float(loss) * len(idx)
        print("%s epoch %d/%d loss %.4f (%.0f s)" % (log, ep + 1, epochs,
              total / n, time.time() - t0), file=sys.stderr)
    model.eval()
    return model


@torch.no_grad()
def logits_of(model, x, batch=1000):
    model.eval()
    return torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])


def metrics(probs, y, bins=15):
    """Accuracy, NLL (nats, p clamped at 1e-12), Brier (sum over classes,
    range [0, 2]) and ECE (15 equal-width bins) -- GUIDE section 4."""
    probs = probs.astype(np.float64)
    n = len(y)
    pred = probs.argmax(1)
    conf = probs.max(1)
    correct = (pred == y).astype(np.float64)
    nll = -np.mean(np.log(np.clip(probs[np.arange(n), y], 1e-12, None)))
    onehot = np.eye(probs.shape[1])[y]
    brier = np.mean(np.sum((probs - onehot) ** 2, 1))
    ece = 0.0
    for m in range(bins):
        sel = (conf > m / bins) & (conf <= (m + 1) / bins)
        if sel.any():
            ece += sel.sum() / n * abs(correct[sel].mean() - conf[sel].mean())
    return {"accuracy": float(correct.mean()), "nll": float(nll),
            "brier": float(brier), "ece": float(ece), "n": int(n)}


def softmax(z):
    return torch.softmax(torch.as_tensor(z), 1).numpy()


# ------------------------------------------------------------- export ------
def ort_check(model, x, path, tol=1e-4):
    """ONNX Runtime output vs eval-mode PyTorch (skipped if bench/ lacks
    onnxruntime-node). Returns the max abs error or None."""
    here = os.path.dirname(os.path.abspath(__file__))
    runner = os.path.join(here, "..", "bench", "ort_run.js")
    if not os.path.isdir(os.path.join(here, "..", "bench", "node_modules",
                                      "onnxruntime-node")):
        return None
    with torch.no_grad():
        ref = model(x).numpy()
    with tempfile.TemporaryDirectory() as d:
        xin, yout = os.path.join(d, "x.npy"), os.path.join(d, "y.npy")
        np.save(xin, x.numpy())
        subprocess.run(["node", runner, path, xin, yout], check=True)
        err = float(np.abs(np.load(yout) - ref).max())
    assert err <= tol * max(1.0, float(np.abs(ref).max())), (path, err)
    return err


def load_from_onnx(model, path):
    """Loads weights back from an ONNX file exported without constant
    folding, whose initializer names are the state_dict keys."""
    import onnx
    from onnx import numpy_helper
    inits = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy())
             for i in onnx.load(path).graph.initializer}
    model.load_state_dict({k: inits[k] for k in model.state_dict()})
    return model.eval()


def export_plain(model, x, path):
    model.eval()
    with torch.no_grad():
        torch.onnx.export(model, x, path, opset_version=13,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"},
                                        "output": {0: "batch"}},
                          do_constant_folding=True,
                          training=torch.onnx.TrainingMode.EVAL)


def write_sidecar(out, name, kind, labels):
    side = {"labels": labels, "preprocess": PREPROCESS,
            "output": {"kind": kind}}
    with open(os.path.join(out, name + ".candor.json"), "w") as f:
        json.dump(side, f, indent=2)
        f.write("\n")


# -------------------------------------------------------------- steps ------
def step_cnn(out, xtr, ytr, xev, yev, results):
    torch.manual_seed(1)
    model = train(FmnistCNN(), xtr, ytr, epochs=1 if QUICK else 3, seed=1,
                  log="fmnist_cnn")
    path = os.path.join(out, "fmnist_cnn.onnx")
    n_drop = export_with_dropout(model, xev[:4], path)
    found = verify(model, xev[:4], path)
    probs = softmax(logits_of(model, xev))
    results["fmnist_cnn"] = dict(metrics(probs, yev), dropout_nodes=n_drop,
                                 ort_max_abs_err=found.get("ort_max_abs_err"))
    # MC dropout in PyTorch as a reference point (T = 10, seed 11).
    torch.manual_seed(11)
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.train()
    with torch.no_grad():
        mc = np.mean([softmax(torch.cat([model(xev[i:i + 1000])
                      for i in range(0, len(xev), 1000)])) for _ in range(10)], 0)
    model.eval()
    results["fmnist_cnn_mc10_pytorch"] = metrics(mc, yev)
    write_sidecar(out, "fmnist_cnn", "logits", LABELS)
    return model


def step_ens(out, xtr, ytr, xev, yev, results):
    member_probs = []
    for i in range(5):
        seed = 100 + i
        torch.manual_seed(seed)
        model = train(FmnistCNN(c1=16, c2=32, hidden=64, p_conv=0, p_fc=0),
                      xtr, ytr, epochs=1 if QUICK else 2, seed=seed,
                      log="fmnist_ens_%d" % i)
        name = "fmnist_ens_%d" % i
        path = os.path.join(out, name + ".onnx")
        export_plain(model, xev[:4], path)
        err = ort_check(model, xev[:4], path)
        p = softmax(logits_of(model, xev))
        member_probs.append(p)
        results[name] = dict(metrics(p, yev), seed=seed, ort_max_abs_err=err)
        write_sidecar(out, name, "logits", LABELS)
    results["fmnist_ens_mean"] = metrics(np.mean(member_probs, 0), yev)


def seg_metrics(logits, lab):
    pred = logits.argmax(1)
    ious = []
    for c in range(1, 11):
        inter = np.sum((pred == c) & (lab == c))
        union = np.sum((pred == c) | (lab == c))
        if union:
            ious.append(inter / union)
    fg = lab > 0
    return {"pixel_accuracy": float((pred == lab).mean()),
            "foreground_accuracy": float((pred[fg] == lab[fg]).mean()),
            "mean_iou_foreground": float(np.mean(ious))}


def step_seg(out, xtr_u8, ytr, xte_u8, yte, results, n_train=12000, epochs=5):
    if QUICK:
        n_train, epochs = 200, 1
    rng = np.random.default_rng(21)
    canv, lab = make_scenes(xtr_u8, ytr, n_train, rng)
    torch.manual_seed(2)
    model = train(SegNet(), to_input(canv), torch.from_numpy(lab),
                  epochs=epochs, seed=2, batch=32, lr=2e-3, log="fmnist_seg")
    path = os.path.join(out, "fmnist_seg.onnx")
    ecanv, elab = make_scenes(xte_u8, yte, 500, np.random.default_rng(22))
    xe = to_input(ecanv)
    n_drop = export_with_dropout(model, xe[:2], path)
    found = verify(model, xe[:2], path)
    results["fmnist_seg"] = dict(seg_metrics(logits_of(model, xe, 100).numpy(),
                                             elab),
                                 n_train_scenes=n_train, epochs=epochs,
                                 n_eval_scenes=500, dropout_nodes=n_drop,
                                 ort_max_abs_err=found.get("ort_max_abs_err"))
    write_sidecar(out, "fmnist_seg", "segmentation", ["background"] + LABELS)
    return model, ecanv, elab


def save_image(path, arr):
    from PIL import Image
    img = Image.fromarray(arr, mode="L")
    if path.endswith(".jpg"):
        img.save(path, quality=95)
    else:
        img.save(path)


def step_data(out, xte_u8, yte, calib_idx, eval_idx, cnn, seg_scenes):
    """Calibration sample, sample images (chosen with the trained CNN: five
    confidently right ones of different classes, one ambiguous)."""
    cdir, sdir = os.path.join(out, "calib"), os.path.join(out, "samples")
    os.makedirs(cdir, exist_ok=True)
    os.makedirs(sdir, exist_ok=True)
    np.save(os.path.join(cdir, "fmnist_calib_images.npy"), xte_u8[calib_idx])
    np.save(os.path.join(cdir, "fmnist_calib_labels.npy"), yte[calib_idx])
    with open(os.path.join(cdir, "README.md"), "w") as f:
        f.write("# Calibration sample\n\n%d Fashion-MNIST TEST-split images "
                "(seeded permutation, seed 7; see tools/train_fmnist.py).\n"
                "- fmnist_calib_images.npy: uint8, shape (%d, 28, 28), raw "
                "pixels (apply the sidecar preprocessing)\n"
                "- fmnist_calib_labels.npy: int64, shape (%d,), class index "
                "0-9\n- fmnist_calib_index.npy: int64, their indices in the "
                "test split\n" % (N_CALIB, N_CALIB, N_CALIB))
    np.save(os.path.join(cdir, "fmnist_calib_index.npy"),
            calib_idx.astype(np.int64))

    probs = softmax(logits_of(cnn, to_input(xte_u8[eval_idx])))
    samples = []
    wanted = [(1, "png"), (7, "jpg"), (8, "jpg"), (9, "jpg"), (3, "png")]
    for cls, ext in wanted:
        ok = np.where((yte[eval_idx] == cls) & (probs.argmax(1) == cls))[0]
        j = ok[np.argmax(probs[ok, cls])]
        samples.append((j, ext, LABELS[cls]))
    top2 = np.sort(probs, 1)[:, -2:]
    j = int(np.argmin(top2[:, 1] - top2[:, 0]))   # smallest top-1/top-2 margin
    samples.append((j, "png", "ambiguous"))   # PNG: exact pixels
    desc = []
    for j, ext, tag in samples:
        k = int(eval_idx[j])
        stem = tag.lower().replace("/", "_").replace(" ", "_").replace("-", "")
        fname = "%s_%05d.%s" % (stem, k, ext)
        save_image(os.path.join(sdir, fname), xte_u8[k])
        # Reference probabilities of the file as decoded (JPEG is lossy).
        from PIL import Image
        dec = np.asarray(Image.open(os.path.join(sdir, fname)).convert("L"))
        p = softmax(logits_of(cnn, to_input(dec[None])))[0]
        desc.append({"file": fname, "test_index": k,
                     "label": int(yte[k]), "label_name": LABELS[yte[k]],
                     "ambiguous": tag == "ambiguous",
                     "max_abs_pixel_change": int(np.abs(
                         dec.astype(int) - xte_u8[k]).max()),
                     "fmnist_cnn_probs_pytorch": [round(float(q), 5)
                                                  for q in p]})
    ecanv, elab = seg_scenes
    for i in range(2):
        fname = "scene_%d.png" % i
        save_image(os.path.join(sdir, fname), ecanv[i])
        np.save(os.path.join(sdir, "scene_%d.labels.npy" % i),
                elab[i].astype(np.uint8))
        desc.append({"file": fname, "labels": "scene_%d.labels.npy" % i,
                     "kind": "segmentation scene from the test split, "
                             "labels 0 background, 1 + class"})
    with open(os.path.join(sdir, "samples.json"), "w") as f:
        json.dump({"samples": desc}, f, indent=2)
        f.write("\n")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(here, "..", "models"))
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--only", default="cnn,ens,seg,data")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 2,000 training images, 1 epoch")
    args = ap.parse_args()
    global QUICK
    QUICK = args.quick
    torch.set_num_threads(args.threads)
    steps = set(args.only.split(","))
    os.makedirs(args.out, exist_ok=True)

    xtr_u8, ytr = load_split(args.data, "train")
    xte_u8, yte = load_split(args.data, "test")
    calib_idx, eval_idx = split_test(len(yte))
    if QUICK:
        xtr_u8, ytr = xtr_u8[:2000], ytr[:2000]
    xtr, ytr_t = to_input(xtr_u8), torch.from_numpy(ytr)
    xev, yev = to_input(xte_u8[eval_idx]), yte[eval_idx]

    res_path = os.path.join(args.out, "train_results.json")
    results = {}
    if os.path.exists(res_path):
        with open(res_path) as f:
            results = json.load(f).get("results", {})
    cnn = None
    if "cnn" in steps:
        cnn = step_cnn(args.out, xtr, ytr_t, xev, yev, results)
    if "ens" in steps:
        step_ens(args.out, xtr, ytr_t, xev, yev, results)
    if "seg" in steps:
        step_seg(args.out, xtr_u8, ytr, xte_u8[eval_idx], yev, results)
    if "data" in steps:
        if cnn is None:   # reuse the exported CNN instead of retraining
            cnn = load_from_onnx(FmnistCNN(),
                                 os.path.join(args.out, "fmnist_cnn.onnx"))
        # The same 500 evaluation scenes step_seg scores (seed 22).
        scenes = make_scenes(xte_u8[eval_idx], yev, 500,
                             np.random.default_rng(22))
        step_data(args.out, xte_u8, yte, calib_idx, eval_idx, cnn, scenes)
    summary = {"torch": torch.__version__, "eval_set":
               "Fashion-MNIST test split minus the calibration sample "
               "(%d images)" % len(eval_idx), "results": results}
    with open(res_path, "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
