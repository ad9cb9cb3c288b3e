#!/usr/bin/python3
"""PyTorch reference saliency maps for candor's explain tests.

Usage:
  explain_reference.py gradcam   MODEL FIXTUREDIR OUT.npy [--plus] [--layer ATTR]
  explain_reference.py ig        MODEL FIXTUREDIR OUT.npy --steps N

MODEL names a model of tools/make_parity_fixtures.py; the same seeded model
is rebuilt (identical weights to FIXTUREDIR/MODEL.onnx) and explained at
FIXTUREDIR/MODEL.input.npy for the class argmax(output[0]).

gradcam: forward/backward hooks on the module named by --layer (default
  "layer4", resnet18's last block) capture A and g = d y_c / d A with y_c the
  pre-softmax score. Grad-CAM: alpha_k = mean_ij g, L = relu(sum_k alpha_k A_k).
  Grad-CAM++ (--plus, Chattopadhay et al. 2018 eq. 19):
  a = g^2 / (2 g^2 + sum_ab A_ab g^3 + 1e-6) (0 where g = 0),
  w_k = sum_ij a relu(g), L = relu(sum_k w_k A_k). Then bilinear upsampling
  (align_corners=False) to the input size and (L - min) / (max - min + 1e-7).
  Saved as float32 (1, 1, H, W). Computed in float64 so the reference itself
  adds no rounding.
ig: Integrated Gradients with a black baseline and Gauss-Legendre nodes from
  numpy.polynomial.legendre.leggauss (independent of candor's Newton
  iteration), float64. Prints F(x), F(0) and the completeness delta.
"""
import argparse
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_parity_fixtures as fixtures  # noqa: E402


def load(name, fixdir):
    seed = 1000 + list(fixtures.MODELS).index(name)
    model, _, _, _ = fixtures.build(name, seed)
    model = model.double().eval()
    x = torch.from_numpy(np.load(os.path.join(fixdir, name + ".input.npy"))).double()
    return model, x


def gradcam(model, x, layer, plus):
    mod = dict(model.named_modules())[layer]
    store = {}
    mod.register_forward_hook(lambda m, i, o: store.__setitem__("A", o))
    mod.register_full_backward_hook(lambda m, gi, go: store.__setitem__("g", go[0]))
    out = model(x)
    c = int(out[0].argmax())
    model.zero_grad()
    out[0, c].backward()
    A, g = store["A"].detach()[0], store["g"].detach()[0]
    if plus:
        s = A.sum(dim=(1, 2), keepdim=True)
        denom = 2 * g ** 2 + s * g ** 3 + 1e-6
        a = torch.where(g != 0, g ** 2 / denom, torch.zeros_like(g))
        w = (a * F.relu(g)).sum(dim=(1, 2))
    else:
        w = g.mean(dim=(1, 2))
    cam = F.relu((w[:, None, None] * A).sum(0))[None, None]
    cam = F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)
    cam = (cam - cam.min()) / (cam.max() - cam.min() + 1e-7)
    return cam.numpy().astype(np.float32), c


def integrated_gradients(model, x, steps):
    with torch.no_grad():
        c = int(model(x)[0].argmax())
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    nodes, weights = (nodes + 1) / 2, weights / 2
    acc = torch.zeros_like(x)
    for a, w in zip(nodes, weights):
        xi = (a * x).clone().requires_grad_(True)
        model(xi)[0, c].backward()
        acc += w * xi.grad
    ig = x * acc
    with torch.no_grad():
        fx, f0 = float(model(x)[0, c]), float(model(torch.zeros_like(x))[0, c])
    delta = float(ig.sum()) - (fx - f0)
    print("F(x) %.9g F(0) %.9g delta %.3g" % (fx, f0, delta))
    return ig.numpy().astype(np.float32), c


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("method", choices=["gradcam", "ig"])
    ap.add_argument("model")
    ap.add_argument("fixdir")
    ap.add_argument("out")
    ap.add_argument("--plus", action="store_true")
    ap.add_argument("--layer", default="layer4")
    ap.add_argument("--steps", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, x = load(args.model, args.fixdir)
    if args.method == "gradcam":
        m, c = gradcam(model, x, args.layer, args.plus)
    else:
        m, c = integrated_gradients(model, x, args.steps)
    np.save(args.out, m)
    print("class %d" % c)


if __name__ == "__main__":
    main()
