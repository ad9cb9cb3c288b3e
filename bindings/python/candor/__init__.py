"""candor for Python: ONNX CNN inference with uncertainty, calibration and
explanations, over libcandor.so (ctypes) and NumPy arrays.

    import candor
    m = candor.Model("models/fmnist_cnn.onnx")
    x = m.load_input("shoe.png")                 # (1, C, H, W) float32
    logits, = m.run(x)
    pred = m.predict(x, samples=30)[0]           # MC dropout summary of row 0
    ex = candor.Explainer(m).explain(x, "gradcam")

The library is found through $CANDOR_LIBRARY, then the build tree of this
checkout, then the system (see docs/python.md). Every library error raises
candor.CandorError with the library's message.
"""
import ctypes
import threading

import numpy as np

from . import _lib
from ._lib import (cd_class_summary, cd_conformal_classifier, cd_conformal_options, cd_error,
                   cd_explain_options, cd_explain_params, cd_explanation, cd_fit_options,
                   cd_image, cd_mc_options, cd_metric_options, cd_metrics, cd_objective,
                   cd_preprocess, cd_reliability_bin, cd_session_options, cd_dropout_site)

__version__ = "0.1.0"
__all__ = ["CandorError", "Model", "Session", "Ensemble", "Explainer", "Calibrator",
           "Conformal", "load_image", "image_to_tensor", "load_npy", "save_npy",
           "summarize", "metrics", "reliability_bins", "fit_temperature", "library"]

_lock = threading.Lock()
_handle = None


def library():
    """The loaded ctypes library (loaded on first use)."""
    global _handle
    with _lock:
        if _handle is None:
            _handle = _lib.load_library()
        return _handle


# ------------------------------------------------------------------- errors

class CandorError(Exception):
    """A failed library call. code: the cd_status number; name: its short
    name ("io", "parse", "shape", ...); message: the library's message."""

    def __init__(self, code, message):
        self.code = int(code)
        self.name = library().cd_status_name(self.code).decode()
        self.message = message
        super().__init__("%s: %s" % (self.name, message))


def _call(fn, *args):
    """Calls a cd_status function with a fresh cd_error as last argument."""
    err = cd_error()
    status = fn(*args, ctypes.byref(err))
    if status != 0:
        raise CandorError(status, err.message.decode("utf-8", "replace"))


def _s(text):
    return None if text is None else text.encode()


def _str(raw):
    return None if raw is None else raw.decode("utf-8", "replace")


# ------------------------------------------------------------------ tensors

_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 6: np.int32, 7: np.int64, 9: np.bool_,
           10: np.float16, 11: np.float64}
_CODES = {np.dtype(v): k for k, v in _DTYPES.items()}


class _Tensor:
    """Owns a cd_tensor* made from an array (copied) or returned by candor."""

    def __init__(self, ptr):
        self.ptr = ptr

    @classmethod
    def from_array(cls, array, dtype=None):
        a = np.asarray(array, dtype=dtype)
        if a.dtype not in _CODES:
            a = a.astype(np.float32)
        a = np.ascontiguousarray(a)
        dims = (ctypes.c_int64 * max(a.ndim, 1))(*a.shape)
        out = ctypes.c_void_p()
        _call(library().cd_tensor_from_data, _CODES[a.dtype], a.ndim, dims,
              a.ctypes.data_as(ctypes.c_void_p), ctypes.byref(out))
        return cls(out)

    def numpy(self):
        return _copy(self.ptr)

    def free(self):
        if self.ptr:
            library().cd_tensor_free(self.ptr)
        self.ptr = None

    def __del__(self):
        try:
            self.free()
        except Exception:  # interpreter shutdown
            pass


def _copy(ptr):
    """Array copy of a cd_tensor* (which stays owned by whoever owns it)."""
    lib = library()
    ndim = lib.cd_tensor_ndim(ptr)
    dims = lib.cd_tensor_dims(ptr)
    shape = tuple(dims[i] for i in range(ndim))
    dtype = np.dtype(_DTYPES[lib.cd_tensor_dtype(ptr)])
    nbytes = lib.cd_tensor_nbytes(ptr)
    raw = ctypes.string_at(lib.cd_tensor_cdata(ptr), nbytes) if nbytes else b""
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def _take(ptr):
    """Array copy of a tensor candor returned, which is then freed."""
    t = _Tensor(ptr)
    try:
        return t.numpy()
    finally:
        t.free()


def _ptr_array(tensors):
    return (ctypes.c_void_p * max(len(tensors), 1))(*[t.ptr for t in tensors])


def _f64(a, ndim, what):
    a = np.ascontiguousarray(a, dtype=np.float64)
    if a.ndim != ndim:
        raise ValueError("%s must have %d dimensions, got shape %s" % (what, ndim, a.shape))
    return a


def _labels(y, n):
    y = np.ascontiguousarray(y, dtype=np.intc)
    if y.shape != (n,):
        raise ValueError("labels must have shape (%d,), got %s" % (n, y.shape))
    return y


def _dp(a):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_double))


def _ip(a):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_int))


class _Owned:
    """Base for objects that own a C handle released by `_free_name`."""
    _free_name = None

    def __init__(self):
        self._ptr = ctypes.c_void_p()

    def close(self):
        """Releases the C object now (also done when garbage-collected)."""
        if getattr(self, "_ptr", None) and self._ptr.value:
            getattr(library(), self._free_name)(self._ptr)
            self._ptr = ctypes.c_void_p()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass


# ------------------------------------------------------------- .npy, images

def load_npy(path):
    """Reads a .npy file with candor's reader (keeps the element type)."""
    out = ctypes.c_void_p()
    _call(library().cd_npy_load, _s(str(path)), ctypes.byref(out))
    return _take(out)


def save_npy(path, array):
    """Writes a .npy file atomically with candor's writer."""
    t = _Tensor.from_array(array)
    try:
        _call(library().cd_npy_save, _s(str(path)), t.ptr)
    finally:
        t.free()


def load_image(path):
    """Decodes a PNG or JPEG into an (H, W, C) float32 array on [0, 255]."""
    img = ctypes.POINTER(cd_image)()
    _call(library().cd_image_load, _s(str(path)), ctypes.byref(img))
    try:
        c = img.contents
        n = c.width * c.height * c.channels
        return np.ctypeslib.as_array(c.pixels, (n,)).reshape(c.height, c.width,
                                                              c.channels).copy()
    finally:
        library().cd_image_free(img)


_PRE_KEYS = ("resize_short", "resize_h", "resize_w", "crop_h", "crop_w", "scale")


def _pre_to_dict(p):
    d = {k: getattr(p, k) for k in _PRE_KEYS}
    d["mean"] = list(p.mean)
    d["std"] = list(p.std)
    d["color"] = "gray" if p.color == 1 else "rgb"
    return d


def _pre_from_dict(d):
    p = cd_preprocess()
    library().cd_preprocess_default(ctypes.byref(p))
    for k, v in (d or {}).items():
        if k in ("mean", "std"):
            v = list(v) * 3 if len(v) == 1 else list(v)
            setattr(p, k, (ctypes.c_float * 3)(*v))
        elif k == "color":
            p.color = {"rgb": 0, "gray": 1}[v]
        elif k in _PRE_KEYS:
            setattr(p, k, v)
        else:
            raise ValueError("unknown preprocessing key %r" % k)
    return p


def image_to_tensor(image, preprocess=None):
    """Runs candor's preprocessing (dict as Model.preprocess returns; None =
    defaults) on an (H, W, C) array with C in 1, 3, 4 on [0, 255]; returns
    (1, C', H', W') float32."""
    a = np.ascontiguousarray(image, dtype=np.float32)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3:
        raise ValueError("image must be (H, W) or (H, W, C), got shape %s" % (a.shape,))
    lib = library()
    img = ctypes.POINTER(cd_image)()
    _call(lib.cd_image_create, a.shape[1], a.shape[0], a.shape[2], ctypes.byref(img))
    try:
        ctypes.memmove(img.contents.pixels, a.ctypes.data, a.nbytes)
        p = _pre_from_dict(preprocess)
        out = ctypes.c_void_p()
        _call(lib.cd_image_to_tensor, img, ctypes.byref(p), ctypes.byref(out))
        return _take(out)
    finally:
        lib.cd_image_free(img)


# -------------------------------------------------------------- summaries

def summarize(probs, level=0.95):
    """Summary of S sampled probability vectors (an (S, K) array): a dict
    with mean, std, lower, upper (K arrays), top_class, predictive_entropy,
    expected_entropy, mutual_information, variation_ratio, agreement."""
    p = np.ascontiguousarray(probs, dtype=np.float32)
    if p.ndim != 2:
        raise ValueError("probs must be (samples, classes), got shape %s" % (p.shape,))
    s = cd_class_summary()
    _call(library().cd_summarize_classification,
          p.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), p.shape[0], p.shape[1], level,
          ctypes.byref(s))
    try:
        k = s.n_classes
        out = {name: np.ctypeslib.as_array(getattr(s, name), (k,)).copy()
               for name in ("mean", "std", "lower", "upper")}
        for name in ("top_class", "predictive_entropy", "expected_entropy",
                     "mutual_information", "variation_ratio", "agreement", "level"):
            out[name] = getattr(s, name)
        out["n_samples"] = s.n_samples
        return out
    finally:
        library().cd_class_summary_free(ctypes.byref(s))


def _softmax(z, axis=-1):
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def _summaries(samples, is_probs, labels, level):
    """(N, S, K) samples -> one summary dict per row (with a label)."""
    if samples.ndim != 3:
        raise ValueError("predict needs a (N, K) output; sampled shape is %s"
                         % (samples.shape,))
    probs = samples if is_probs else _softmax(samples.astype(np.float64))
    rows = []
    for n in range(probs.shape[0]):
        s = summarize(probs[n], level)
        s["probabilities"] = probs[n]
        s["label"] = labels[s["top_class"]] if s["top_class"] < len(labels) else None
        rows.append(s)
    return rows


def _mc_options(samples, seed, dropout, threads, use_graph_dropout, use_sidecar_sites):
    o = cd_mc_options()
    library().cd_mc_options_default(ctypes.byref(o))
    o.samples, o.seed, o.threads = int(samples), int(seed), int(threads)
    o.ignore_graph_dropout = not use_graph_dropout
    o.ignore_sidecar_sites = not use_sidecar_sites
    keep = []
    if dropout:
        sites = (cd_dropout_site * len(dropout))()
        for i, site in enumerate(dropout):
            name, p = site[0], site[1]
            channel = bool(site[2]) if len(site) > 2 else False
            keep.append(name.encode())
            sites[i].name, sites[i].p, sites[i].channel = keep[-1], p, channel
        o.n_sites, o.sites = len(dropout), sites
        keep.append(sites)
    return o, keep  # keep: objects o points into, alive until the C call copies them


# ------------------------------------------------------------------- model

class Model(_Owned):
    """An ONNX model (with its sidecar MODEL.candor.json when present).

    Immutable after loading; a Model may be used from several threads, each
    with its own Session (Model.run uses one session per thread)."""
    _free_name = "cd_model_free"

    def __init__(self, path):
        super().__init__()
        self.path = str(path)
        _call(library().cd_model_load, _s(self.path), None, ctypes.byref(self._ptr))
        self._sessions = threading.local()

    def __repr__(self):
        return "candor.Model(%r)" % self.path

    # --- metadata
    @property
    def inputs(self):
        lib = library()
        return [_str(lib.cd_model_input_name(self._ptr, i))
                for i in range(lib.cd_model_input_count(self._ptr))]

    @property
    def outputs(self):
        lib = library()
        return [_str(lib.cd_model_output_name(self._ptr, i))
                for i in range(lib.cd_model_output_count(self._ptr))]

    def _shape(self, fn, index):
        ndim = ctypes.c_int()
        dims = (ctypes.c_int64 * _lib.CD_MAX_DIMS)()
        _call(fn, self._ptr, index, ctypes.byref(ndim), dims)
        return None if ndim.value < 0 else tuple(
            None if d < 0 else d for d in dims[:ndim.value])

    def input_shape(self, index=0):
        """Declared shape, None for dynamic dimensions (None if rank unknown)."""
        return self._shape(library().cd_model_input_shape, index)

    def output_shape(self, index=0):
        return self._shape(library().cd_model_output_shape, index)

    @property
    def labels(self):
        lib = library()
        return [_str(lib.cd_model_label(self._ptr, k))
                for k in range(lib.cd_model_label_count(self._ptr))]

    @property
    def output_kind(self):
        """"logits", "probabilities", "regression", "segmentation" or
        "unspecified" (from the sidecar)."""
        return _str(library().cd_model_output_kind(self._ptr))

    @property
    def preprocess(self):
        p = cd_preprocess()
        _call_plain(library().cd_model_preprocess, self._ptr, ctypes.byref(p))
        return _pre_to_dict(p)

    @property
    def opset(self):
        return library().cd_model_opset(self._ptr)

    @property
    def node_count(self):
        return library().cd_model_node_count(self._ptr)

    @property
    def parameter_count(self):
        return library().cd_model_parameter_count(self._ptr)

    def load_input(self, path):
        """A model input from a file: .npy as stored (converted to float32),
        an image through the model's preprocessing."""
        path = str(path)
        if path.lower().endswith(".npy"):
            return load_npy(path).astype(np.float32)
        return image_to_tensor(load_image(path), self.preprocess)

    # --- running
    def session(self, threads=0):
        """A new Session (per-thread state) over this model."""
        return Session(self, threads)

    def run(self, *inputs, outputs=None, threads=0):
        """Runs the model on arrays given in graph-input order (or one dict
        name -> array) and returns a list of arrays, one per requested
        output (outputs: names of any graph tensors; None = graph outputs)."""
        s = getattr(self._sessions, "session", None)
        if s is None or s.threads != threads:
            s = self._sessions.session = Session(self, threads)
        return s.run(*inputs, outputs=outputs)

    def sample(self, x, samples=30, seed=0, dropout=None, threads=0, outputs=None,
               use_graph_dropout=True, use_sidecar_sites=True):
        """MC-dropout samples: for each requested output (indices; None =
        [0]) an array (N, T, ...) of the model's raw output under T random
        dropout masks. dropout: extra sites [(tensor_name, p[, channel])]."""
        with _McSession(self, samples, seed, dropout, threads, use_graph_dropout,
                        use_sidecar_sites) as mc:
            return mc.sample(x, outputs)

    def predict(self, x, samples=30, seed=0, level=0.95, dropout=None, threads=0,
                use_graph_dropout=True, use_sidecar_sites=True):
        """MC-dropout prediction of a classifier: one summary dict per row of
        x (see summarize) plus "probabilities" (T, K) and "label". Logits
        are softmaxed unless the sidecar says the output holds
        probabilities. samples=1 on a model without dropout is a plain run."""
        s = self.sample(x, samples, seed, dropout, threads, [0], use_graph_dropout,
                        use_sidecar_sites)[0]
        return _summaries(s, self.output_kind == "probabilities", self.labels, level)


def _call_plain(fn, *args):
    """For the few status functions without a cd_error argument."""
    status = fn(*args)
    if status != 0:
        raise CandorError(status, "%s failed" % fn.__name__)


class Session(_Owned):
    """Per-thread execution state of a Model (keeps the model alive)."""
    _free_name = "cd_session_free"

    def __init__(self, model, threads=0):
        super().__init__()
        self.model, self.threads = model, threads
        o = cd_session_options(threads=threads)
        _call(library().cd_session_create, model._ptr, ctypes.byref(o), ctypes.byref(self._ptr))

    def run(self, *inputs, outputs=None):
        names = None
        if len(inputs) == 1 and isinstance(inputs[0], dict):
            names = list(inputs[0].keys())
            inputs = list(inputs[0].values())
        tensors = [_Tensor.from_array(a) for a in inputs]
        try:
            return self._run(tensors, names, outputs)
        finally:
            for t in tensors:
                t.free()

    def _run(self, tensors, names, outputs):
        n_out = len(outputs) if outputs is not None else len(self.model.outputs)
        in_names = (ctypes.c_char_p * len(names))(*map(_s, names)) if names else None
        out_names = (ctypes.c_char_p * n_out)(*map(_s, outputs)) if outputs else None
        slots = (ctypes.c_void_p * max(n_out, 1))()
        _call(library().cd_session_run, self._ptr, len(tensors), in_names,
              _ptr_array(tensors), n_out, out_names, slots)
        return [_take(ctypes.c_void_p(slots[i])) for i in range(n_out)]


def _sample_call(fn, handle, x, outputs):
    inputs = list(x) if isinstance(x, (list, tuple)) else [x]
    tensors = [_Tensor.from_array(a, np.float32) for a in inputs]
    idx = list(outputs) if outputs is not None else [0]
    slots = (ctypes.c_void_p * len(idx))()
    try:
        _call(fn, handle, len(tensors), _ptr_array(tensors), len(idx),
              (ctypes.c_int * len(idx))(*idx), slots)
    finally:
        for t in tensors:
            t.free()
    return [_take(ctypes.c_void_p(slots[i])) for i in range(len(idx))]


class _McSession(_Owned):
    _free_name = "cd_mc_session_free"

    def __init__(self, model, samples, seed, dropout, threads, graph, sidecar):
        super().__init__()
        self.model = model
        o, keep = _mc_options(samples, seed, dropout, threads, graph, sidecar)
        _call(library().cd_mc_session_create, model._ptr, ctypes.byref(o),
              ctypes.byref(self._ptr))
        del keep

    def sample(self, x, outputs):
        return _sample_call(library().cd_mc_sample, self._ptr, x, outputs)


class Ensemble(_Owned):
    """A deep ensemble of Models with identical signatures; each member may
    also use MC dropout (samples per member)."""
    _free_name = "cd_ensemble_free"

    def __init__(self, models, samples=1, seed=0, dropout=None, threads=0,
                 use_graph_dropout=True, use_sidecar_sites=True):
        super().__init__()
        self.models = [m if isinstance(m, Model) else Model(m) for m in models]
        o, keep = _mc_options(samples, seed, dropout, threads, use_graph_dropout,
                              use_sidecar_sites)
        arr = (ctypes.c_void_p * len(self.models))(*[m._ptr.value for m in self.models])
        _call(library().cd_ensemble_create, len(self.models), arr, ctypes.byref(o),
              ctypes.byref(self._ptr))
        del keep

    def __len__(self):
        return len(self.models)

    def sample(self, x, outputs=None):
        """(N, K*T, ...) per requested output, member-major."""
        return _sample_call(library().cd_ensemble_sample, self._ptr, x, outputs)

    def predict(self, x, level=0.95):
        """One summary dict per row (see Model.predict)."""
        s = self.sample(x, [0])[0]
        first = self.models[0]
        return _summaries(s, first.output_kind == "probabilities", first.labels, level)


# ------------------------------------------------------------- calibration

_METRIC_NAMES = None


def _metric_names():
    global _METRIC_NAMES
    if _METRIC_NAMES is None:
        lib = library()
        _METRIC_NAMES = [lib.cd_metric_name(i).decode() for i in range(_lib.CD_METRIC_COUNT)]
    return _METRIC_NAMES


def metrics(probs, labels, bins=15, bootstrap=0, ci_level=0.95, seed=0):
    """Calibration metrics of (n, k) probabilities against int labels: a dict
    name -> value ("accuracy", "nll", "brier", "ece", ...); with bootstrap
    B > 0 also name + "_ci" -> (low, high)."""
    p = _f64(probs, 2, "probs")
    y = _labels(labels, p.shape[0])
    o = cd_metric_options(bins=bins, bootstrap=bootstrap, ci_level=ci_level, seed=seed)
    m = cd_metrics()
    _call(library().cd_metrics_compute, _dp(p), _ip(y), p.shape[0], p.shape[1],
          ctypes.byref(o), ctypes.byref(m))
    out = {}
    for i, name in enumerate(_metric_names()):
        out[name] = m.value[i]
        if bootstrap:
            out[name + "_ci"] = (m.ci_low[i], m.ci_high[i])
    return out


def reliability_bins(probs, labels, bins=15):
    """Equal-width reliability bins: a list of dicts lo, hi, count,
    accuracy, confidence (NaN for empty bins)."""
    p = _f64(probs, 2, "probs")
    y = _labels(labels, p.shape[0])
    out = (cd_reliability_bin * bins)()
    _call(library().cd_reliability_bins, _dp(p), _ip(y), p.shape[0], p.shape[1], bins, out)
    return [{f: getattr(b, f) for f, _ in cd_reliability_bin._fields_} for b in out]


class Calibrator(_Owned):
    """A fitted calibration map (temperature, vector, matrix, histogram,
    isotonic or platt)."""
    _free_name = "cd_calibrator_free"

    def __init__(self):
        super().__init__()

    @classmethod
    def fit(cls, scores, labels, method="temperature", inputs_are_probs=False, bins=0,
            l2=-1.0):
        lib = library()
        code = lib.cd_calib_method_parse(_s(method))
        if code == 0:
            raise ValueError("unknown calibration method %r" % method)
        z = _f64(scores, 2, "scores")
        y = _labels(labels, z.shape[0])
        o = cd_fit_options(method=code, bins=bins, l2=l2, inputs_are_probs=int(inputs_are_probs))
        c = cls()
        _call(lib.cd_calibrator_fit, _dp(z), _ip(y), z.shape[0], z.shape[1], ctypes.byref(o),
              ctypes.byref(c._ptr))
        return c

    @classmethod
    def load(cls, path):
        c = cls()
        _call(library().cd_calibrator_load, _s(str(path)), ctypes.byref(c._ptr))
        return c

    def save(self, path):
        _call(library().cd_calibrator_save, self._ptr, _s(str(path)))

    @property
    def method(self):
        lib = library()
        return lib.cd_calib_method_name(lib.cd_calibrator_method(self._ptr)).decode()

    @property
    def classes(self):
        return library().cd_calibrator_classes(self._ptr)

    @property
    def temperature(self):
        """T of a temperature calibrator (NaN for other methods)."""
        return library().cd_calibrator_temperature(self._ptr)

    @property
    def warning(self):
        return _str(library().cd_calibrator_warning(self._ptr))

    def apply(self, scores):
        """Calibrated (n, k) probabilities from scores of the fitted kind."""
        z = _f64(scores, 2, "scores")
        out = np.empty_like(z)
        _call(library().cd_calibrator_apply, self._ptr, _dp(z), z.shape[0], _dp(out))
        return out


def fit_temperature(logits, labels):
    """Temperature scaling fitted on (n, k) logits; see Calibrator."""
    return Calibrator.fit(logits, labels, "temperature")


_SCORES = {"lac": 0, "aps": 1, "raps": 2}


class Conformal:
    """Split-conformal prediction sets (LAC, APS or RAPS) fitted on
    calibration probabilities."""

    def __init__(self, probs, labels, alpha=0.1, score="lac", deterministic=False,
                 lam=0.0, k_reg=0, mondrian=False, seed=0):
        p = _f64(probs, 2, "probs")
        y = _labels(labels, p.shape[0])
        o = cd_conformal_options(score=_SCORES[score], alpha=alpha,
                                 deterministic=int(deterministic), k_reg=k_reg,
                                 mondrian=int(mondrian), seed=seed)
        setattr(o, "lambda", lam)
        self._c = cd_conformal_classifier()
        _call(library().cd_conformal_fit, _dp(p), _ip(y), p.shape[0], p.shape[1],
              ctypes.byref(o), ctypes.byref(self._c))

    @property
    def qhat(self):
        return self._c.qhat

    def predict(self, probs, seed=0):
        """Boolean (n, k) membership of each class in each row's set."""
        p = _f64(probs, 2, "probs")
        in_set = np.zeros(p.shape, np.uint8)
        _call(library().cd_conformal_predict, ctypes.byref(self._c), _dp(p), p.shape[0], seed,
              in_set.ctypes.data_as(ctypes.POINTER(ctypes.c_ubyte)), None)
        return in_set.astype(bool)

    def __del__(self):
        try:
            library().cd_conformal_clear(ctypes.byref(self._c))
        except Exception:
            pass


# ----------------------------------------------------------------- explain

_OBJECTIVES = {"logit": 0, "prob": 1, "log_prob": 2, "entropy": 3, "sum": 4}
_SG_FORMS = {"mean": 0, "squared": 1, "vargrad": 2}
_IG_RULES = {"riemann_middle": 0, "gauss_legendre": 1}
_BASELINES = {"black": 0, "blur": 1}


def _objective(kind, target, output):
    o = cd_objective()
    library().cd_objective_default(ctypes.byref(o))
    o.kind = _OBJECTIVES[kind]
    o.target = -1 if target is None else int(target)
    o.output = _s(output)
    return o


class Explainer(_Owned):
    """Gradients and saliency maps for a model with one float32 input."""
    _free_name = "cd_explainer_free"

    def __init__(self, model, threads=0, max_batch=8, float64=False):
        """float64=True evaluates every pass in float64 (exact gradients at
        ReLU/Clip kinks; slower): docs/explain.md, "Float64 mode"."""
        super().__init__()
        self.model = model
        o = cd_explain_options(threads=threads, max_batch=max_batch, float64=float64)
        _call(library().cd_explainer_create, model._ptr, ctypes.byref(o),
              ctypes.byref(self._ptr))

    def gradient(self, x, objective="logit", target=None, output=None, wrt=None):
        """Gradient of the objective (summed over rows) with respect to the
        input (wrt None) or to the named tensors (a list): returns
        (gradient array, or list of them for a list, per-row scores)."""
        names = wrt if isinstance(wrt, (list, tuple)) else [wrt]
        obj = _objective(objective, target, output)
        xt = _Tensor.from_array(x, np.float32)
        grads = (ctypes.c_void_p * len(names))()
        scores = np.zeros(np.shape(x)[0])
        try:
            _call(library().cd_explain_gradient, self._ptr, xt.ptr, ctypes.byref(obj),
                  len(names), (ctypes.c_char_p * len(names))(*map(_s, names)), grads, None,
                  _dp(scores))
        finally:
            xt.free()
        out = [_take(ctypes.c_void_p(grads[i])) for i in range(len(names))]
        return (out if isinstance(wrt, (list, tuple)) else out[0]), scores

    def explain(self, x, method="gradcam", target=None, objective=None, output=None,
                baseline=None, **params):
        """Explains the single example x (1, C, H, W) with method "gradient",
        "gradxinput", "smoothgrad", "ig", "gradcam", "gradcam++",
        "occlusion" or "rise". Keyword parameters as cd_explain_params
        (samples, noise_level, steps, seed, layer, window, stride,
        rise_masks, ...; smoothgrad_form "mean"/"squared"/"vargrad",
        ig_rule "riemann_middle"/"gauss_legendre"); baseline: "black",
        "blur" or an array. Returns a dict: map, target, score, layer,
        passes, baseline_score, completeness_delta."""
        lib = library()
        code = lib.cd_explain_method_parse(_s(method))
        if code < 0:
            raise ValueError("unknown explanation method %r" % method)
        p = cd_explain_params()
        lib.cd_explain_params_default(ctypes.byref(p), code)
        if objective is not None:
            p.objective.kind = _OBJECTIVES[objective]
        p.objective.target = -1 if target is None else int(target)
        p.objective.output = _s(output)
        keep = [p.objective.output]
        for k, v in params.items():
            if k == "smoothgrad_form":
                v = _SG_FORMS[v]
            elif k == "ig_rule":
                v = _IG_RULES[v]
            elif k == "layer":
                v = _s(v)
                keep.append(v)
            elif k not in dict(cd_explain_params._fields_) or k in ("method", "objective",
                                                                    "baseline_tensor"):
                raise ValueError("unknown explanation parameter %r" % k)
            setattr(p, k, v)
        base = None
        if isinstance(baseline, str):
            p.baseline = _BASELINES[baseline]
        elif baseline is not None:
            base = _Tensor.from_array(baseline, np.float32)
            p.baseline, p.baseline_tensor = 2, base.ptr
        xt = _Tensor.from_array(x, np.float32)
        ex = cd_explanation()
        try:
            _call(lib.cd_explain, self._ptr, xt.ptr, ctypes.byref(p), ctypes.byref(ex))
            out = {"map": _copy(ctypes.c_void_p(ex.map)), "target": ex.target,
                   "score": ex.score, "layer": _str(ex.layer), "passes": ex.passes,
                   "baseline_score": ex.baseline_score,
                   "completeness_delta": ex.completeness_delta}
            lib.cd_explanation_free(ctypes.byref(ex))
            return out
        finally:
            xt.free()
            if base is not None:
                base.free()

    def saliency_2d(self, explanation_map, absolute=True):
        """(H, W) saliency from a (1, C, H, W) map (sum of |a_c| if absolute)."""
        t = _Tensor.from_array(explanation_map, np.float32)
        out = ctypes.c_void_p()
        try:
            _call(library().cd_explain_saliency_2d, t.ptr, absolute, ctypes.byref(out))
        finally:
            t.free()
        return _take(out)
