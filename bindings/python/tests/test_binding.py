"""Tests of the Python binding against independent references: the NumPy
forward pass of the tiny models (tiny_models.py), closed-form gradients and
Grad-CAM, finite differences, NumPy recomputations of the summaries, the
metrics, temperature scaling and conformal sets, and the C compiler's own
struct layouts.

Run by tests/cli/test_python.sh with Debian's /usr/bin/python3:
    CANDOR_LIBRARY=build/libcandor.so PYTHONPATH=bindings/python \
        python3 -m unittest discover -s bindings/python/tests
"""
import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tiny_models as tm  # noqa: E402

import candor  # noqa: E402
from candor import _lib  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("CANDOR_SOURCE_DIR",
                     os.path.normpath(os.path.join(HERE, "..", "..", "..")))


def softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def entropy(p):
    p = np.asarray(p, np.float64)
    return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0.0), axis=-1)


class Fixture(unittest.TestCase):
    tmp = None

    @classmethod
    def setUpClass(cls):
        if Fixture.tmp is None:
            Fixture.tmp = tempfile.mkdtemp(prefix="candor-py-")
            tm.make_all(Fixture.tmp)
        cls.dir = Fixture.tmp
        cls.w = tm.weights(1)
        cls.wb = tm.weights(2)
        cls.drop = candor.Model(os.path.join(cls.dir, "tiny_cnn.onnx"))
        cls.plain = candor.Model(os.path.join(cls.dir, "tiny_cnn_nodrop.onnx"))
        cls.other = candor.Model(os.path.join(cls.dir, "tiny_cnn_b.onnx"))
        cls.x = np.random.default_rng(7).uniform(0, 1, (3, 1, 8, 8)).astype(np.float32)

    def path(self, name):
        return os.path.join(self.dir, name)


def tearDownModule():
    if Fixture.tmp:
        shutil.rmtree(Fixture.tmp, ignore_errors=True)


class TestLayout(unittest.TestCase):
    """Every ctypes struct matches the C compiler's sizeof/offsetof."""

    def test_struct_layouts(self):
        cc = shutil.which(os.environ.get("CC", "cc"))
        if not cc:
            self.skipTest("no C compiler")
        lines = ['#include <stddef.h>', '#include <stdio.h>', '#include <candor/candor.h>',
                 'int main(void) {']
        expected = []
        for name, cls in sorted(_lib.STRUCTS.items()):
            lines.append('printf("%%s %%zu\\n", "%s", sizeof(%s));' % (name, name))
            expected.append("%s %d" % (name, ctypes.sizeof(cls)))
            for field, _ in cls._fields_:
                lines.append('printf("%%s.%%s %%zu\\n", "%s", "%s", offsetof(%s, %s));'
                             % (name, field, name, field))
                expected.append("%s.%s %d" % (name, field, getattr(cls, field).offset))
        lines.append("return 0; }")
        with tempfile.TemporaryDirectory() as d:
            c = os.path.join(d, "layout.c")
            with open(c, "w") as f:
                f.write("\n".join(lines))
            exe = os.path.join(d, "layout")
            subprocess.run([cc, "-std=c11", "-I", os.path.join(SRC, "include"), c, "-o", exe],
                           check=True)
            got = subprocess.run([exe], check=True, capture_output=True,
                                 text=True).stdout.split("\n")
        self.assertEqual([g for g in got if g], expected)


class TestModel(Fixture):
    def test_metadata(self):
        m = self.drop
        self.assertEqual(m.inputs, ["x"])
        self.assertEqual(m.outputs, ["logits"])
        self.assertEqual(m.input_shape(0), (None, 1, 8, 8))
        self.assertEqual(m.output_shape(0), (None, 5))
        self.assertEqual(m.labels, tm.LABELS)
        self.assertEqual(m.output_kind, "logits")
        self.assertEqual(m.opset, 13)
        n_weights = sum(a.size for a in self.w.values())
        self.assertEqual(self.plain.parameter_count, n_weights)
        self.assertEqual(m.parameter_count, n_weights + 1)  # + Dropout's ratio initializer
        pre = m.preprocess
        self.assertEqual((pre["resize_h"], pre["resize_w"], pre["scale"], pre["color"]),
                         (8, 8, 255.0, "gray"))

    def test_run_equals_numpy(self):
        ref = tm.forward(self.w, self.x)
        for model in (self.plain, self.drop):  # run = inference: Dropout is the identity
            out = model.run(self.x)
            self.assertEqual(len(out), 1)
            self.assertEqual(out[0].dtype, np.float32)
            np.testing.assert_allclose(out[0], ref, rtol=1e-4, atol=1e-5)
        by_name = self.plain.run({"x": self.x}, outputs=["logits"], threads=1)[0]
        np.testing.assert_allclose(by_name, ref, rtol=1e-4, atol=1e-5)
        with self.plain.session(threads=2) as s:
            np.testing.assert_array_equal(s.run(self.x[:1])[0], self.plain.run(self.x[:1])[0])

    def test_png_input_equals_npy(self):
        from_png = self.plain.load_input(self.path("input.png"))
        from_npy = self.plain.load_input(self.path("input.npy"))
        self.assertEqual(from_png.shape, (1, 1, 8, 8))
        np.testing.assert_allclose(from_png, from_npy, atol=1e-6)
        img = candor.load_image(self.path("input.png"))
        np.testing.assert_array_equal(img[:, :, 0], tm.sample_pixels())

    def test_preprocess_closed_form(self):
        rgb = np.random.default_rng(3).integers(0, 256, (5, 6, 3)).astype(np.float32)
        t = candor.image_to_tensor(rgb, {"color": "gray", "scale": 255, "mean": [0.5],
                                         "std": [0.25]})
        gray = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
        np.testing.assert_allclose(t[0, 0], (gray / 255 - 0.5) / 0.25, atol=1e-4)
        t = candor.image_to_tensor(rgb, {"crop_h": 3, "crop_w": 2, "mean": [0.1, 0.2, 0.3]})
        np.testing.assert_allclose(t[0], np.transpose(rgb[1:4, 2:4] / 255, (2, 0, 1)) -
                                   np.array([0.1, 0.2, 0.3])[:, None, None], atol=1e-5)

    def test_npy_roundtrip(self):
        for dt in (np.float32, np.float64, np.int64, np.int32, np.uint8, np.int8, np.bool_):
            a = (np.arange(24).reshape(2, 3, 4) % 7).astype(dt)
            p = self.path("rt.npy")
            candor.save_npy(p, a)
            back = np.load(p)  # NumPy reads candor's file ...
            self.assertEqual(back.dtype, a.dtype)
            np.testing.assert_array_equal(back, a)
            np.save(p, a)      # ... and candor reads NumPy's
            np.testing.assert_array_equal(candor.load_npy(p), a)


class TestUncertainty(Fixture):
    def test_mc_dropout_moments(self):
        # Gemm after Dropout is linear, so each sampled logit has mean equal to
        # the deterministic logit and variance sum_j F_kj^2 a_j^2 p/(1-p).
        t, p = 4000, tm.DROP_P
        s = self.drop.sample(self.x[:1], samples=t, seed=3)[0]
        self.assertEqual(s.shape, (1, t, 5))
        a = tm.features(self.w, self.x[:1]).reshape(-1)
        var = (self.w["F"].astype(np.float64) ** 2) @ (a ** 2) * p / (1 - p)
        det = tm.forward(self.w, self.x[:1])[0]
        mean = s[0].mean(axis=0)
        self.assertTrue(np.all(np.abs(mean - det) < 5 * np.sqrt(var / t)), (mean, det))
        np.testing.assert_allclose(s[0].var(axis=0), var, rtol=0.15)

    def test_seeds_and_threads(self):
        a = self.drop.sample(self.x, samples=8, seed=11, threads=1)[0]
        b = self.drop.sample(self.x, samples=8, seed=11, threads=2)[0]
        c = self.drop.sample(self.x, samples=8, seed=12)[0]
        np.testing.assert_array_equal(a, b)
        self.assertFalse(np.array_equal(a, c))
        self.assertEqual(a.shape, (3, 8, 5))

    def test_predict_summary_equals_numpy(self):
        s = self.drop.sample(self.x, samples=40, seed=5)[0]
        preds = self.drop.predict(self.x, samples=40, seed=5, level=0.9)
        self.assertEqual(len(preds), 3)
        for n, pr in enumerate(preds):
            p = softmax(s[n])
            mean = p.mean(axis=0)
            np.testing.assert_allclose(pr["probabilities"], p, atol=1e-6)
            np.testing.assert_allclose(pr["mean"], mean, atol=1e-6)
            np.testing.assert_allclose(pr["std"], p.std(axis=0), atol=1e-6)
            np.testing.assert_allclose(pr["lower"], np.percentile(p, 5, axis=0), atol=1e-6)
            np.testing.assert_allclose(pr["upper"], np.percentile(p, 95, axis=0), atol=1e-6)
            top = int(np.argmax(mean))
            self.assertEqual(pr["top_class"], top)
            self.assertEqual(pr["label"], tm.LABELS[top])
            h, eh = entropy(mean), entropy(p).mean()
            self.assertAlmostEqual(pr["predictive_entropy"], h, places=5)
            self.assertAlmostEqual(pr["expected_entropy"], eh, places=5)
            self.assertAlmostEqual(pr["mutual_information"], max(h - eh, 0.0), places=5)
            votes = np.argmax(p, axis=1)
            self.assertAlmostEqual(pr["agreement"], np.mean(votes == top), places=9)
            self.assertAlmostEqual(pr["variation_ratio"],
                                   1 - np.bincount(votes).max() / len(votes), places=9)

    def test_summarize_direct(self):
        p = softmax(np.random.default_rng(2).normal(size=(7, 4)))
        s = candor.summarize(p)
        np.testing.assert_allclose(s["mean"], p.mean(axis=0), atol=1e-6)
        self.assertEqual(s["n_samples"], 7)

    def test_ensemble(self):
        with candor.Ensemble([self.plain, self.other]) as e:
            self.assertEqual(len(e), 2)
            s = e.sample(self.x)[0]
            self.assertEqual(s.shape, (3, 2, 5))  # member-major, T = 1 each
            np.testing.assert_allclose(s[:, 0], tm.forward(self.w, self.x), rtol=1e-4,
                                       atol=1e-5)
            np.testing.assert_allclose(s[:, 1], tm.forward(self.wb, self.x), rtol=1e-4,
                                       atol=1e-5)
            preds = e.predict(self.x)
        for n, pr in enumerate(preds):
            members = softmax(np.stack([tm.forward(self.w, self.x[n:n + 1])[0],
                                        tm.forward(self.wb, self.x[n:n + 1])[0]]))
            mean = members.mean(axis=0)
            np.testing.assert_allclose(pr["mean"], mean, atol=1e-5)
            self.assertAlmostEqual(pr["mutual_information"],
                                   entropy(mean) - entropy(members).mean(), places=5)

    def test_mc_ensemble_sizes(self):
        e = candor.Ensemble([self.drop, self.drop], samples=3, seed=1)
        s = e.sample(self.x[:2])[0]
        self.assertEqual(s.shape, (2, 6, 5))
        self.assertFalse(np.array_equal(s[:, :3], s[:, 3:]))  # members use different masks


class TestCalibration(Fixture):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        rng = np.random.default_rng(42)
        cls.k, n = 4, 600
        cls.logits = rng.normal(0, 2.5, (n, cls.k))
        # Labels drawn from softmax(z / 2): the logits are overconfident by 2.
        p = softmax(cls.logits / 2.0)
        cls.labels = np.array([rng.choice(cls.k, p=row) for row in p])
        cls.probs = softmax(cls.logits)

    def test_metrics_equal_numpy(self):
        m = candor.metrics(self.probs, self.labels, bins=15)
        p, y, n = self.probs, self.labels, len(self.labels)
        conf, pred = p.max(axis=1), p.argmax(axis=1)
        correct = (pred == y).astype(float)
        self.assertAlmostEqual(m["accuracy"], correct.mean(), places=12)
        self.assertAlmostEqual(m["nll"], -np.mean(np.log(np.maximum(p[np.arange(n), y],
                                                                     1e-12))), places=10)
        onehot = np.eye(self.k)[y]
        self.assertAlmostEqual(m["brier"], np.mean(np.sum((p - onehot) ** 2, axis=1)),
                               places=10)
        b = np.clip(np.ceil(conf * 15).astype(int) - 1, 0, 14)  # bins ((m-1)/M, m/M]
        ece = sum(abs(correct[b == i].mean() - conf[b == i].mean()) * np.sum(b == i) / n
                  for i in range(15) if np.any(b == i))
        self.assertAlmostEqual(m["ece"], ece, places=10)
        bins = candor.reliability_bins(self.probs, self.labels, 15)
        self.assertEqual([x["count"] for x in bins], [int(np.sum(b == i)) for i in range(15)])
        ci = candor.metrics(self.probs, self.labels, bootstrap=200, seed=1)["nll_ci"]
        self.assertLess(ci[0], m["nll"])
        self.assertGreater(ci[1], m["nll"])

    def test_temperature_equals_numpy_minimiser(self):
        c = candor.fit_temperature(self.logits, self.labels)
        self.assertEqual(c.method, "temperature")
        self.assertEqual(c.classes, self.k)
        n = len(self.labels)

        def nll(t):
            return -np.mean(np.log(softmax(self.logits / t)[np.arange(n), self.labels]))
        lo, hi = np.log(0.05), np.log(20.0)  # golden-section search on log T
        g = (np.sqrt(5) - 1) / 2
        for _ in range(200):
            a, b = hi - g * (hi - lo), lo + g * (hi - lo)
            if nll(np.exp(a)) < nll(np.exp(b)):
                hi = b
            else:
                lo = a
        t_ref = np.exp((lo + hi) / 2)
        self.assertAlmostEqual(c.temperature, t_ref, delta=1e-3 * t_ref)
        self.assertLessEqual(nll(c.temperature), nll(1.0))
        np.testing.assert_allclose(c.apply(self.logits), softmax(self.logits / c.temperature),
                                   atol=1e-9)
        path = self.path("temp.json")
        c.save(path)
        back = candor.Calibrator.load(path)
        self.assertAlmostEqual(back.temperature, c.temperature, places=12)

    def test_other_methods_fit(self):
        for method in ("vector", "matrix", "histogram", "isotonic"):
            c = candor.Calibrator.fit(self.logits, self.labels, method)
            out = c.apply(self.logits[:10])
            np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-9)
            self.assertTrue(np.isnan(c.temperature))

    def test_conformal_lac_equals_numpy(self):
        alpha, n = 0.1, len(self.labels)
        cf = candor.Conformal(self.probs, self.labels, alpha=alpha, score="lac")
        scores = 1 - self.probs[np.arange(n), self.labels]
        k = int(np.ceil((n + 1) * (1 - alpha)))
        self.assertAlmostEqual(cf.qhat, np.sort(scores)[k - 1], places=12)
        sets = cf.predict(self.probs[:50])
        np.testing.assert_array_equal(sets, 1 - self.probs[:50] <= cf.qhat)


class TestExplain(Fixture):
    def test_gradient_closed_form_and_finite_differences(self):
        ex = candor.Explainer(self.plain)
        x = self.x[:1]
        z = tm.forward(self.w, x)[0]
        target = int(np.argmax(z))
        # d logit_t / d features = F[t] (Gemm after Flatten): exact.
        g_feat, scores = ex.gradient(x, wrt=["features"])
        np.testing.assert_allclose(g_feat[0], self.w["F"][target].reshape(1, 4, 8, 8),
                                   atol=1e-6)
        self.assertAlmostEqual(scores[0], z[target], places=4)
        # d logit_t / d x against central differences of the NumPy model.
        g, _ = ex.gradient(x, objective="logit", target=target)
        h, fd = 1e-4, np.zeros(64)
        xf = x.astype(np.float64).reshape(-1)
        for i in range(64):
            e = np.zeros(64)
            e[i] = h
            fd[i] = (tm.forward(self.w, (xf + e).reshape(1, 1, 8, 8))[0, target] -
                     tm.forward(self.w, (xf - e).reshape(1, 1, 8, 8))[0, target]) / (2 * h)
        np.testing.assert_allclose(g.reshape(-1), fd, atol=2e-4)
        # float64 mode: the same gradient to float64 accuracy (rounded once).
        g64, _ = candor.Explainer(self.plain, float64=True).gradient(x, target=target)
        np.testing.assert_allclose(g64.reshape(-1), fd, rtol=1e-6, atol=1e-7 * np.abs(fd).max())
        # log-probability objective: gradient = sum_k (1[k=t] - p_k) dz_k/dx.
        g_lp, _ = ex.gradient(x, objective="log_prob", target=target)
        g_all = np.stack([ex.gradient(x, target=k)[0].reshape(-1) for k in range(5)])
        coeff = np.eye(5)[target] - softmax(z)
        np.testing.assert_allclose(g_lp.reshape(-1), coeff @ g_all, atol=1e-5)

    def test_gradcam_equals_numpy(self):
        ex = candor.Explainer(self.plain)
        x = self.x[1:2]
        z = tm.forward(self.w, x)[0]
        t = int(np.argmax(z))
        r = ex.explain(x, "gradcam")
        self.assertEqual(r["layer"], "features")
        self.assertEqual(r["target"], t)
        a = tm.features(self.w, x)[0]
        alpha = self.w["F"][t].reshape(4, 8, 8).mean(axis=(1, 2))
        cam = np.maximum(np.tensordot(alpha, a, axes=1), 0)
        cam = (cam - cam.min()) / (cam.max() - cam.min() + 1e-7)
        self.assertEqual(r["map"].shape, (1, 1, 8, 8))
        np.testing.assert_allclose(r["map"][0, 0], cam, atol=1e-4)

    def test_integrated_gradients_completeness(self):
        ex = candor.Explainer(self.plain)
        x = self.x[2:3]
        r = ex.explain(x, "ig", steps=64, ig_rule="riemann_middle", baseline="black")
        t = r["target"]
        self.assertAlmostEqual(r["score"], tm.forward(self.w, x)[0, t], places=4)
        self.assertAlmostEqual(r["baseline_score"], tm.forward(self.w, 0 * x)[0, t], places=4)
        total = float(r["map"].astype(np.float64).sum())
        self.assertAlmostEqual(r["completeness_delta"],
                               total - (r["score"] - r["baseline_score"]), places=4)
        self.assertLess(abs(r["completeness_delta"]),
                        0.05 * abs(r["score"] - r["baseline_score"]) + 1e-3)
        sal = ex.saliency_2d(r["map"])
        np.testing.assert_allclose(sal, np.abs(r["map"][0]).sum(axis=0), atol=1e-6)

    def test_gradient_method_equals_gradient(self):
        ex = candor.Explainer(self.plain)
        x = self.x[:1]
        r = ex.explain(x, "gradient")
        g, _ = ex.gradient(x)
        np.testing.assert_allclose(r["map"], g, atol=1e-7)
        r = ex.explain(x, "gradxinput")
        np.testing.assert_allclose(r["map"], g * x, atol=1e-6)


class TestErrors(Fixture):
    def test_missing_file(self):
        with self.assertRaises(candor.CandorError) as cm:
            candor.Model(self.path("no_such_model.onnx"))
        self.assertEqual(cm.exception.name, "io")
        self.assertEqual(cm.exception.code, 2)
        self.assertIn("no_such_model.onnx", str(cm.exception))
        self.assertIn("no_such_model.onnx", cm.exception.message)

    def test_corrupt_model(self):
        bad = self.path("garbage.onnx")
        with open(bad, "wb") as f:
            f.write(b"\x0a\xff\xff\xff\xff\x0f not a protobuf")
        with self.assertRaises(candor.CandorError) as cm:
            candor.Model(bad)
        self.assertEqual(cm.exception.name, "parse")
        self.assertTrue(cm.exception.message)

    def test_bad_sidecar_names_field(self):
        shutil.copy(self.path("tiny_cnn_nodrop.onnx"), self.path("badside.onnx"))
        with open(self.path("badside.candor.json"), "w") as f:
            f.write('{"preprocess": {"mean": "zero"}}')
        with self.assertRaises(candor.CandorError) as cm:
            candor.Model(self.path("badside.onnx"))
        self.assertEqual(cm.exception.name, "parse")
        self.assertIn("preprocess.mean", cm.exception.message)

    def test_wrong_input_shape(self):
        with self.assertRaises(candor.CandorError) as cm:
            self.plain.run(np.zeros((1, 3, 8, 8), np.float32))
        self.assertIn(cm.exception.name, ("shape", "invalid-argument"))
        self.assertTrue(cm.exception.message)

    def test_mc_without_dropout(self):
        with self.assertRaises(candor.CandorError) as cm:
            self.plain.predict(self.x, samples=5)
        self.assertEqual(cm.exception.name, "invalid-argument")
        self.assertIn("Dropout", cm.exception.message)
        with self.assertRaises(candor.CandorError):
            self.drop.sample(self.x, samples=4, dropout=[("no_such_tensor", 0.2)])

    def test_bad_arrays(self):
        with self.assertRaises(candor.CandorError):
            candor.metrics(np.full((3, 2), 0.5), [0, 1, 2])  # label 2 of k = 2
        with self.assertRaises(ValueError):
            candor.Calibrator.fit(np.zeros((3, 2)), [0, 1, 0], "no-such-method")
        with self.assertRaises(ValueError):
            candor.metrics(np.zeros(3), [0, 1, 0])

    def test_missing_image(self):
        with self.assertRaises(candor.CandorError) as cm:
            candor.load_image(self.path("nope.png"))
        self.assertEqual(cm.exception.name, "io")


if __name__ == "__main__":
    unittest.main()
