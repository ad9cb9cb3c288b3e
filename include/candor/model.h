/* candor — loading ONNX models and running them.
 *
 * A cd_model is immutable once loaded and may be shared by any number of
 * threads. A cd_session holds the per-thread state (execution plan, buffers,
 * scratch); use one session per thread. */
#ifndef CANDOR_MODEL_H
#define CANDOR_MODEL_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cd_model cd_model;
typedef struct cd_session cd_session;

/* Resource caps applied while loading (0 means the built-in default). */
typedef struct cd_load_options {
    uint64_t max_tensor_elements; /* default 2^31 */
    uint64_t max_total_bytes;     /* default 8 GiB of weights */
    uint32_t max_nodes;           /* default 1,000,000 */
    uint32_t max_graph_depth;     /* longest node chain, default 100,000 */
    /* Activations one run of the model may hold (each execution plan: the
     * fast plan's arena, a gradient plan's every activation, twice that in
     * the explainers' float64 mode). Plans over it are refused with
     * CD_ERR_LIMIT before anything is allocated. Default 256 GiB. */
    uint64_t max_activation_bytes;
} cd_load_options;

/* Loads an ONNX model from a file. External-data tensors are resolved
 * relative to the file's folder. A sidecar MODEL.candor.json next to it is
 * read too when present. *out is owned by the caller (cd_model_free). */
CD_API cd_status cd_model_load(const char *path, const cd_load_options *opts,
                               cd_model **out, cd_error *err);
/* Loads an ONNX model from memory. base_dir (may be NULL) resolves external
 * data. The bytes are not referenced after the call returns. */
CD_API cd_status cd_model_load_memory(const void *bytes, size_t size, const char *base_dir,
                                      const cd_load_options *opts, cd_model **out,
                                      cd_error *err);
CD_API void cd_model_free(cd_model *model);

CD_API int cd_model_opset(const cd_model *model);
CD_API const char *cd_model_producer(const cd_model *model);
CD_API int cd_model_node_count(const cd_model *model);
/* Graph inputs (initializers excluded) and outputs. */
CD_API int cd_model_input_count(const cd_model *model);
CD_API int cd_model_output_count(const cd_model *model);
CD_API const char *cd_model_input_name(const cd_model *model, int index);
CD_API const char *cd_model_output_name(const cd_model *model, int index);
/* Declared shape: dims[i] = -1 for a dynamic (symbolic or unknown) dimension.
 * *ndim = -1 when the rank itself is unknown. */
CD_API cd_status cd_model_input_shape(const cd_model *model, int index, int *ndim,
                                      int64_t dims[CD_MAX_DIMS], cd_error *err);
CD_API cd_status cd_model_output_shape(const cd_model *model, int index, int *ndim,
                                       int64_t dims[CD_MAX_DIMS], cd_error *err);
CD_API cd_dtype cd_model_input_dtype(const cd_model *model, int index);
/* Total number of weight elements (float initializers). */
CD_API uint64_t cd_model_parameter_count(const cd_model *model);

/* Node i (topological order): ONNX op type and name. NULL when out of range. */
CD_API const char *cd_model_node_op_type(const cd_model *model, int index);
CD_API const char *cd_model_node_name(const cd_model *model, int index);

/* Cost of one run for concrete input shapes (one shape per graph input, in
 * order; dims[i] points to ndims[i] values). */
typedef struct cd_model_cost {
    uint64_t macs;             /* multiply-accumulates of Conv/ConvTranspose/Gemm/MatMul */
    uint64_t activation_bytes; /* bytes of runtime activations the plan holds */
    uint64_t constant_bytes;   /* bytes of weights and folded constants */
    int runtime_steps;         /* nodes left after constant folding */
} cd_model_cost;
CD_API cd_status cd_model_estimate_cost(const cd_model *model, int n_inputs, const int *ndims,
                                        const int64_t *const *dims, cd_model_cost *out,
                                        cd_error *err);

typedef struct cd_session_options {
    int threads; /* 0 = number of cores */
} cd_session_options;

/* Creates a session over model (which must outlive it). opts may be NULL. */
CD_API cd_status cd_session_create(const cd_model *model, const cd_session_options *opts,
                                   cd_session **out, cd_error *err);
CD_API void cd_session_free(cd_session *session);

/* Runs the model.
 * inputs: n_inputs tensors; input_names may be NULL to bind them to the graph
 *   inputs in order. Tensors are read, never kept.
 * outputs: n_outputs slots that receive new tensors owned by the caller;
 *   output_names may be NULL to take the graph outputs in order, or name any
 *   tensor of the graph (intermediate values included).
 * On failure no output is returned (all slots set to NULL). */
CD_API cd_status cd_session_run(cd_session *session, int n_inputs,
                                const char *const *input_names,
                                const cd_tensor *const *inputs, int n_outputs,
                                const char *const *output_names, cd_tensor **outputs,
                                cd_error *err);

#ifdef __cplusplus
}
#endif
#endif
