#!/usr/bin/python3
"""Exports a PyTorch model to ONNX with its Dropout nodes KEPT (MC-dropout ready).

A plain eval-mode torch.onnx.export drops every nn.Dropout from the graph, so a
runtime can no longer sample it. The recipe (checked with torch 1.13, opset 13):

  1. model.eval(), then put ONLY the nn.Dropout modules back in training mode.
     BatchNorm etc. stay in inference form (a training-mode BatchNormalization
     would export batch statistics and extra outputs).
  2. torch.onnx.export(..., training=torch.onnx.TrainingMode.PRESERVE,
     do_constant_folding=False): PRESERVE keeps each module's own flag, so the
     traced F.dropout(training=True) calls become ONNX Dropout nodes with
     inputs (data, ratio, training_mode=True) and a mask output.
  3. Rewrite each Dropout node into inference form: drop the training_mode
     input (its default is false) and the unused mask output. The node then
     means "identity" to any ONNX runtime (ONNX Runtime's output equals
     eval-mode PyTorch), while its ratio stays in the graph for a runtime that
     samples dropout masks on purpose (candor's MC dropout).

Limitations: nn.Dropout2d / nn.Dropout3d / F.dropout2d (aten::feature_dropout)
cannot be exported in training mode by torch 1.13 -- use nn.Dropout (element-
wise) instead. nn.AlphaDropout is not supported either.

As a library:   from export_with_dropout import export_with_dropout
                export_with_dropout(model, dummy_input, "model.onnx")
As a script:    /usr/bin/python3 tools/export_with_dropout.py --demo OUT.onnx
  builds a small seeded CNN with dropout, exports it with the recipe and
  verifies it (see verify()).
"""
import argparse
import io
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import numpy_helper
import torch
import torch.nn as nn

DROPOUT_TYPES = (nn.Dropout,)
UNSUPPORTED_DROPOUT = (nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                       nn.FeatureAlphaDropout)


def _set_dropout_train(model):
    """eval() everywhere, train() on element-wise dropout; returns the count."""
    model.eval()
    count = 0
    for m in model.modules():
        if isinstance(m, UNSUPPORTED_DROPOUT):
            raise ValueError("%s cannot be exported in training mode by torch "
                             "%s; use nn.Dropout" % (type(m).__name__,
                                                     torch.__version__))
        if isinstance(m, DROPOUT_TYPES) and m.p > 0:
            m.train()
            count += 1
    return count


def _dropout_to_inference_form(model_proto):
    """Removes training_mode inputs and unused mask outputs from Dropout nodes,
    then drops Constant nodes nothing consumes any more. Returns the number of
    Dropout nodes."""
    g = model_proto.graph
    consumed = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    count = 0
    for n in g.node:
        if n.op_type != "Dropout":
            continue
        count += 1
        while len(n.input) > 2:
            n.input.pop()
        if len(n.output) > 1 and n.output[1] not in consumed:
            n.output.pop()
    consumed = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    keep = [n for n in g.node
            if n.op_type != "Constant" or any(o in consumed for o in n.output)]
    del g.node[:]
    g.node.extend(keep)
    return count


def export_with_dropout(model, dummy_input, path, opset=13,
                        input_names=("input",), output_names=("output",),
                        dynamic_batch=True):
    """Exports `model` to `path` keeping its nn.Dropout layers as ONNX Dropout
    nodes in inference form. Leaves the model in eval mode. Returns the number
    of Dropout nodes written; raises if it differs from the number of active
    nn.Dropout modules (a dropout applied twice or skipped in forward also
    trips this check -- then count the nodes yourself)."""
    n_modules = _set_dropout_train(model)
    axes = None
    if dynamic_batch:
        axes = {name: {0: "batch"} for name in (*input_names, *output_names)}
    buf = io.BytesIO()
    try:
        with torch.no_grad():
            torch.onnx.export(model, dummy_input, buf, opset_version=opset,
                              training=torch.onnx.TrainingMode.PRESERVE,
                              do_constant_folding=False,
                              input_names=list(input_names),
                              output_names=list(output_names),
                              dynamic_axes=axes)
    finally:
        model.eval()
    proto = onnx.load_from_string(buf.getvalue())
    n_nodes = _dropout_to_inference_form(proto)
    if n_nodes != n_modules:
        raise RuntimeError("exported %d Dropout nodes for %d nn.Dropout "
                           "modules" % (n_nodes, n_modules))
    onnx.checker.check_model(proto)
    onnx.save(proto, path)
    return n_nodes


def _ort_runner():
    here = os.path.dirname(os.path.abspath(__file__))
    script = os.path.join(here, "..", "bench", "ort_run.js")
    mod = os.path.join(here, "..", "bench", "node_modules", "onnxruntime-node")
    return script if os.path.isdir(mod) else None


def verify(model, dummy_input, path, tol=1e-4):
    """Checks an export made by export_with_dropout:
      - the graph has Dropout nodes, none with a training_mode input;
      - when bench/node_modules has onnxruntime-node: ONNX Runtime's output
        (Dropout = identity in inference form) equals eval-mode PyTorch's.
    Returns a dict of findings; raises AssertionError on a failed check."""
    proto = onnx.load(path)
    drops = [n for n in proto.graph.node if n.op_type == "Dropout"]
    assert drops, "no Dropout node in " + path
    assert all(len(n.input) <= 2 for n in drops), "training_mode input left"
    ratios = {}
    consts = {n.output[0]: n for n in proto.graph.node if n.op_type == "Constant"}
    for n in drops:
        if len(n.input) > 1 and n.input[1] in consts:
            t = numpy_helper.to_array(consts[n.input[1]].attribute[0].t)
            ratios[n.name] = float(t)
    found = {"dropout_nodes": len(drops), "ratios": ratios,
             "ort_checked": False}
    model.eval()
    with torch.no_grad():
        ref = model(dummy_input).numpy()
    runner = _ort_runner()
    if runner is None:
        found["ort_note"] = "bench/node_modules/onnxruntime-node missing"
        return found
    with tempfile.TemporaryDirectory() as d:
        xin, yout = os.path.join(d, "x.npy"), os.path.join(d, "y.npy")
        np.save(xin, dummy_input.numpy().astype(np.float32))
        subprocess.run(["node", runner, path, xin, yout], check=True)
        got = np.load(yout)
    err = float(np.abs(got - ref).max())
    found.update(ort_checked=True, ort_max_abs_err=err)
    assert err <= tol * max(1.0, float(np.abs(ref).max())), \
        "ONNX Runtime differs from eval-mode PyTorch by %g" % err
    return found


class DemoNet(nn.Module):
    """Small CNN with BatchNorm (must stay in inference form) and two
    element-wise dropouts (must be kept)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.MaxPool2d(2), nn.Dropout(0.25))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * 14 * 14, 32),
                                  nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10))

    def forward(self, x):
        return self.head(self.features(x))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--demo", metavar="OUT.onnx", required=True,
                    help="export and verify the built-in demo CNN")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = DemoNet()
    # Non-trivial BN statistics, so inference-form BN is actually checked.
    bn = model.features[1]
    bn.running_mean.uniform_(-0.5, 0.5)
    bn.running_var.uniform_(0.5, 1.5)
    x = torch.randn(2, 1, 28, 28)
    n = export_with_dropout(model, x, args.demo)
    found = verify(model, x, args.demo)
    ops = [nd.op_type for nd in onnx.load(args.demo).graph.node]
    found["ops"] = ops
    assert "BatchNormalization" in ops and ops.count("Dropout") == n
    print(json.dumps(found, indent=2))


if __name__ == "__main__":
    main()
