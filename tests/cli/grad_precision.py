"""Input-gradient precision on the parity models (issue 6, acceptance 2).

    grad_precision.py FIXTURE_DIR CANDOR_CLI MODEL [MODEL...]

For each model, against the float64 autograd gradient of the fixture
(recomputed here in float64 from the generator's model, not read back from
the float32-rounded file):
  torch32  PyTorch float32 autograd (same model, same input, same objective)
  candor   `candor explain --method gradient --npy` on the exported ONNX model
  candor64 the same with `--precision float64` (every pass in float64)
For models whose operators mini_onnx covers, also against PyTorch float64
autograd evaluating the exported ONNX graph itself ("onnx64": the function
candor is given; the export folds BatchNorm into the Conv weights in float32,
which can itself move a kink -- it does on mobilenet_v2).
  masked   (ONNX models whose operators mini_onnx below covers) a float64
           evaluation of the ONNX graph whose ReLU / Clip masks and MaxPool
           argmax positions are taken from candor's own float32 activations
           (dumped with `candor run --output NAME=FILE`): the same branch at
           every kink, so what is left is arithmetic rounding alone.
Prints one JSON object per model with max|a-b|/max|b| ("max_rel") and
||a-b||/||b|| ("l2_rel") of each against float64. Independent of candor's
code: the references are PyTorch autograd.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
import make_parity_fixtures as gen  # noqa: E402

# Objective flags of `candor explain` matching the generator's definitions.
EXPLAIN_ARGS = {"unet": ["--target", "1", "--region", "16:48,16:48"],
                "conv1d_reg": ["--objective", "sum"]}


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return {"max_rel": float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)),
            "l2_rel": float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))}


def torch_grads(name):
    """float32 and float64 autograd input gradients of the fixture objective."""
    seed = 1000 + list(gen.MODELS).index(name)
    model, x, gfn, _ = gen.build(name, seed)
    with torch.no_grad():
        target = int(model(x)[0].argmax()) if name in gen.CLASSIFIERS else None
    out = []
    for dt in (torch.float32, torch.float64):
        m = model.to(dt) if dt == torch.float32 else __import__("copy").deepcopy(model).double()
        xg = x.to(dt).clone().requires_grad_(True)
        y = m(xg)
        (y[0, target] if target is not None else gfn(y)).backward()
        out.append(xg.grad.numpy())
    return x.numpy(), target, out[0], out[1]


# ---------------------------------------------------------------- mini ONNX

def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


SUPPORTED = {"Conv", "Relu", "Clip", "Add", "Mul", "MaxPool", "GlobalAveragePool", "Flatten",
             "Gemm", "Concat", "Identity", "Constant", "HardSigmoid"}


def covered(model):
    return all(n.op_type in SUPPORTED for n in model.graph.node)


def kink_tensors(model):
    """Inputs of the operators with kinks (their float32 values fix the branch)."""
    return sorted({n.input[0] for n in model.graph.node
                   if n.op_type in ("Relu", "Clip", "MaxPool", "HardSigmoid")})


def masked_eval(model, x, masks, dt=np.float64):
    """Evaluates the ONNX graph in float64 with torch; every kink takes the
    branch that candor's float32 value (masks[input name]) took, or, with
    masks None, the branch of the value itself. dt np.float32 evaluates the
    same graph in float32 (PyTorch as a second float32 engine)."""
    env = {i.name: torch.from_numpy(numpy_helper.to_array(i).astype(dt)
                                     if numpy_helper.to_array(i).dtype.kind == "f"
                                     else numpy_helper.to_array(i))
           for i in model.graph.initializer}
    xin = torch.from_numpy(x.astype(dt)).requires_grad_(True)
    env[model.graph.input[0].name] = xin
    for n in model.graph.node:
        a, t = attrs(n), n.op_type
        ins = [env[i] if i else None for i in n.input]
        c = None
        if t in ("Relu", "Clip", "HardSigmoid", "MaxPool"):
            c = (ins[0].detach() if masks is None
                 else torch.from_numpy(masks[n.input[0]].astype(dt)))
        if t == "Constant":
            v = numpy_helper.to_array(a["value"])
            y = torch.from_numpy(v.astype(dt) if v.dtype.kind == "f" else v)
        elif t == "Conv":
            pads = a.get("pads", [0, 0, 0, 0])
            assert pads[:2] == pads[2:], "asymmetric pads"
            y = F.conv2d(ins[0], ins[1], ins[2] if len(ins) > 2 else None,
                         stride=a.get("strides", [1, 1]), padding=pads[:2],
                         dilation=a.get("dilations", [1, 1]), groups=a.get("group", 1))
        elif t == "Relu":
            y = ins[0] * (c > 0)
        elif t == "Clip":
            lo = float(ins[1]) if len(ins) > 1 and ins[1] is not None else a.get("min")
            hi = float(ins[2]) if len(ins) > 2 and ins[2] is not None else a.get("max")
            mid = (c > lo) & (c < hi)
            y = torch.where(mid, ins[0], torch.where(c >= hi, torch.full_like(c, hi),
                                                     torch.full_like(c, lo)))
        elif t == "HardSigmoid":
            al, be = a.get("alpha", 0.2), a.get("beta", 0.5)
            c = c * al + be
            mid = (c > 0) & (c < 1)
            y = torch.where(mid, ins[0] * al + be, (c >= 1).to(ins[0].dtype))
        elif t == "MaxPool":
            k, s = a["kernel_shape"], a.get("strides", [1, 1])
            p = a.get("pads", [0, 0, 0, 0])[:2]
            _, idx = F.max_pool2d(c, k, s, p, ceil_mode=bool(a.get("ceil_mode", 0)),
                                  return_indices=True)
            flat = ins[0].flatten(2)
            y = flat.gather(2, idx.flatten(2)).reshape(idx.shape)
        elif t == "Add":
            y = ins[0] + ins[1]
        elif t == "Mul":
            y = ins[0] * ins[1]
        elif t == "GlobalAveragePool":
            y = ins[0].mean(dim=tuple(range(2, ins[0].dim())), keepdim=True)
        elif t == "Flatten":
            y = ins[0].flatten(a.get("axis", 1))
        elif t == "Gemm":
            b = ins[1].t() if a.get("transB", 0) else ins[1]
            y = a.get("alpha", 1.0) * ins[0] @ b + a.get("beta", 1.0) * ins[2]
        elif t == "Concat":
            y = torch.cat(ins, dim=a["axis"])
        elif t == "Identity":
            y = ins[0]
        else:
            raise ValueError("unsupported " + t)
        env[n.output[0]] = y
    return xin, env[model.graph.output[0].name]


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("command failed: %s\n%s" % (" ".join(cmd), r.stderr[-2000:]))


def main():
    fx, cli, names = sys.argv[1], sys.argv[2], sys.argv[3:]
    torch.set_num_threads(1)
    for name in names:
        onnx_path = os.path.join(fx, name + ".onnx")
        x, target, g32, g64 = torch_grads(name)
        x_fix = np.load(os.path.join(fx, name + ".input.npy"))
        assert np.array_equal(x, x_fix), "fixture input differs from the generator's"
        with tempfile.TemporaryDirectory() as tmp:
            cg = os.path.join(tmp, "g.npy")
            run([cli, "explain", onnx_path, os.path.join(fx, name + ".input.npy"),
                 "--method", "gradient", "--threads", "1", "--npy", cg] + EXPLAIN_ARGS.get(name, []))
            gc = np.load(cg)
            res = {"model": name, "torch32": rel(g32, g64), "candor": rel(gc, g64)}
            cg64 = os.path.join(tmp, "g64.npy")
            run([cli, "explain", onnx_path, os.path.join(fx, name + ".input.npy"),
                 "--method", "gradient", "--threads", "1", "--precision", "float64",
                 "--npy", cg64] + EXPLAIN_ARGS.get(name, []))
            gc64 = np.load(cg64)
            res["candor64"] = rel(gc64, g64)
            model = onnx.load(onnx_path)
            if covered(model):
                names_k = kink_tensors(model)
                # The CLI takes a bounded number of --output flags per run.
                for lo in range(0, len(names_k), 16):
                    cmd = [cli, "run", onnx_path, os.path.join(fx, name + ".input.npy"),
                           "--threads", "1"]
                    for i in range(lo, min(lo + 16, len(names_k))):
                        cmd += ["--output", "%s=%s" % (names_k[i], os.path.join(tmp, "k%d.npy" % i))]
                    run(cmd)
                masks = {k: np.load(os.path.join(tmp, "k%d.npy" % i)) for i, k in enumerate(names_k)}
                xin, y = masked_eval(model, x, masks)
                obj = y[0, target] if target is not None else y.sum()
                obj.backward()
                gm = xin.grad.numpy()
                res["masked"] = rel(gc, gm)
                xin, y = masked_eval(model, x, None)
                (y[0, target] if target is not None else y.sum()).backward()
                go = xin.grad.numpy()
                res["candor_vs_onnx64"] = rel(gc, go)
                res["candor64_vs_onnx64"] = rel(gc64, go)
                res["torch64_vs_onnx64"] = rel(g64, go)
                xin, y = masked_eval(model, x, None, np.float32)
                (y[0, target] if target is not None else y.sum()).backward()
                res["torch32_onnx_vs_onnx64"] = rel(xin.grad.numpy(), go)
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
