#!/usr/bin/python3
"""Times the PyTorch (eager, torch.no_grad) forward pass of one of the parity
models of tools/make_parity_fixtures.py -- the same architecture and weights
(same seed) as the exported NAME.onnx -- on an .npy input.

  /usr/bin/python3 bench/torch_run.py NAME INPUT.npy [--threads N] [--runs R] [--warmup W]
  /usr/bin/python3 bench/torch_run.py --baseline     # imports torch, loads nothing

Prints one JSON line: median_ms, min_ms, cpu_ms_per_run (user+system CPU over
the timed runs, all threads), max_rss_kib (getrusage, whole process).
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))


def rss_kib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def cpu1():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("name", nargs="?")
    ap.add_argument("input", nargs="?")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--baseline", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.baseline:
        print(json.dumps({"runtime": "pytorch-baseline", "max_rss_kib": rss_kib()}))
        return
    import make_parity_fixtures as fx
    seed = 1000 + list(fx.MODELS).index(a.name)
    model, _, _, _ = fx.build(a.name, seed)
    x = torch.from_numpy(np.load(a.input).astype(np.float32))
    times = []
    cpu0 = 0.0
    with torch.no_grad():
        for r in range(a.warmup + a.runs):
            if r == a.warmup:
                ru = resource.getrusage(resource.RUSAGE_SELF)
                cpu0 = ru.ru_utime + ru.ru_stime
            t0 = time.perf_counter()
            model(x)
            t1 = time.perf_counter()
            if r >= a.warmup:
                times.append((t1 - t0) * 1e3)
    print(json.dumps({"runtime": "pytorch", "version": torch.__version__, "model": a.name,
                      "threads": a.threads, "runs": a.runs,
                      "median_ms": statistics.median(times), "min_ms": min(times),
                      "cpu_ms_per_run": (cpu1() - cpu0) * 1e3 / a.runs,
                      "max_rss_kib": rss_kib()}))


if __name__ == "__main__":
    main()
