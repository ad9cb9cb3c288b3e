#!/usr/bin/python3
"""PyTorch reference for bench/mc_cost.sh: MC dropout on torchvision's
resnet18 (batch 1, 224x224, eval mode, torch.no_grad) done the usual way,
looping T full forward passes with dropout active at one site.

  /usr/bin/python3 bench/mc_cost_torch.py INPUT.npy [--T 50] [--threads 2] [--runs 3]

Sites: "fc" (dropout on the input of the final Linear) and "layer3"
(dropout on layer3's output). Prints one JSON line with the median times in
ms: det_ms (one deterministic pass), loop_fc_ms, loop_layer3_ms (T passes).
"""
import argparse
import json
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision


def forward(m, x, site, p):
    x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
    x = m.layer3(m.layer2(m.layer1(x)))
    if site == "layer3":
        x = F.dropout(x, p, training=True)
    x = torch.flatten(m.avgpool(m.layer4(x)), 1)
    if site == "fc":
        x = F.dropout(x, p, training=True)
    return m.fc(x)


def timed(fn, runs):
    fn()  # warm-up
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("input")
    ap.add_argument("--T", type=int, default=50)
    ap.add_argument("--p", type=float, default=0.2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    m = torchvision.models.resnet18(weights=None, num_classes=1000).eval()
    x = torch.from_numpy(np.load(a.input))
    res = {"T": a.T, "threads": a.threads, "runs": a.runs, "torch": torch.__version__}
    with torch.no_grad():
        res["det_ms"] = timed(lambda: forward(m, x, None, 0), 5 * a.runs)
        for site in ("fc", "layer3"):
            res["loop_%s_ms" % site] = timed(
                lambda: [forward(m, x, site, a.p) for _ in range(a.T)], a.runs)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
