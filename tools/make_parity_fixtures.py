#!/usr/bin/python3
"""Builds PyTorch reference fixtures for candor's parity tests.

Usage: /usr/bin/python3 tools/make_parity_fixtures.py OUTDIR [--models a,b,...]

For every model this writes, into OUTDIR:
  NAME.onnx        exported with torch.onnx.export, opset 13, eval mode,
                   do_constant_folding=True, input "input" / output "output",
                   both with a dynamic batch axis (dim 0)
  NAME.input.npy   float32 input, batch 1, from a seeded generator
  NAME.output.npy  float32 PyTorch eval-mode output for that input
  NAME.grad.npy    float32 gradient of a scalar of the output w.r.t. the input,
                   computed with autograd (definitions below, also recorded in
                   manifest.json under "grad_definition")
and OUTDIR/manifest.json listing models, shapes, tolerances and gradient
definitions.

Gradient definitions (the scalar whose input-gradient is saved):
  classifiers (resnet18, mobilenet_v2, mobilenet_v3_small, squeezenet1_1):
      output[0, c] with c = argmax(output[0])           (pre-softmax score)
  unet:
      sum(output[0, 1, 16:48, 16:48])                    (class channel 1,
      the central 32x32 region of the 64x64 map)
  conv1d_reg:
      sum(output)
All gradients are computed with float64 autograd from the float32 weights and
input (the target class is the float32 output's argmax), saved as float32.

Weights are random (torch.manual_seed per model name), never downloaded.
BatchNorm layers get random affine parameters and running statistics measured
on random inputs, so BN folding is really exercised and activations keep a
healthy scale (see randomise_bn); classifier heads are rescaled to unit logit
spread (see normalise_head).
"""
import argparse
import copy
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

OPSET = 13
# Output tolerance: max|a-b| <= OUT_RTOL * max(1, max|b|). Gradients (float64
# references) are compared in relative L2, ||a-b|| <= GRAD_REL_L2 * ||b||: a
# float32 run may take the other side of a ReLU/MaxPool kink somewhere, which
# changes the gradient in that unit's receptive field (max error ~5e-3 of
# max|g| on mobilenet_v2, in PyTorch float32 too) but barely moves the L2
# norm, while a wrong backward gives O(1) errors. GRAD_RTOL (max-abs) is
# recorded for information.
OUT_RTOL = 1e-4
GRAD_RTOL = 1e-3
GRAD_REL_L2 = 1e-2


class SmallUNet(nn.Module):
    """Two-level U-Net: encoder Conv-BN-ReLU + MaxPool, a ConvTranspose
    upsampling on one skip path and bilinear Resize (align_corners=False) on
    the other, Concat skips, 3-class per-pixel logits."""

    def __init__(self, cin=3, classes=3, w=8):
        super().__init__()

        def block(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False),
                                 nn.BatchNorm2d(o), nn.ReLU(inplace=True))

        self.enc1 = block(cin, w)
        self.enc2 = block(w, 2 * w)
        self.mid = block(2 * w, 4 * w)
        self.up2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2)
        self.dec2 = block(4 * w, 2 * w)
        self.dec1 = block(3 * w, w)
        self.head = nn.Conv2d(w, classes, 1)

    def forward(self, x):
        e1 = self.enc1(x)                       # 64x64
        e2 = self.enc2(F.max_pool2d(e1, 2))     # 32x32
        m = self.mid(F.max_pool2d(e2, 2))       # 16x16
        d2 = self.dec2(torch.cat([self.up2(m), e2], 1))          # 32x32
        u1 = F.interpolate(d2, scale_factor=2.0, mode="bilinear",
                           align_corners=False)                  # 64x64
        d1 = self.dec1(torch.cat([u1, e1], 1))
        return self.head(d1)


class Conv1dRegressor(nn.Module):
    """1-D conv regression net: Conv1d-BN-ReLU, AvgPool1d, Conv1d-BN-ReLU,
    global average pool, Linear -> 2 outputs."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, 8, 5, padding=2), nn.BatchNorm1d(8), nn.ReLU(),
            nn.AvgPool1d(2),
            nn.Conv1d(8, 16, 3, padding=1), nn.BatchNorm1d(16), nn.ReLU(),
            nn.AdaptiveAvgPool1d(1))
        self.fc = nn.Linear(16, 2)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


def classifier(ctor):
    return lambda: ctor(weights=None, num_classes=1000)


def grad_argmax(out):
    return out[0, int(out[0].argmax())]


def grad_unet(out):
    return out[0, 1, 16:48, 16:48].sum()


def grad_sum(out):
    return out.sum()


ARGMAX_DEF = "d(output[0, argmax(output[0])])/d(input)"
CLASSIFIERS = ("resnet18", "mobilenet_v2", "mobilenet_v3_small",
               "squeezenet1_1")
MODELS = {
    "resnet18": (classifier(torchvision.models.resnet18), (1, 3, 224, 224),
                 grad_argmax, ARGMAX_DEF),
    "mobilenet_v2": (classifier(torchvision.models.mobilenet_v2),
                     (1, 3, 224, 224), grad_argmax, ARGMAX_DEF),
    "mobilenet_v3_small": (classifier(torchvision.models.mobilenet_v3_small),
                           (1, 3, 224, 224), grad_argmax, ARGMAX_DEF),
    "squeezenet1_1": (classifier(torchvision.models.squeezenet1_1),
                      (1, 3, 224, 224), grad_argmax, ARGMAX_DEF),
    "unet": (SmallUNet, (1, 3, 64, 64), grad_unet,
             "d(sum(output[0, 1, 16:48, 16:48]))/d(input)"),
    "conv1d_reg": (Conv1dRegressor, (1, 1, 128), grad_sum,
                   "d(sum(output))/d(input)"),
}


def randomise_bn(model, gen, shape):
    """Gives BatchNorm layers random affine parameters and running statistics
    measured on random inputs (a cumulative-average pass in training mode).

    Fresh BN layers (mean 0 / var 1, weight 1 / bias 0) would hide folding
    errors, and arbitrary random statistics make activations vanish through
    deep nets (the gradient of mobilenet_v2 fell to 1e-11), which would make
    the parity tolerances meaningless. Measured statistics keep every layer's
    activations near unit scale."""
    bns = [m for m in model.modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    for m in bns:
        n = m.num_features
        m.weight.data.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
        m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, *shape[1:], generator=gen))
    model.eval()


def normalise_head(model, shape, gen):
    """Rescales the last Linear layer so the logits have unit spread.

    torchvision initialises classifier heads with std 0.01, which left
    mobilenet_v3_small's logits near 0.02 -- far below the absolute floor of
    the output tolerance, so the comparison would be vacuous."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        return
    with torch.no_grad():
        std = float(model(torch.randn(*shape, generator=gen)).std())
        if std > 0:
            linears[-1].weight.mul_(1.0 / std)
            linears[-1].bias.mul_(1.0 / std)


def build(name, seed):
    ctor, shape, gfn, gdef = MODELS[name]
    torch.manual_seed(seed)
    model = ctor()
    randomise_bn(model, torch.Generator().manual_seed(seed + 1), shape)
    model.eval()
    normalise_head(model, shape, torch.Generator().manual_seed(seed + 3))
    gen = torch.Generator().manual_seed(seed + 2)
    x = torch.randn(*shape, generator=gen, dtype=torch.float32)
    return model, x, gfn, gdef


def export(model, x, path):
    axes = {"input": {0: "batch"}, "output": {0: "batch"}}
    with torch.no_grad():
        torch.onnx.export(model, x, path, opset_version=OPSET,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes=axes, do_constant_folding=True,
                          training=torch.onnx.TrainingMode.EVAL)


def make_one(name, outdir, seed):
    model, x, gfn, gdef = build(name, seed)
    base = os.path.join(outdir, name)
    export(model, x, base + ".onnx")
    with torch.no_grad():
        out = model(x)
    # The gradient reference is computed in float64 (same weights and input,
    # same target class as the float32 output): float32 autograd itself
    # strays by up to ~1e-2 of max|g| where a ReLU / MaxPool / Clip decision
    # sits within rounding of its kink (measured on squeezenet1_1).
    m64 = copy.deepcopy(model).double()
    xg = x.double().clone().requires_grad_(True)
    out64 = m64(xg)
    if name in CLASSIFIERS:
        out64[0, int(out[0].argmax())].backward()
    else:
        gfn(out64).backward()
    np.save(base + ".input.npy", x.numpy().astype(np.float32))
    np.save(base + ".output.npy", out.numpy().astype(np.float32))
    np.save(base + ".grad.npy", xg.grad.numpy().astype(np.float32))
    ops = sorted({n.op_type for n in __import__("onnx").load(
        base + ".onnx").graph.node})
    return {
        "name": name, "seed": seed, "onnx": name + ".onnx",
        "input": name + ".input.npy", "output": name + ".output.npy",
        "grad": name + ".grad.npy",
        "input_shape": list(x.shape), "output_shape": list(out.shape),
        "grad_definition": gdef, "ops": ops,
        "grad_dtype": "float64 autograd, saved as float32",
        "tolerance": {"output_rel": OUT_RTOL, "grad_rel": GRAD_RTOL,
                      "grad_rel_l2": GRAD_REL_L2,
                      "output_rule": "max|a-b| <= output_rel * max(1, max|b|)",
                      "grad_rule": "||a-b||_2 <= grad_rel_l2 * ||b||_2 "
                                   "(max|a-b| <= grad_rel * max|b| is "
                                   "reported; float32 kink flips can exceed "
                                   "it locally)"},
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--models", default=",".join(MODELS),
                    help="comma-separated subset of: " + ", ".join(MODELS))
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.outdir, exist_ok=True)
    entries = []
    for name in args.models.split(","):
        if name not in MODELS:
            sys.exit("unknown model %r" % name)
        # Seed fixed per model name so subsets reproduce the full run.
        seed = 1000 + list(MODELS).index(name)
        entries.append(make_one(name, args.outdir, seed))
        print("fixture %-20s ops=%s" % (name, ",".join(entries[-1]["ops"])),
              file=sys.stderr)
    manifest = {"generator": "tools/make_parity_fixtures.py",
                "torch": torch.__version__,
                "torchvision": torchvision.__version__,
                "opset": OPSET, "models": entries}
    with open(os.path.join(args.outdir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    print(json.dumps(manifest, indent=2))


if __name__ == "__main__":
    main()
