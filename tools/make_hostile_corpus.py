#!/usr/bin/python3
"""Hostile-input corpus for candor's CLI, and the driver that feeds it through.

    /usr/bin/python3 tools/make_hostile_corpus.py OUTDIR            # generate
    /usr/bin/python3 tools/make_hostile_corpus.py OUTDIR --check CANDOR [--jobs N]

Generation (deterministic, seeded) writes into OUTDIR:
  models/   >= 1000 mutated ONNX models derived from a small CNN (and, when the
            ONNX test corpus is found, a few of its node models): random bit
            flips, truncations, huge dims, negative dims, cyclic graphs,
            dangling/empty/duplicate names, absurd attributes, swapped op types;
  images/   mutated PNG/JPEG files (bit flips, truncations, forged headers);
  csv/      mutated prediction CSVs (junk, NaN/Inf, ragged rows, bad labels...);
  npy/      mutated .npy tensors;
  sidecar/  a valid model with a mutated MODEL.candor.json each;
  plus base.onnx, x.npy (batch 2), x1.npy (batch 1) and ok.png as known-good
  companions.

--check runs `candor info/run/predict/explain/report` over all of it and fails when any
process dies by a signal, hangs (10 s), prints a sanitizer report, or fails
(non-zero exit) without a final one-line "candor ...: message" on stderr.
Exit status 0 when every process behaved."""
import concurrent.futures as cf
import io
import os
import random
import struct
import subprocess
import sys

import numpy as np

SRC = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
SUPPORTED_OPS = ("Conv ConvTranspose MaxPool AveragePool GlobalAveragePool GlobalMaxPool Gemm "
                 "MatMul Add Sub Mul Div Sum Sqrt Exp Relu LeakyRelu PRelu Elu Sigmoid Tanh Clip "
                 "HardSigmoid HardSwish Softmax LogSoftmax BatchNormalization Dropout Concat "
                 "Flatten Reshape Transpose Squeeze Unsqueeze Resize Pad Identity Constant Shape "
                 "Gather ReduceMean Cast").split()


# ----------------------------------------------------------------- base data

def base_model():
    """Conv-BN-Relu-MaxPool-Reshape-Gemm-Softmax on (N,1,4,4), dynamic batch."""
    from onnx import helper, TensorProto, numpy_helper
    rng = np.random.default_rng(0)
    t = lambda name, a, dt=np.float32: numpy_helper.from_array(np.asarray(a, dtype=dt), name)
    inits = [t("W", rng.normal(size=(4, 1, 3, 3))), t("B", rng.normal(size=4)),
             t("g", np.ones(4)), t("b", np.zeros(4)), t("mu", rng.normal(size=4) * 0.1),
             t("var", np.ones(4)), t("shape", [-1, 16], np.int64),
             t("Wf", rng.normal(size=(3, 16))), t("Bf", np.zeros(3))]
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("BatchNormalization", ["c", "g", "b", "mu", "var"], ["n"], name="bn"),
             helper.make_node("Relu", ["n"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2],
                              name="pool"),
             helper.make_node("Reshape", ["p", "shape"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "Wf", "Bf"], ["z"], transB=1, name="fc"),
             helper.make_node("Softmax", ["z"], ["y"], axis=1, name="softmax")]
    g = helper.make_graph(nodes, "hostile_base",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)],
                             producer_name="candor-hostile")


def extra_bases():
    """A few tiny real models from the ONNX test corpus, when available."""
    import onnx
    root = os.environ.get("CANDOR_ONNX_TESTS", os.path.join(SRC, "..", "shared", "onnx-tests"))
    out = []
    for name in ("conv_with_strides_padding", "maxpool_2d_pads", "gemm_all_attributes",
                 "resize_upsample_scales_linear", "pad", "reshape_negative_dim",
                 "concat_2d_axis_0", "gather_0", "transpose_default", "squeeze"):
        p = os.path.join(root, "node", "test_" + name, "model.onnx")
        if os.path.exists(p):
            out.append(onnx.load(p))
    return out


# --------------------------------------------------------- byte mutations

def bit_flips(data, rng, max_flips=8):
    b = bytearray(data)
    for _ in range(rng.randint(1, max_flips)):
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


def byte_junk(data, rng):
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(b))
        b[i] = rng.choice([0x00, 0xff, 0x7f, 0x80, rng.randrange(256)])
    return bytes(b)


def truncate(data, rng):
    return data[:rng.randrange(len(data))]


# -------------------------------------------------------- model mutations

def copy_model(m):
    import onnx
    c = onnx.ModelProto()
    c.CopyFrom(m)
    return c


def huge_dims(m, rng):
    c = copy_model(m)
    g = c.graph
    big = rng.choice([2**31, 2**32 + 1, 2**40, 2**62, 2**63 - 1, 10**15])
    kind = rng.randrange(4)
    if kind == 0 and g.initializer:          # initializer claims far more data than it has
        t = rng.choice(list(g.initializer))
        if t.dims:
            t.dims[rng.randrange(len(t.dims))] = big
        else:
            t.dims.append(big)
    elif kind == 1 and g.initializer:        # product of dims overflows 64 bits
        t = rng.choice(list(g.initializer))
        del t.dims[:]
        t.dims.extend([2**31 - 1] * rng.randint(3, 8))
    elif kind == 2 and g.input:              # declared input shape is absurd
        dims = g.input[0].type.tensor_type.shape.dim
        if dims:
            dims[rng.randrange(len(dims))].dim_value = big
    else:                                    # absurd Reshape target / pads / kernel
        for n in g.node:
            for a in n.attribute:
                if a.ints:
                    a.ints[rng.randrange(len(a.ints))] = big
    return c


def negative_dims(m, rng):
    c = copy_model(m)
    g = c.graph
    neg = rng.choice([-1, -2, -7, -(2**31), -(2**63)])
    kind = rng.randrange(3)
    if kind == 0 and g.initializer:
        t = rng.choice(list(g.initializer))
        if t.dims:
            t.dims[rng.randrange(len(t.dims))] = neg
    elif kind == 1 and g.input:
        dims = g.input[0].type.tensor_type.shape.dim
        if dims:
            dims[rng.randrange(len(dims))].dim_value = neg
    else:
        for t in g.initializer:              # an int64 constant (Reshape shape) goes negative
            if t.data_type == 7 and t.raw_data:
                vals = list(struct.unpack("<%dq" % (len(t.raw_data) // 8), t.raw_data))
                vals[rng.randrange(len(vals))] = neg
                t.raw_data = struct.pack("<%dq" % len(vals), *vals)
            elif t.data_type == 7 and t.int64_data:
                t.int64_data[rng.randrange(len(t.int64_data))] = neg
    return c


def cyclic(m, rng):
    c = copy_model(m)
    nodes = c.graph.node
    if len(nodes) < 1:
        return c
    kind = rng.randrange(3)
    i = rng.randrange(len(nodes))
    if kind == 0 or len(nodes) < 2:          # self loop
        if nodes[i].input:
            nodes[i].input[0] = nodes[i].output[0]
        else:
            nodes[i].input.append(nodes[i].output[0])
    elif kind == 1:                          # back edge from a later node
        j = rng.randrange(len(nodes))
        lo, hi = min(i, j), max(i, j)
        if nodes[lo].input:
            nodes[lo].input[rng.randrange(len(nodes[lo].input))] = nodes[hi].output[0]
    else:                                    # two nodes feeding each other
        j = (i + 1) % len(nodes)
        if nodes[i].input and nodes[j].input:
            nodes[i].input[0] = nodes[j].output[0]
            nodes[j].input[0] = nodes[i].output[0]
    return c


def dangling(m, rng):
    c = copy_model(m)
    g = c.graph
    kind = rng.randrange(8)
    n = rng.choice(list(g.node)) if g.node else None
    if kind == 0 and n is not None and n.input:       # input nobody defines
        n.input[rng.randrange(len(n.input))] = "ghost_%d" % rng.randrange(100)
    elif kind == 1 and g.output:                       # output nobody produces
        g.output[0].name = "nowhere"
    elif kind == 2 and n is not None and n.input:      # required input omitted
        n.input[rng.randrange(len(n.input))] = ""
    elif kind == 3 and n is not None:                  # all inputs removed
        del n.input[:]
    elif kind == 4 and n is not None:                  # first output omitted / removed
        if rng.random() < 0.5:
            n.output[0] = ""
        else:
            del n.output[:]
    elif kind == 5 and len(g.node) >= 2:               # two producers of one name
        a, b = rng.sample(range(len(g.node)), 2)
        g.node[b].output[0] = g.node[a].output[0]
    elif kind == 6 and g.initializer:                  # initializer renamed away / duplicated
        if rng.random() < 0.5:
            g.initializer[0].name = "renamed"
        else:
            g.initializer.add().CopyFrom(g.initializer[0])
    else:                                              # graph input removed or name emptied
        if g.input:
            if rng.random() < 0.5:
                del g.input[:]
            else:
                g.input[0].name = ""
    return c


def bad_attributes(m, rng):
    c = copy_model(m)
    from onnx import helper
    nodes = [n for n in c.graph.node if n.attribute] or list(c.graph.node)
    if not nodes:
        return c
    n = rng.choice(nodes)
    choice = rng.randrange(6)
    if choice == 0 and n.attribute:
        a = rng.choice(list(n.attribute))
        if a.ints:
            a.ints[rng.randrange(len(a.ints))] = rng.choice([0, -1, -100, 2**40])
        else:
            a.i = rng.choice([0, -1, -100, 2**40, -(2**63)])
            a.f = rng.choice([float("nan"), float("inf"), -1.0, 0.0, 1e38])
    elif choice == 1:
        n.attribute.append(helper.make_attribute(
            rng.choice(["axis", "group", "kernel_shape", "strides", "pads", "dilations", "perm",
                        "axes", "alpha", "mode", "auto_pad", "to", "keepdims"]),
            rng.choice([0, -5, 99, [0, 0], [-1, 3], [1] * 9, "garbage", 3.5, [2**40, 1]])))
    elif choice == 2 and n.attribute:
        del n.attribute[rng.randrange(len(n.attribute))]
    elif choice == 3 and n.attribute:                  # wrong attribute type
        a = rng.choice(list(n.attribute))
        a.type = rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])
    elif choice == 4:                                  # absurd opset
        c.opset_import[0].version = rng.choice([0, -1, 1, 6, 22, 1000, 2**40])
    else:                                              # unknown domain
        n.domain = rng.choice(["com.microsoft", "ai.onnx.ml", "bogus"])
    return c


def swap_ops(m, rng):
    c = copy_model(m)
    for n in c.graph.node:
        if rng.random() < 0.35:
            n.op_type = rng.choice(SUPPORTED_OPS + ["NotAnOp", "", "If", "Loop"])
    return c


def bad_tensors(m, rng):
    c = copy_model(m)
    g = c.graph
    if not g.initializer:
        return c
    t = rng.choice(list(g.initializer))
    kind = rng.randrange(5)
    if kind == 0:
        t.data_type = rng.choice([0, 8, 13, 16, 14, 99, -1])
    elif kind == 1:
        t.raw_data = t.raw_data[:max(0, len(t.raw_data) - rng.randint(1, 8))]
    elif kind == 2:                                    # external data escaping the folder
        t.data_location = 1
        del t.external_data[:]
        e = t.external_data.add()
        e.key, e.value = "location", rng.choice(["../../etc/passwd", "/etc/passwd", "missing.bin",
                                                 "", "a/../../x"])
        t.ClearField("raw_data")
    elif kind == 3:
        del t.dims[:]
        t.dims.extend([1] * rng.randint(9, 40))        # rank beyond CD_MAX_DIMS
    else:
        t.ClearField("raw_data")                       # no data at all
    return c


MODEL_MUTATORS = [("huge", huge_dims, 130), ("neg", negative_dims, 110), ("cycle", cyclic, 100),
                  ("dangling", dangling, 170), ("attr", bad_attributes, 150),
                  ("swap", swap_ops, 90), ("tensor", bad_tensors, 100)]


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def gen_models(out, rng):
    base = base_model()
    bases = [base] + extra_bases()
    base_bytes = base.SerializeToString()
    count = 0
    for k in range(260):
        src = rng.choice(bases).SerializeToString() if k % 3 else base_bytes
        write(os.path.join(out, "models", "flip_%03d.onnx" % k),
              bit_flips(src, rng) if k % 2 else byte_junk(src, rng))
        count += 1
    for k in range(120):
        src = rng.choice(bases).SerializeToString() if k % 3 else base_bytes
        write(os.path.join(out, "models", "trunc_%03d.onnx" % k), truncate(src, rng))
        count += 1
    for name, fn, n in MODEL_MUTATORS:
        for k in range(n):
            try:
                data = fn(base if k % 4 else rng.choice(bases), rng).SerializeToString()
            except (ValueError, TypeError, OverflowError):                 # protobuf refused the value: use the base bytes
                data = bit_flips(base_bytes, rng)
            write(os.path.join(out, "models", "%s_%03d.onnx" % (name, k)), data)
            count += 1
    write(os.path.join(out, "base.onnx"), base_bytes)
    np.save(os.path.join(out, "x.npy"), np.linspace(-1, 1, 32, dtype=np.float32).reshape(2, 1, 4, 4))
    # explain takes one example
    np.save(os.path.join(out, "x1.npy"), np.linspace(-1, 1, 16, dtype=np.float32).reshape(1, 1, 4, 4))
    return count


# ------------------------------------------------------ images, npy, CSV

def gen_images(out, rng):
    from PIL import Image
    arr = np.random.default_rng(3).integers(0, 256, size=(12, 10, 3), dtype=np.uint8)
    im = Image.fromarray(arr, "RGB")
    seeds = {}
    for fmt, ext, kw in (("PNG", "png", {}), ("JPEG", "jpg", {}), ("JPEG", "jpg", {"progressive": True})):
        b = io.BytesIO()
        im.save(b, fmt, **kw)
        seeds.setdefault(ext, []).append(b.getvalue())
    b = io.BytesIO()
    im.convert("L").save(b, "PNG")
    seeds["png"].append(b.getvalue())
    write(os.path.join(out, "ok.png"), seeds["png"][0])
    count = 0
    for k in range(170):
        ext = "png" if k % 2 else "jpg"
        data = rng.choice(seeds[ext])
        mode = k % 3
        data = bit_flips(data, rng, 16) if mode == 0 else truncate(data, rng) if mode == 1 else byte_junk(data, rng)
        write(os.path.join(out, "images", "img_%03d.%s" % (k, ext)), data)
        count += 1
    # Forged PNG headers: huge / zero dimensions with a valid CRC.
    import zlib
    for k, (w, h) in enumerate([(0, 1), (1, 0), (2**31 - 1, 2**31 - 1), (100000, 100000),
                                (65535, 65535), (2**31, 1), (1, 2**30), (30000, 1)]):
        ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
        chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
        idat = zlib.compress(b"\x00" * 64)
        body = b"\x89PNG\r\n\x1a\n" + chunk + struct.pack(">I", len(idat)) + b"IDAT" + idat + \
            struct.pack(">I", zlib.crc32(b"IDAT" + idat)) + b"\x00\x00\x00\x00IEND\xaeB`\x82"
        write(os.path.join(out, "images", "forged_%d.png" % k), body)
        count += 1
    # Forged JPEG SOF with huge dimensions.
    jpg = bytearray(seeds["jpg"][0])
    i = jpg.find(b"\xff\xc0")
    if i > 0:
        for k, (w, h) in enumerate([(65535, 65535), (0, 0), (65000, 1)]):
            j = bytearray(jpg)
            j[i + 5:i + 9] = struct.pack(">HH", h, w)
            write(os.path.join(out, "images", "forged_%d.jpg" % k), bytes(j))
            count += 1
    return count


def gen_npy(out, rng):
    good = io.BytesIO()
    np.save(good, np.ones((1, 1, 4, 4), np.float32))
    good = good.getvalue()
    count = 0
    for k in range(60):
        mode = k % 4
        if mode == 0:
            data = bit_flips(good, rng, 6)
        elif mode == 1:
            data = truncate(good, rng)
        elif mode == 2:                                  # forged shapes in the header
            shape = rng.choice(["(2147483647, 2147483647)", "(-1, 4)", "(1, 1, 4, 4, 1, 1, 1, 1, 1)",
                                "(99999999999999999999,)", "()", "(0,)", "(1,1,4,4", "'abc'"])
            descr = rng.choice(["<f4", "<f8", ">f4", "|u1", "<c8", "<U3", "O", "<f2", "bogus"])
            hdr = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (
                descr, rng.choice(["False", "True", "maybe"]), shape)
            hdr = hdr.ljust(118) + "\n"
            data = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode() + b"\x00" * 64
        else:
            data = good[:8] + struct.pack("<H", rng.choice([0, 1, 65535, 200])) + good[10:]
        write(os.path.join(out, "npy", "t_%03d.npy" % k), data)
        count += 1
    nan = io.BytesIO()
    np.save(nan, np.full((1, 1, 4, 4), np.nan, np.float32))
    write(os.path.join(out, "npy", "nan.npy"), nan.getvalue())
    return count + 1


def gen_csv(out, rng):
    good = "a,b,c,label\n" + "".join(
        "%.3f,%.3f,%.3f,%d\n" % (p[0], p[1], p[2], rng.randrange(3))
        for p in np.random.default_rng(4).dirichlet([1, 1, 1], size=40))
    specials = ["", "\n", "label\n", "a,label\n0.5,0\n", "a,b,label\n", "a,b,label\nnan,nan,0\n",
                "a,b,label\ninf,-inf,1\n", "a,b,label\n0.5,0.5,7\n", "a,b,label\n0.5,0.5,-1\n",
                "a,b,label\n0.5,0.5\n", "a,b,label\n0.5,0.5,0,9\n", "a,b,label\n1e999,0,0\n",
                "a,b,label\n-0.5,1.5,1\n", "a,b,label\n0.5,0.5,dog\n", "a,a,label\n0.5,0.5,0\n",
                "a,b,label\n\"0.5,0.5,0\n", "a,b,label\n0x1p-2,0.75,1\n", "\x00\x00\x00",
                "a,b,label\n" + "0.5,0.5,1\n" * 5 + "0.5,0.5,", ",".join("c%d" % i for i in range(5000)) + ",label\n",
                "a" * 100000 + ",label\n0,1\n", "a,b,label\r\n0.5,0.5,1\r\n", "\ufeffa,b,label\n0.5,0.5,1\n",
                "a,b,label\n" + "0.5," * 3 + "1\n", "a;b;label\n0.5;0.5;1\n"]
    count = 0
    for k, s in enumerate(specials):
        write(os.path.join(out, "csv", "special_%02d.csv" % k), s.encode("utf-8", "surrogatepass"))
        count += 1
    for k in range(130):
        data = good.encode()
        mode = k % 3
        data = bit_flips(data, rng, 12) if mode == 0 else truncate(data, rng) if mode == 1 else byte_junk(data, rng)
        write(os.path.join(out, "csv", "mut_%03d.csv" % k), data)
        count += 1
    return count


def gen_sidecars(out, rng):
    import json
    base = base_model().SerializeToString()
    good = json.dumps({"labels": ["a", "b", "c"], "preprocess": {"resize": [4, 4], "scale": 255,
                                                                  "mean": [0.5], "std": [0.25],
                                                                  "color": "gray"},
                       "output": {"kind": "probabilities"}})
    specials = ['{"labels": 5}', '{"labels": ["a"]}', '{"preprocess": {"resize": -4}}',
                '{"preprocess": {"resize": [0, 100000000]}}', '{"preprocess": {"std": [0, 0, 0]}}',
                '{"preprocess": {"crop": [1000, 1000]}}', '{"output": {"kind": "nonsense"}}',
                '{"dropout_sites": [{"tensor": "nope", "p": 2}]}', '[]', 'null', '{', '',
                '{"labels": [' + ",".join(['"x"'] * 5000) + ']}', '{"preprocess": {"scale": -1}}']
    count = 0
    for k in range(40):
        d = os.path.join(out, "sidecar", "s%02d" % k)
        text = specials[k] if k < len(specials) else bit_flips(good.encode(), rng, 6).decode("latin-1")
        write(os.path.join(d, "model.onnx"), base)
        write(os.path.join(d, "model.candor.json"), text.encode("latin-1"))
        count += 1
    return count


def generate(out):
    rng = random.Random(20240608)
    os.makedirs(out, exist_ok=True)
    n_models = gen_models(out, rng)
    n_img = gen_images(out, rng)
    n_npy = gen_npy(out, rng)
    n_csv = gen_csv(out, rng)
    n_side = gen_sidecars(out, rng)
    print("hostile corpus in %s: %d models, %d images, %d .npy, %d CSVs, %d sidecars"
          % (out, n_models, n_img, n_npy, n_csv, n_side))


# ------------------------------------------------------------------- check

SANITIZER_MARKS = ("Sanitizer", "runtime error:", "==ERROR", "Invalid read", "Invalid write",
                   "definitely lost")


def run_one(cmd):
    try:
        p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=10)
    except subprocess.TimeoutExpired:
        return cmd, "hang (no exit within 10 s)"
    err = p.stderr.decode("utf-8", "replace")
    lines = [l for l in err.splitlines() if l.strip()]
    if p.returncode < 0:
        return cmd, "killed by signal %d" % -p.returncode
    if any(m in err for m in SANITIZER_MARKS):
        return cmd, "sanitizer report:\n" + "\n".join(lines[:8])
    if p.returncode != 0:
        if not lines:
            return cmd, "exit %d with no message" % p.returncode
        last = lines[-1]
        if not last.startswith("candor") or len(last) > 1000:
            return cmd, "exit %d, last stderr line is not a candor message: %r" % (p.returncode, last[:200])
    return cmd, None


def check(out, cli, jobs):
    ls = lambda d: sorted(os.path.join(out, d, f) for f in os.listdir(os.path.join(out, d)))
    x, ok_png, base = os.path.join(out, "x.npy"), os.path.join(out, "ok.png"), os.path.join(out, "base.onnx")
    x1 = os.path.join(out, "x1.npy")
    tmp = os.path.join(out, "outputs")
    os.makedirs(tmp, exist_ok=True)
    cmds = []
    for i, m in enumerate(ls("models")):
        cmds.append([cli, "info", m])
        cmds.append([cli, "run", m, x, "--threads", "1"])
        if i % 4 == 0:
            cmds.append([cli, "predict", m, ok_png, "--threads", "1"])
        elif i % 4 in (1, 2):  # the reverse pass, in float32 and in float64
            cmds.append([cli, "explain", m, x1, "--method", "gradient", "--threads", "1",
                         "--npy", os.path.join(tmp, "g%d.npy" % i)] +
                        (["--precision", "float64"] if i % 4 == 2 else []))
    for f in ls("images"):
        cmds.append([cli, "predict", base, f, "--threads", "1"])
    for f in ls("npy"):
        cmds.append([cli, "run", base, f, "--threads", "1"])
        cmds.append([cli, "predict", base, f, "--threads", "1", "--json"])
    for i, f in enumerate(ls("csv")):
        extra = ["--logits"] if i % 3 == 0 else ["--renormalize"] if i % 3 == 1 else []
        cmds.append([cli, "report", "--predictions", f, "--json", os.path.join(tmp, "r%d.json" % i),
                     "--bootstrap", "0"] + extra)
    for d in ls("sidecar"):
        cmds.append([cli, "predict", os.path.join(d, "model.onnx"), ok_png, "--threads", "1"])
        cmds.append([cli, "info", os.path.join(d, "model.onnx")])
    bad = []
    with cf.ThreadPoolExecutor(max_workers=jobs) as ex:
        for cmd, problem in ex.map(run_one, cmds):
            if problem:
                bad.append((cmd, problem))
    for cmd, problem in bad[:40]:
        print("FAIL: %s\n      %s" % (" ".join(cmd), problem.replace("\n", "\n      ")))
    print("hostile: %d processes, %d misbehaved" % (len(cmds), len(bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args:
        print(__doc__)
        sys.exit(2)
    out = args[0]
    if "--check" in args:
        cli = args[args.index("--check") + 1]
        jobs = int(args[args.index("--jobs") + 1]) if "--jobs" in args else 2
        sys.exit(check(out, cli, jobs))
    generate(out)
