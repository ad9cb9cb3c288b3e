#!/usr/bin/python3
"""Builds the fuzz seed corpora in tests/fuzz/corpus/<target>/ from real files.

Run with /usr/bin/python3 (numpy, onnx, PIL). Deterministic: rerunning gives
the same files. Sources:
  - ONNX models and TensorProto .pb files: small tests of the ONNX backend
    corpus (../shared/onnx-tests, or $CANDOR_ONNX_TESTS) whose operators
    candor supports, plus a small CNN built here with the onnx helper API;
  - images: PNG/JPEG encoded by PIL in the variants libpng/libjpeg handle
    (gray, RGB, RGBA, palette, 16-bit, progressive, grayscale JPEG);
  - .npy: numpy.save of every dtype candor reads, big-endian, format 2.0;
  - CSV, sidecar and calibration JSON: small valid documents of each kind.
Keep the total at a few hundred KB: only small files are copied."""
import io, json, os, shutil, struct, sys
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
TESTS = os.environ.get("CANDOR_ONNX_TESTS", os.path.join(SRC, "..", "shared", "onnx-tests"))
OUT = os.path.join(HERE, "corpus")

NODE_TESTS = """conv_with_strides_padding conv_with_autopad_same convtranspose relu leakyrelu
prelu_broadcast elu sigmoid tanh clip hardsigmoid hardswish softmax_axis_1 logsoftmax_axis_1
gemm_default_no_bias gemm_all_attributes matmul_2d matmul_4d maxpool_2d_pads
maxpool_2d_ceil averagepool_2d_pads averagepool_2d_ceil globalaveragepool globalmaxpool
batchnorm_example add_bcast sub_bcast mul_bcast div_bcast sum_example sqrt exp
concat_2d_axis_0 flatten_axis1 reshape_reduced_dims reshape_negative_dim transpose_default
squeeze unsqueeze_axis_0 resize_upsample_scales_linear resize_downsample_scales_nearest
pad constant_pad edge_pad reflect_pad identity constant shape gather_0 reduce_mean_keepdims_example
cast_FLOAT_to_DOUBLE dropout_default""".split()
TORCH_TESTS = """test_Conv2d test_Conv2d_depthwise test_Conv1d test_MaxPool2d test_AvgPool2d
test_BatchNorm2d_eval test_Linear test_PReLU_2d test_ReflectionPad2d test_ConvTranspose2d""".split()


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def small_cnn():
    """Conv -> BN -> Relu -> MaxPool -> Flatten -> Gemm -> Softmax, seeded weights."""
    import onnx
    from onnx import helper, TensorProto, numpy_helper
    rng = np.random.default_rng(0)
    t = lambda name, a: numpy_helper.from_array(a.astype(np.float32), name)
    inits = [t("W", rng.normal(size=(4, 1, 3, 3))), t("B", rng.normal(size=4)),
             t("g", np.ones(4)), t("b", np.zeros(4)), t("mu", rng.normal(size=4) * 0.1),
             t("var", np.ones(4)), t("Wf", rng.normal(size=(3, 16))), t("Bf", np.zeros(3))]
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("BatchNormalization", ["c", "g", "b", "mu", "var"], ["n"], name="bn"),
             helper.make_node("Relu", ["n"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "Wf", "Bf"], ["z"], transB=1),
             helper.make_node("Softmax", ["z"], ["y"], axis=1)]
    g = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="candor-seeds")
    return m.SerializeToString()


def onnx_seeds():
    for name in NODE_TESTS:
        d = os.path.join(TESTS, "node", "test_" + name)
        if not os.path.isdir(d):
            continue
        model = open(os.path.join(d, "model.onnx"), "rb").read()
        if len(model) < 4096:
            put("fuzz_onnx_load", name + ".onnx", model)
            put("fuzz_onnx_run", name + ".onnx", model)
        pb = os.path.join(d, "test_data_set_0", "input_0.pb")
        if os.path.exists(pb) and os.path.getsize(pb) < 2048:
            put("fuzz_onnx_tensor", name + "_in0.pb", open(pb, "rb").read())
    for name in TORCH_TESTS:
        d = os.path.join(TESTS, "pytorch-converted", name)
        p = os.path.join(d, "model.onnx")
        if os.path.exists(p) and os.path.getsize(p) < 8192:
            put("fuzz_onnx_load", name + ".onnx", open(p, "rb").read())
            put("fuzz_onnx_run", name + ".onnx", open(p, "rb").read())
    cnn = small_cnn()
    put("fuzz_onnx_load", "small_cnn.onnx", cnn)
    put("fuzz_onnx_run", "small_cnn.onnx", cnn)
    from onnx import numpy_helper
    for i, a in enumerate([np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2], dtype=np.int64),
                           np.array([[1.5]], dtype=np.float16), np.array([True, False])]):
        put("fuzz_onnx_tensor", "gen%d.pb" % i, numpy_helper.from_array(a, "t").SerializeToString())


def image_seeds():
    from PIL import Image
    rng = np.random.default_rng(1)
    rgb = Image.fromarray(rng.integers(0, 256, size=(9, 7, 3), dtype=np.uint8), "RGB")
    variants = {"rgb": rgb, "gray": rgb.convert("L"), "rgba": rgb.convert("RGBA"),
                "pal": rgb.convert("P"), "la": rgb.convert("LA")}
    for k, im in variants.items():
        b = io.BytesIO(); im.save(b, "PNG"); put("fuzz_png", k + ".png", b.getvalue())
    g16 = Image.fromarray(rng.integers(0, 65536, size=(5, 6)).astype(np.uint16))
    b = io.BytesIO(); g16.save(b, "PNG"); put("fuzz_png", "gray16.png", b.getvalue())
    b = io.BytesIO(); rgb.save(b, "PNG", interlace=1) if False else rgb.resize((16, 12)).save(b, "PNG", optimize=True)
    put("fuzz_png", "rgb_opt.png", b.getvalue())
    for k, (im, kw) in {"rgb": (rgb, {}), "gray": (rgb.convert("L"), {}),
                        "prog": (rgb.resize((24, 20)), {"progressive": True}),
                        "q20": (rgb, {"quality": 20}), "sub": (rgb.resize((17, 13)), {"subsampling": 2})}.items():
        b = io.BytesIO(); im.save(b, "JPEG", **kw); put("fuzz_jpeg", k + ".jpg", b.getvalue())


def npy_seeds():
    rng = np.random.default_rng(2)
    arrays = {"f4": rng.normal(size=(2, 3)).astype("<f4"), "f8": rng.normal(size=(4,)),
              "u1": np.arange(5, dtype=np.uint8), "i1": np.arange(-3, 3, dtype=np.int8),
              "i4": np.arange(6, dtype="<i4").reshape(1, 2, 3), "i8": np.arange(3, dtype="<i8"),
              "b1": np.array([True, False]), "scalar": np.float32(3.5), "empty": np.zeros((0, 3), "<f4"),
              "be_f4": np.arange(4, dtype=">f4"), "be_i8": np.arange(2, dtype=">i8"),
              "fortran": np.asfortranarray(np.arange(6, dtype="<f4").reshape(2, 3)),
              "nchw": rng.normal(size=(1, 1, 4, 4)).astype("<f4")}
    for k, a in arrays.items():
        b = io.BytesIO(); np.save(b, a); put("fuzz_npy", k + ".npy", b.getvalue())
    b = io.BytesIO()
    np.lib.format.write_array(b, np.arange(3, dtype="<f4"), version=(2, 0))
    put("fuzz_npy", "v2.npy", b.getvalue())


def text_seeds():
    csvs = {"probs": "a,b,c,label\n0.7,0.2,0.1,0\n0.1,0.8,0.1,1\n0.3,0.3,0.4,2\n0.5,0.4,0.1,1\n",
            "names": "cat,dog,label\n0.9,0.1,cat\n0.2,0.8,dog\n0.6,0.4,dog\n",
            "logits": "x0,x1,label\n2.5,-1,0\n-0.5,0.25,1\n1e3,-1e3,0\n",
            "quoted": "\"a\",\"b\",label\r\n0.5,0.5,1\r\n1,0,0\r\n",
            "labelfirst": "label,p0,p1\n1,0.25,0.75\n0,0.5,0.5\n"}
    for k, v in csvs.items():
        put("fuzz_csv", k + ".csv", v.encode())
    side = [{"labels": ["a", "b", "c"]},
            {"labels": ["x", "y"], "preprocess": {"resize": 32, "crop": [28, 28], "scale": 255,
                                                  "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
                                                  "color": "rgb"}, "output": {"kind": "logits", "name": "y"}},
            {"preprocess": {"resize": [20, 30], "color": "gray"}, "output": {"kind": "probabilities"},
             "input": {"name": "x"}, "dropout_sites": [{"tensor": "r", "p": 0.2, "channel": True}]},
            {"output": {"kind": "segmentation"}, "labels": []}]
    for i, s in enumerate(side):
        put("fuzz_sidecar", "side%d.json" % i, json.dumps(s).encode())
    base = {"format": "candor-calibration", "version": 1}
    calib = [dict(base, method="temperature", num_classes=3, input="logits", temperature=1.7),
             dict(base, method="vector", num_classes=2, input="logits", w=[1.0, 0.5], b=[0.1, -0.1]),
             dict(base, method="matrix", num_classes=2, input="logits", W=[1, 0, 0, 1], b=[0, 0], l2=0),
             dict(base, method="platt", num_classes=2, input="logits", a=1.2, b=-0.3),
             dict(base, method="histogram", num_classes=2, input="probabilities", bins=2,
                  values=[0.1, 0.9, 0.2, 0.8]),
             dict(base, method="isotonic", num_classes=2, input="probabilities",
                  classes=[{"x": [0, 0.5, 1], "y": [0, 0.4, 1]}, {"x": [0, 1], "y": [0.1, 0.9]}])]
    for i, c in enumerate(calib):
        put("fuzz_calib_json", "calib%d.json" % i, json.dumps(c).encode())


if __name__ == "__main__":
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    onnx_seeds(); image_seeds(); npy_seeds(); text_seeds()
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(OUT) for f in fs)
    print("seed corpora in %s: %d bytes" % (OUT, total))
