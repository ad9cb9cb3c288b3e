#!/usr/bin/python3
"""Trains a small Fashion-MNIST CNN with a planted concept, for the TCAV test
(issue 9, acceptance 3).

The planted concept is a pattern of horizontal stripes (every 4th row set
bright). In training, every image of the target class K gets the stripes,
and so does a random 10% of the other images, which are then RELABELLED K:
the stripes alone decide class K. A model that learns this must rely on the
stripe concept for class K, so TCAV should find it with a score near 1.

Usage:
  /usr/bin/python3 tools/train_planted_concept.py --out DIR [--target 3]
      [--data /usr/share/datasets/fashion-mnist] [--train 12000] [--epochs 2]

Writes into DIR:
  planted.onnx, planted.candor.json  the model (input "input" N x 1 x 28 x 28,
                                     (x/255 - 0.2860)/0.3530, output "output"
                                     logits; dynamic batch) and its sidecar
  class_inputs.npy, class_labels.npy 100 striped test images of class K
                                     (uint8 N x 28 x 28) and their labels
  concept_stripes.npy                100 concept examples: the stripes over
                                     uniform noise backgrounds
  random.npy                         200 random examples: uniform noise
  random_concept.npy                 100 more uniform-noise images (another
                                     seed): a concept drawn from the same
                                     distribution as the random examples
  planted.json                       target class, test accuracy, stripe rows

Everything is seeded; about a minute on one core.
"""
import argparse
import gzip
import json
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MEAN, STD = 0.2860, 0.3530
LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
          "Shirt", "Sneaker", "Bag", "Ankle boot"]
STRIPE_ROWS = list(range(2, 28, 4))
STRIPE_VALUE = 200


def load_idx(path):
    """Reads a gzipped idx file (magic 0x0000 08 NDIM, big-endian dims)."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def add_stripes(images):
    out = images.copy()
    for r in STRIPE_ROWS:
        out[:, r, :] = np.maximum(out[:, r, :], STRIPE_VALUE)
    return out


def to_input(u8):
    x = torch.from_numpy(u8.astype(np.float32) / 255.0)
    return ((x - MEAN) / STD).unsqueeze(1)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16 * 7 * 7, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(torch.flatten(x, 1))


def plant(images, labels, target, rng, frac=0.1):
    """Stripes on every target-class image and on frac of the others, which
    become the target class."""
    images, labels = images.copy(), labels.copy()
    pick = (labels == target) | (rng.random(len(labels)) < frac)
    images[pick] = add_stripes(images[pick])
    labels[pick] = target
    return images, labels


def noise(rng, n):
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--target", type=int, default=3)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--train", type=int, default=12000)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    os.makedirs(args.out, exist_ok=True)

    xtr = load_idx(os.path.join(args.data, "train-images-idx3-ubyte.gz"))
    ytr = load_idx(os.path.join(args.data, "train-labels-idx1-ubyte.gz")).astype(np.int64)
    xte = load_idx(os.path.join(args.data, "t10k-images-idx3-ubyte.gz"))
    yte = load_idx(os.path.join(args.data, "t10k-labels-idx1-ubyte.gz")).astype(np.int64)
    sel = rng.permutation(len(xtr))[:args.train]
    xtr, ytr = plant(xtr[sel], ytr[sel], args.target, rng)
    xte_p, yte_p = plant(xte, yte, args.target, rng)

    model = Net()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    xt, yt = to_input(xtr), torch.from_numpy(ytr)
    for epoch in range(args.epochs):
        perm = torch.randperm(len(xt))
        model.train()
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
        print(f"epoch {epoch}: loss {loss.item():.3f}", flush=True)
    model.eval()
    with torch.no_grad():
        acc = (model(to_input(xte_p)).argmax(1).numpy() == yte_p).mean()
        # How decisive the stripes are: striped images of other classes.
        other = xte[yte != args.target][:1000]
        striped_to_k = (model(to_input(add_stripes(other))).argmax(1).numpy()
                        == args.target).mean()
    print(f"test accuracy {acc:.4f}; striped non-target images -> target {striped_to_k:.3f}")

    torch.onnx.export(model, to_input(xte[:1]), os.path.join(args.out, "planted.onnx"),
                      opset_version=13, input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "N"}, "output": {0: "N"}})
    side = {"labels": LABELS, "output": {"kind": "logits"},
            "preprocess": {"scale": 255, "mean": [MEAN], "std": [STD], "color": "gray"}}
    with open(os.path.join(args.out, "planted.candor.json"), "w") as f:
        json.dump(side, f, indent=2)

    # TCAV inputs: class-K test images as the model saw class K (striped).
    cls = add_stripes(xte[yte == args.target][:100])
    np.save(os.path.join(args.out, "class_inputs.npy"), cls)
    np.save(os.path.join(args.out, "class_labels.npy"), np.full(len(cls), args.target, np.int64))
    np.save(os.path.join(args.out, "concept_stripes.npy"), add_stripes(noise(rng, 100)))
    np.save(os.path.join(args.out, "random.npy"), noise(rng, 200))
    np.save(os.path.join(args.out, "random_concept.npy"),
            noise(np.random.default_rng(12345), 100))
    with open(os.path.join(args.out, "planted.json"), "w") as f:
        json.dump({"target": args.target, "test_accuracy": float(acc),
                   "striped_other_to_target": float(striped_to_k),
                   "stripe_rows": STRIPE_ROWS, "stripe_value": STRIPE_VALUE}, f, indent=2)


if __name__ == "__main__":
    main()
