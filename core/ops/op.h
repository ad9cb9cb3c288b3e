/* Operator interface. Each operator family lives in one file under core/ops/
 * with its attribute parsing, shape rule, forward kernel and backward
 * (vector-Jacobian product) side by side. Operators are an enum; the table in
 * core/ops/registry.c maps each id to its definition (kept in sync by a
 * static assertion and a unit test). */
#ifndef CANDOR_OP_H
#define CANDOR_OP_H

#include "../graph.h"

/* X(ID, "OnnxName") — the default-domain operators candor implements. */
#define CD_OP_LIST(X)                                                                        \
    X(CONV, "Conv")                                                                          \
    X(CONV_TRANSPOSE, "ConvTranspose")                                                       \
    X(MAX_POOL, "MaxPool")                                                                   \
    X(AVERAGE_POOL, "AveragePool")                                                           \
    X(GLOBAL_AVERAGE_POOL, "GlobalAveragePool")                                              \
    X(GLOBAL_MAX_POOL, "GlobalMaxPool")                                                      \
    X(GEMM, "Gemm")                                                                          \
    X(MATMUL, "MatMul")                                                                      \
    X(ADD, "Add")                                                                            \
    X(SUB, "Sub")                                                                            \
    X(MUL, "Mul")                                                                            \
    X(DIV, "Div")                                                                            \
    X(SUM, "Sum")                                                                            \
    X(SQRT, "Sqrt")                                                                          \
    X(EXP, "Exp")                                                                            \
    X(RELU, "Relu")                                                                          \
    X(LEAKY_RELU, "LeakyRelu")                                                               \
    X(PRELU, "PRelu")                                                                        \
    X(ELU, "Elu")                                                                            \
    X(SIGMOID, "Sigmoid")                                                                    \
    X(TANH, "Tanh")                                                                          \
    X(CLIP, "Clip")                                                                          \
    X(HARD_SIGMOID, "HardSigmoid")                                                           \
    X(HARD_SWISH, "HardSwish")                                                               \
    X(SOFTMAX, "Softmax")                                                                    \
    X(LOG_SOFTMAX, "LogSoftmax")                                                             \
    X(BATCH_NORMALIZATION, "BatchNormalization")                                             \
    X(DROPOUT, "Dropout")                                                                    \
    X(CONCAT, "Concat")                                                                      \
    X(FLATTEN, "Flatten")                                                                    \
    X(RESHAPE, "Reshape")                                                                    \
    X(TRANSPOSE, "Transpose")                                                                \
    X(SQUEEZE, "Squeeze")                                                                    \
    X(UNSQUEEZE, "Unsqueeze")                                                                \
    X(RESIZE, "Resize")                                                                      \
    X(PAD, "Pad")                                                                            \
    X(IDENTITY, "Identity")                                                                  \
    X(CONSTANT, "Constant")                                                                  \
    X(SHAPE, "Shape")                                                                        \
    X(GATHER, "Gather")                                                                      \
    X(REDUCE_MEAN, "ReduceMean")                                                             \
    X(CAST, "Cast")

typedef enum cd_op_id {
#define CD_OP_ENUM(id, name) CD_OP_##id,
    CD_OP_LIST(CD_OP_ENUM)
#undef CD_OP_ENUM
    CD_OP_COUNT
} cd_op_id;

/* Execution context handed to kernels. One per session (per thread). */
typedef struct cd_ctx {
    cd_error *err;       /* where kernels report failures */
    int threads;         /* thread budget for this call (>= 1) */
    void *scratch;       /* grow-only scratch owned by the session */
    size_t scratch_size;
    /* Stochastic execution (issue 4): NULL = deterministic inference. The
     * dropout kernel asks this hook for its mask/behaviour. */
    const struct cd_stochastic *stochastic;
    /* Worker pool for this session's threads (NULL = serial). Kernels use it
     * through cd_sgemm and cd_pool_run (core/parallel.h). */
    struct cd_pool *pool;
} cd_ctx;

/* Returns scratch of at least bytes (grows once, then reused), or NULL after
 * reporting CD_ERR_OUT_OF_MEMORY in ctx->err. Contents are undefined. */
void *cd_ctx_scratch(cd_ctx *ctx, size_t bytes);

/* Shape rule. in[i] has dtype and dims set; in[i]->data is non-NULL only when
 * the input is a constant known at plan time (initializers, folded values).
 * in[i] is NULL for an omitted optional input. The rule sets dtype/ndim/dims
 * of each out[j] (out[j] NULL for an omitted optional output). A rule that
 * needs an input's values (Reshape's shape, Resize's sizes) and finds data ==
 * NULL fails with CD_ERR_UNSUPPORTED. */
typedef cd_status (*cd_op_infer_fn)(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                                    cd_error *err);
/* Forward kernel: out[j]->data is allocated to the shape set by infer. */
typedef cd_status (*cd_op_forward_fn)(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                                      cd_ctx *ctx);
/* Backward (vector-Jacobian product). gout[j] is the gradient of the scalar
 * objective w.r.t. out[j] (NULL = zero). gin[i] is NULL when the gradient of
 * input i is not wanted; otherwise it has in[i]'s shape and the kernel ADDS
 * its contribution (gin is zeroed by the caller before the first use). */
typedef cd_status (*cd_op_backward_fn)(const cd_node *n, cd_tensor *const *in,
                                       cd_tensor *const *out, cd_tensor *const *gout,
                                       cd_tensor **gin, cd_ctx *ctx);
/* Optional: parse/validate attributes once at load into n->params. */
typedef cd_status (*cd_op_parse_fn)(cd_node *n, cd_error *err);

typedef struct cd_op_def {
    const char *name;        /* ONNX op_type */
    int min_opset;           /* lowest opset version handled */
    cd_op_parse_fn parse;    /* may be NULL */
    cd_op_infer_fn infer;
    cd_op_forward_fn forward;
    cd_op_backward_fn backward; /* NULL only for ops without a gradient (Shape) */
    /* Float64 evaluation (core/plan64.h, the exact-gradient mode): the same
     * contracts as forward/backward, except that every tensor which is
     * float32 in the float32 plan arrives as float64 (weights, activations,
     * gradients); integer tensors are unchanged. Outputs are allocated by
     * the caller with the float32 plan's shapes. Every operator has both;
     * most give the same function for both slots, reading the mode off the
     * data's type (cd_is_f64). */
    cd_op_forward_fn forward64;
    cd_op_backward_fn backward64;
} cd_op_def;

#define CD_OP_DECLARE(id, name) extern const cd_op_def cd_opdef_##id;
CD_OP_LIST(CD_OP_DECLARE)
#undef CD_OP_DECLARE

/* Definition for id (0 <= id < CD_OP_COUNT). */
const cd_op_def *cd_op_get(int id);
/* Id for an ONNX op_type in the default domain, or -1. */
int cd_op_lookup(const char *op_type);

/* Helpers for kernels ------------------------------------------------------ */

/* Reports an error that names the node, e.g. "node 'conv1' (Conv): ...". */
cd_status cd_node_fail(const cd_node *n, cd_error *err, cd_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* For backward kernels serving both precisions: CD_OK when the gradients
 * gx and gy are float64 (f64) or float32, else a failure naming the node. */
cd_status cd_grad_dtype_check(const cd_node *n, const cd_tensor *gx, const cd_tensor *gy, bool f64,
                              cd_error *err);

static inline float *cd_f32(cd_tensor *t) { return (float *)t->data; }
static inline const float *cd_cf32(const cd_tensor *t) { return (const float *)t->data; }
/* Kernels serving both precisions tell them apart by the data's type: the
 * float64 mode hands every float tensor over as float64. */
static inline bool cd_is_f64(const cd_tensor *t) { return t && t->dtype == CD_FLOAT64; }
static inline double *cd_f64(cd_tensor *t) { return (double *)t->data; }
static inline const double *cd_cf64(const cd_tensor *t) { return (const double *)t->data; }

/* Reads element i of an integer tensor (int64/int32/uint8/bool) as int64. */
int64_t cd_tensor_int_at(const cd_tensor *t, size_t i);

/* Multidirectional (NumPy) broadcast of shapes a and b into out; false if
 * they do not broadcast. */
bool cd_broadcast_shape(int na, const int64_t *a, int nb, const int64_t *b, int *nout,
                        int64_t *out);

#endif
