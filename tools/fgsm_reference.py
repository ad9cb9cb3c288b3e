#!/usr/bin/python3
"""Reference FGSM with PyTorch autograd on an ONNX classifier, for checking
`candor robustness --attack fgsm`.

The ONNX graph is rebuilt by hand as torch operations (Conv, Relu, MaxPool,
Flatten, Gemm, Dropout as identity, Constant; enough for the bundled
Fashion-MNIST CNNs), with the weights read from the initializers by the onnx
package, and run in float64 so its gradient signs are the exact ones up to
float64 rounding. FGSM: x' = clamp(x + eps * sign(d CE(f(x), y) / dx), lo, hi)
with CE the cross-entropy of the true label on the pre-softmax output
(sign(0) = 0), x' computed in float32 like candor.

usage: fgsm_reference.py MODEL.onnx CLEAN.npy LABELS.npy --eps E --lo LO --hi HI
           [--out ADV.npy] [--compare CANDOR_ADV.npy] [--min-agreement 0.999]
CLEAN.npy holds model inputs (after preprocessing), LABELS.npy their labels
(the first len(CLEAN) are used). With --compare, prints the fraction of pixels
where both adversarial images agree (|a - b| <= 1e-6) and the fraction of
same-sign gradients, and exits 1 below --min-agreement.
"""
import argparse
import sys

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper


def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def conv(node, ins, at):
    x, w = ins[0], ins[1]
    b = ins[2] if len(ins) > 2 else None
    pads = at.get("pads", [0, 0, 0, 0])
    if pads[0] != pads[2] or pads[1] != pads[3]:
        raise SystemExit(f"{node.name}: asymmetric pads not supported")
    return F.conv2d(x, w, b, stride=tuple(at.get("strides", [1, 1])),
                    padding=(pads[0], pads[1]), dilation=tuple(at.get("dilations", [1, 1])),
                    groups=at.get("group", 1))


def maxpool(node, ins, at):
    pads = at.get("pads", [0, 0, 0, 0])
    return F.max_pool2d(ins[0], tuple(at["kernel_shape"]),
                        stride=tuple(at.get("strides", at["kernel_shape"])),
                        padding=(pads[0], pads[1]), ceil_mode=bool(at.get("ceil_mode", 0)))


def gemm(node, ins, at):
    a, b = ins[0], ins[1]
    if at.get("transA", 0):
        a = a.t()
    if at.get("transB", 0):
        b = b.t()
    y = at.get("alpha", 1.0) * (a @ b)
    if len(ins) > 2:
        y = y + at.get("beta", 1.0) * ins[2]
    return y


OPS = {
    "Conv": conv,
    "Relu": lambda n, i, a: torch.relu(i[0]),
    "MaxPool": maxpool,
    "Flatten": lambda n, i, a: torch.flatten(i[0], a.get("axis", 1)),
    "Gemm": gemm,
    "Dropout": lambda n, i, a: i[0],  # inference form: identity
    "Identity": lambda n, i, a: i[0],
}


def run_graph(model, x):
    env = {t.name: torch.from_numpy(numpy_helper.to_array(t).astype(np.float64))
           if numpy_helper.to_array(t).dtype.kind == "f"
           else torch.from_numpy(numpy_helper.to_array(t))
           for t in model.graph.initializer}
    env[model.graph.input[0].name] = x
    for node in model.graph.node:
        at = attrs(node)
        if node.op_type == "Constant":
            env[node.output[0]] = torch.from_numpy(numpy_helper.to_array(at["value"]).copy())
            continue
        if node.op_type not in OPS:
            raise SystemExit(f"op {node.op_type} ({node.name}) not supported by this reference")
        ins = [env[n] for n in node.input if n]
        env[node.output[0]] = OPS[node.op_type](node, ins, at)
    return env[model.graph.output[0].name]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("clean")
    ap.add_argument("labels")
    ap.add_argument("--eps", type=float, required=True)
    ap.add_argument("--lo", type=float, required=True)
    ap.add_argument("--hi", type=float, required=True)
    ap.add_argument("--out")
    ap.add_argument("--compare")
    ap.add_argument("--min-agreement", type=float, default=0.999)
    a = ap.parse_args()
    model = onnx.load(a.model)
    clean = np.load(a.clean).astype(np.float32)
    labels = np.load(a.labels).astype(np.int64)[: len(clean)]
    x = torch.from_numpy(clean.astype(np.float64)).requires_grad_(True)
    logits = run_graph(model, x)
    loss = F.cross_entropy(logits, torch.from_numpy(labels), reduction="sum")
    loss.backward()
    sign = np.sign(x.grad.numpy()).astype(np.float32)
    adv = np.clip(clean + np.float32(a.eps) * sign, np.float32(a.lo), np.float32(a.hi))
    adv = adv.astype(np.float32)
    if a.out:
        np.save(a.out, adv)
    acc_clean = float((logits.detach().numpy().argmax(1) == labels).mean())
    with torch.no_grad():
        acc_adv = float((run_graph(model, torch.from_numpy(adv.astype(np.float64))).numpy()
                         .argmax(1) == labels).mean())
    print(f"reference: {len(clean)} rows, accuracy clean {acc_clean:.4f}, FGSM {acc_adv:.4f}")
    if not a.compare:
        return 0
    cand = np.load(a.compare).astype(np.float32)
    if cand.shape != adv.shape:
        print(f"shape mismatch: candor {cand.shape} vs reference {adv.shape}")
        return 1
    same = np.abs(cand - adv) <= 1e-6
    # Sign agreement: candor's step sign is recoverable where it moved a pixel
    # or where neither moved it; a clipped pixel counts as agreeing when the
    # adversarial values agree.
    cand_sign = np.sign(cand - clean)
    moved = np.abs(cand - clean) > 0.5 * a.eps
    sign_ok = np.where(moved, cand_sign == sign, same)
    agree = float(same.mean())
    print(f"agreement: {agree:.6f} of {same.size} pixels equal; same gradient sign on "
          f"{float(sign_ok.mean()):.6f}")
    return 0 if agree >= a.min_agreement and float(sign_ok.mean()) >= a.min_agreement else 1


if __name__ == "__main__":
    sys.exit(main())
