"""ctypes declarations for libcandor: the library lookup, the C structs the
binding passes by pointer, and the prototypes of the functions it calls.

The struct layouts mirror include/candor/*.h field by field (same names, same
order); the binding's tests compile a C program that prints sizeof/offsetof
for each of them and compare with ctypes, so a header change that is not
mirrored here fails loudly instead of corrupting memory.
"""
import ctypes
import ctypes.util
import glob
import os

from ctypes import (POINTER, Structure, c_bool, c_char, c_char_p, c_double, c_float, c_int,
                    c_int64, c_size_t, c_uint32, c_uint64, c_ubyte, c_void_p)

CD_MAX_DIMS = 8
CD_ERROR_MESSAGE_SIZE = 512
CD_METRIC_COUNT = 10

# ------------------------------------------------------------------ structs


class cd_error(Structure):
    _fields_ = [("code", c_int), ("message", c_char * CD_ERROR_MESSAGE_SIZE)]


class cd_load_options(Structure):
    _fields_ = [("max_tensor_elements", c_uint64), ("max_total_bytes", c_uint64),
                ("max_nodes", c_uint32), ("max_graph_depth", c_uint32),
                ("max_activation_bytes", c_uint64)]


class cd_session_options(Structure):
    _fields_ = [("threads", c_int)]


class cd_dropout_site(Structure):
    _fields_ = [("name", c_char_p), ("p", c_float), ("channel", c_bool)]


class cd_mc_options(Structure):
    _fields_ = [("samples", c_int), ("seed", c_uint64), ("n_sites", c_int),
                ("sites", POINTER(cd_dropout_site)), ("ignore_sidecar_sites", c_bool),
                ("ignore_graph_dropout", c_bool), ("threads", c_int), ("force_loop", c_bool)]


class cd_class_summary(Structure):
    _fields_ = [("n_samples", c_int), ("n_classes", c_int), ("level", c_double),
                ("mean", POINTER(c_double)), ("std", POINTER(c_double)),
                ("lower", POINTER(c_double)), ("upper", POINTER(c_double)),
                ("top_class", c_int), ("predictive_entropy", c_double),
                ("expected_entropy", c_double), ("mutual_information", c_double),
                ("variation_ratio", c_double), ("agreement", c_double)]


class cd_preprocess(Structure):
    _fields_ = [("resize_short", c_int), ("resize_h", c_int), ("resize_w", c_int),
                ("crop_h", c_int), ("crop_w", c_int), ("scale", c_float),
                ("mean", c_float * 3), ("std", c_float * 3), ("color", c_int)]


class cd_image(Structure):
    _fields_ = [("width", c_int), ("height", c_int), ("channels", c_int),
                ("pixels", POINTER(c_float))]


class cd_metrics(Structure):
    _fields_ = [("value", c_double * CD_METRIC_COUNT), ("ci_low", c_double * CD_METRIC_COUNT),
                ("ci_high", c_double * CD_METRIC_COUNT)]


class cd_metric_options(Structure):
    _fields_ = [("bins", c_int), ("bootstrap", c_int), ("ci_level", c_double),
                ("seed", c_uint64)]


class cd_reliability_bin(Structure):
    _fields_ = [("lo", c_double), ("hi", c_double), ("count", c_size_t),
                ("accuracy", c_double), ("confidence", c_double)]


class cd_fit_options(Structure):
    _fields_ = [("method", c_int), ("bins", c_int), ("l2", c_double),
                ("inputs_are_probs", c_int)]


class cd_conformal_options(Structure):
    _fields_ = [("score", c_int), ("alpha", c_double), ("deterministic", c_int),
                ("lambda", c_double), ("k_reg", c_int), ("mondrian", c_int),
                ("seed", c_uint64)]


class cd_conformal_classifier(Structure):
    _fields_ = [("opts", cd_conformal_options), ("k", c_int), ("n_cal", c_size_t),
                ("qhat", c_double), ("class_qhat", POINTER(c_double))]


class cd_objective(Structure):
    _fields_ = [("kind", c_int), ("target", c_int), ("output", c_char_p),
                ("region_ndim", c_int), ("region_lo", c_int64 * (CD_MAX_DIMS - 2)),
                ("region_hi", c_int64 * (CD_MAX_DIMS - 2))]


class cd_explain_options(Structure):
    _fields_ = [("threads", c_int), ("max_batch", c_int), ("force_loop", c_bool),
                ("float64", c_bool)]


class cd_explain_params(Structure):
    _fields_ = [("method", c_int), ("objective", cd_objective), ("seed", c_uint64),
                ("samples", c_int), ("noise_level", c_float), ("smoothgrad_form", c_int),
                ("steps", c_int), ("ig_rule", c_int), ("baseline", c_int),
                ("baseline_tensor", c_void_p), ("blur_sigma", c_float), ("layer", c_char_p),
                ("window", c_int), ("stride", c_int), ("occlusion_value", c_float),
                ("rise_masks", c_int), ("rise_grid", c_int), ("rise_p", c_float)]


class cd_explanation(Structure):
    _fields_ = [("map", c_void_p), ("target", c_int), ("score", c_double),
                ("baseline_score", c_double), ("completeness_delta", c_double),
                ("layer", c_char_p), ("passes", c_int)]


# Every struct above, by C name (used by the layout test).
STRUCTS = {cls.__name__: cls for cls in (
    cd_error, cd_load_options, cd_session_options, cd_dropout_site, cd_mc_options,
    cd_class_summary, cd_preprocess, cd_image, cd_metrics, cd_metric_options,
    cd_reliability_bin, cd_fit_options, cd_conformal_options, cd_conformal_classifier,
    cd_objective, cd_explain_options, cd_explain_params, cd_explanation)}

# --------------------------------------------------------------- prototypes

_P = c_void_p          # opaque handles (cd_model*, cd_tensor*, ...)
_PP = POINTER(c_void_p)
_E = POINTER(cd_error)
_D = POINTER(c_double)
_I = POINTER(c_int)

# name: (restype, argtypes). cd_status functions return c_int.
PROTOTYPES = {
    "cd_status_name": (c_char_p, [c_int]),
    # tensors
    "cd_tensor_from_data": (c_int, [c_int, c_int, POINTER(c_int64), c_void_p, _PP, _E]),
    "cd_tensor_free": (None, [_P]),
    "cd_tensor_dtype": (c_int, [_P]),
    "cd_tensor_ndim": (c_int, [_P]),
    "cd_tensor_dims": (POINTER(c_int64), [_P]),
    "cd_tensor_nbytes": (c_size_t, [_P]),
    "cd_tensor_cdata": (c_void_p, [_P]),
    # models and sessions
    "cd_model_load": (c_int, [c_char_p, POINTER(cd_load_options), _PP, _E]),
    "cd_model_free": (None, [_P]),
    "cd_model_opset": (c_int, [_P]),
    "cd_model_producer": (c_char_p, [_P]),
    "cd_model_node_count": (c_int, [_P]),
    "cd_model_input_count": (c_int, [_P]),
    "cd_model_output_count": (c_int, [_P]),
    "cd_model_input_name": (c_char_p, [_P, c_int]),
    "cd_model_output_name": (c_char_p, [_P, c_int]),
    "cd_model_input_shape": (c_int, [_P, c_int, _I, POINTER(c_int64), _E]),
    "cd_model_output_shape": (c_int, [_P, c_int, _I, POINTER(c_int64), _E]),
    "cd_model_input_dtype": (c_int, [_P, c_int]),
    "cd_model_parameter_count": (c_uint64, [_P]),
    "cd_session_create": (c_int, [_P, POINTER(cd_session_options), _PP, _E]),
    "cd_session_free": (None, [_P]),
    "cd_session_run": (c_int, [_P, c_int, POINTER(c_char_p), _PP, c_int, POINTER(c_char_p),
                               _PP, _E]),
    # images, .npy, sidecar
    "cd_npy_load": (c_int, [c_char_p, _PP, _E]),
    "cd_npy_save": (c_int, [c_char_p, _P, _E]),
    "cd_image_load": (c_int, [c_char_p, POINTER(POINTER(cd_image)), _E]),
    "cd_image_free": (None, [POINTER(cd_image)]),
    "cd_image_create": (c_int, [c_int, c_int, c_int, POINTER(POINTER(cd_image)), _E]),
    "cd_preprocess_default": (None, [POINTER(cd_preprocess)]),
    "cd_image_to_tensor": (c_int, [POINTER(cd_image), POINTER(cd_preprocess), _PP, _E]),
    "cd_model_label_count": (c_int, [_P]),
    "cd_model_label": (c_char_p, [_P, c_int]),
    "cd_model_preprocess": (c_int, [_P, POINTER(cd_preprocess)]),
    "cd_model_output_kind": (c_char_p, [_P]),
    # uncertainty
    "cd_mc_options_default": (None, [POINTER(cd_mc_options)]),
    "cd_mc_session_create": (c_int, [_P, POINTER(cd_mc_options), _PP, _E]),
    "cd_mc_session_free": (None, [_P]),
    "cd_mc_site_count": (c_int, [_P]),
    "cd_mc_site_name": (c_char_p, [_P, c_int]),
    "cd_mc_sample": (c_int, [_P, c_int, _PP, c_int, _I, _PP, _E]),
    "cd_ensemble_create": (c_int, [c_int, _PP, POINTER(cd_mc_options), _PP, _E]),
    "cd_ensemble_free": (None, [_P]),
    "cd_ensemble_sample": (c_int, [_P, c_int, _PP, c_int, _I, _PP, _E]),
    "cd_summarize_classification": (c_int, [POINTER(c_float), c_int, c_int, c_double,
                                            POINTER(cd_class_summary), _E]),
    "cd_class_summary_free": (None, [POINTER(cd_class_summary)]),
    # calibration
    "cd_metric_name": (c_char_p, [c_int]),
    "cd_metrics_compute": (c_int, [_D, _I, c_size_t, c_int, POINTER(cd_metric_options),
                                   POINTER(cd_metrics), _E]),
    "cd_reliability_bins": (c_int, [_D, _I, c_size_t, c_int, c_int,
                                    POINTER(cd_reliability_bin), _E]),
    "cd_calib_method_parse": (c_int, [c_char_p]),
    "cd_calib_method_name": (c_char_p, [c_int]),
    "cd_calibrator_fit": (c_int, [_D, _I, c_size_t, c_int, POINTER(cd_fit_options), _PP, _E]),
    "cd_calibrator_free": (None, [_P]),
    "cd_calibrator_method": (c_int, [_P]),
    "cd_calibrator_classes": (c_int, [_P]),
    "cd_calibrator_inputs_are_probs": (c_int, [_P]),
    "cd_calibrator_temperature": (c_double, [_P]),
    "cd_calibrator_warning": (c_char_p, [_P]),
    "cd_calibrator_apply": (c_int, [_P, _D, c_size_t, _D, _E]),
    "cd_calibrator_save": (c_int, [_P, c_char_p, _E]),
    "cd_calibrator_load": (c_int, [c_char_p, _PP, _E]),
    "cd_conformal_fit": (c_int, [_D, _I, c_size_t, c_int, POINTER(cd_conformal_options),
                                 POINTER(cd_conformal_classifier), _E]),
    "cd_conformal_clear": (None, [POINTER(cd_conformal_classifier)]),
    "cd_conformal_predict": (c_int, [POINTER(cd_conformal_classifier), _D, c_size_t, c_uint64,
                                     POINTER(c_ubyte), _I, _E]),
    # explain
    "cd_explainer_create": (c_int, [_P, POINTER(cd_explain_options), _PP, _E]),
    "cd_explainer_free": (None, [_P]),
    "cd_objective_default": (None, [POINTER(cd_objective)]),
    "cd_explain_gradient": (c_int, [_P, _P, POINTER(cd_objective), c_int, POINTER(c_char_p),
                                    _PP, _PP, _D, _E]),
    "cd_explain_params_default": (None, [POINTER(cd_explain_params), c_int]),
    "cd_explain_method_parse": (c_int, [c_char_p]),
    "cd_explain": (c_int, [_P, _P, POINTER(cd_explain_params), POINTER(cd_explanation), _E]),
    "cd_explanation_free": (None, [POINTER(cd_explanation)]),
    "cd_explain_saliency_2d": (c_int, [_P, c_bool, _PP, _E]),
}


def _candidates():
    """Where libcandor.so may be, most explicit first."""
    env = os.environ.get("CANDOR_LIBRARY")
    if env:
        return [env]  # an explicit choice is never second-guessed
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.normpath(os.path.join(here, "..", "..", ".."))
    out = []
    if os.environ.get("CANDOR_BINARY_DIR"):
        out.append(os.path.join(os.environ["CANDOR_BINARY_DIR"], "libcandor.so"))
    out.append(os.path.join(root, "build", "libcandor.so"))
    # Any other build tree of the checkout, newest first.
    others = sorted(glob.glob(os.path.join(root, "build*", "libcandor.so")),
                    key=os.path.getmtime, reverse=True)
    out += [p for p in others if p not in out]
    found = ctypes.util.find_library("candor")
    if found:
        out.append(found)
    return out


def load_library():
    """Loads libcandor and declares its prototypes. Raises OSError naming
    every place tried when none works."""
    tried = []
    for path in _candidates():
        if os.sep in path and not os.path.exists(path):
            tried.append(path + " (missing)")
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            tried.append("%s (%s)" % (path, e))
            continue
        for name, (res, args) in PROTOTYPES.items():
            fn = getattr(lib, name)
            fn.restype = res
            fn.argtypes = args
        lib.path = path
        return lib
    raise OSError("libcandor.so not found; set CANDOR_LIBRARY to its path. Tried: " +
                  "; ".join(tried))
