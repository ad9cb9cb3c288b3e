"""Small ONNX test models built with onnx.helper from seeded NumPy weights,
and an independent NumPy forward pass for each (the reference the binding
and the installed example are checked against).

    python3 tiny_models.py OUTDIR     writes tiny_cnn.onnx (+ sidecar),
                                      tiny_cnn_nodrop.onnx, tiny_cnn_b.onnx,
                                      input.npy (1,1,8,8) and input.png

Network: x (N,1,8,8) -> Conv 4x3x3 pad 1 -> Relu ("features") ->
[Dropout p=0.25] -> Flatten -> Gemm (256 -> 5) -> "logits".
"""
import json
import os
import struct
import sys
import zlib

import numpy as np

LABELS = ["circle", "square", "stripe", "dot", "cross"]
N_CLASSES = 5
DROP_P = 0.25


def weights(seed):
    rng = np.random.default_rng(seed)
    return {
        "W": rng.normal(0, 0.6, (4, 1, 3, 3)).astype(np.float32),
        "b": rng.normal(0, 0.1, (4,)).astype(np.float32),
        "F": rng.normal(0, 0.3, (N_CLASSES, 256)).astype(np.float32),
        "c": rng.normal(0, 0.1, (N_CLASSES,)).astype(np.float32),
    }


def features(w, x):
    """Conv (stride 1, pad 1) + ReLU in float64: (N,1,8,8) -> (N,4,8,8)."""
    x = np.asarray(x, np.float64)
    n = x.shape[0]
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, 4, 8, 8))
    for o in range(4):
        acc = np.full((n, 8, 8), float(w["b"][o]))
        for i in range(3):
            for j in range(3):
                acc += w["W"][o, 0, i, j] * xp[:, 0, i:i + 8, j:j + 8]
        out[:, o] = acc
    return np.maximum(out, 0.0)


def logits_from_features(w, a):
    return a.reshape(a.shape[0], -1) @ w["F"].T.astype(np.float64) + w["c"]


def forward(w, x):
    """Deterministic (inference-mode) logits, float64."""
    return logits_from_features(w, features(w, x))


def build(w, dropout, path, sidecar=True):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(w["W"], "W"), numpy_helper.from_array(w["b"], "b"),
             numpy_helper.from_array(w["F"], "F"), numpy_helper.from_array(w["c"], "c")]
    nodes = [helper.make_node("Conv", ["x", "W", "b"], ["conv"], name="conv",
                              pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
             helper.make_node("Relu", ["conv"], ["features"], name="relu")]
    flat_in = "features"
    if dropout:
        inits.append(numpy_helper.from_array(np.array(DROP_P, np.float32), "ratio"))
        nodes.append(helper.make_node("Dropout", ["features", "ratio"], ["dropped"],
                                      name="dropout"))
        flat_in = "dropped"
    nodes += [helper.make_node("Flatten", [flat_in], ["flat"], name="flatten", axis=1),
              helper.make_node("Gemm", ["flat", "F", "c"], ["logits"], name="fc", transB=1)]
    graph = helper.make_graph(
        nodes, "tiny_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", N_CLASSES])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="candor-tests")
    onnx.checker.check_model(model)
    onnx.save(model, path)
    if sidecar:
        side = {"labels": LABELS, "output": {"kind": "logits"},
                "preprocess": {"resize": [8, 8], "scale": 255, "color": "gray"}}
        with open(path[:-len(".onnx")] + ".candor.json", "w") as f:
            json.dump(side, f)


def write_gray_png(path, pixels):
    """8-bit grayscale PNG written by hand (zlib + CRC chunks)."""
    h, wd = pixels.shape
    raw = b"".join(b"\x00" + bytes(pixels[r].astype(np.uint8)) for r in range(h))

    def chunk(tag, data):
        return (struct.pack(">I", len(data)) + tag + data +
                struct.pack(">I", zlib.crc32(tag + data) & 0xffffffff))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", wd, h, 8, 0, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw)))
        f.write(chunk(b"IEND", b""))


def sample_pixels():
    """An 8x8 gray image with integer pixels (a bright diagonal)."""
    img = np.full((8, 8), 20, np.int64)
    for i in range(8):
        img[i, i] = 250
        img[i, 7 - i] = 160
    return img


def make_all(outdir):
    os.makedirs(outdir, exist_ok=True)
    w = weights(1)
    build(w, True, os.path.join(outdir, "tiny_cnn.onnx"))
    build(w, False, os.path.join(outdir, "tiny_cnn_nodrop.onnx"))
    build(weights(2), False, os.path.join(outdir, "tiny_cnn_b.onnx"))
    px = sample_pixels()
    np.save(os.path.join(outdir, "input.npy"),
            (px / 255.0).astype(np.float32).reshape(1, 1, 8, 8))
    write_gray_png(os.path.join(outdir, "input.png"), px)
    return w


if __name__ == "__main__":
    make_all(sys.argv[1])
