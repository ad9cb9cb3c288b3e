/* The in-memory model: values (named tensors), nodes in topological order,
 * attributes. Built by the ONNX loader (core/onnx_load.c), immutable after. */
#ifndef CANDOR_GRAPH_H
#define CANDOR_GRAPH_H

#include "internal.h"
#include "candor/model.h"

typedef enum cd_attr_type {
    CD_ATTR_FLOAT = 1,
    CD_ATTR_INT = 2,
    CD_ATTR_STRING = 3,
    CD_ATTR_TENSOR = 4,
    CD_ATTR_FLOATS = 6,
    CD_ATTR_INTS = 7,
    CD_ATTR_STRINGS = 8
} cd_attr_type; /* ONNX AttributeProto.AttributeType numbers */

typedef struct cd_attr {
    char *name;
    cd_attr_type type;
    float f;
    int64_t i;
    char *s;        /* CD_ATTR_STRING (NUL-terminated copy) */
    float *floats;  /* CD_ATTR_FLOATS */
    int64_t *ints;  /* CD_ATTR_INTS */
    size_t count;   /* number of floats/ints */
    cd_tensor *t;   /* CD_ATTR_TENSOR */
} cd_attr;

typedef struct cd_node {
    char *name;    /* may be "" in the file; loader fills "<op_type>_<index>" */
    char *op_type;
    char *domain;  /* "" for the default ONNX domain */
    int op;        /* cd_op_id, resolved by cd_node_bind */
    int opset;     /* opset version of the node's domain */
    int n_inputs;
    int *inputs;   /* value ids; -1 for an omitted optional input */
    int n_outputs;
    int *outputs;  /* value ids; -1 for an omitted optional output */
    int n_attrs;
    cd_attr *attrs;
    void *params;  /* op-specific parsed attributes (owned, free()) */
} cd_node;

typedef struct cd_value {
    char *name;
    cd_tensor *init;         /* initializer / Constant payload, or NULL */
    cd_dtype dtype;          /* declared type, CD_DTYPE_UNDEFINED if unknown */
    int ndim;                /* declared rank, -1 if unknown */
    int64_t dims[CD_MAX_DIMS]; /* declared dims, -1 for symbolic/unknown */
    int producer;            /* node index producing it, -1 for inputs/initializers */
    bool is_graph_input;
    bool is_graph_output;
} cd_value;

struct cd_sidecar;

struct cd_model {
    char *path;       /* may be NULL (memory loads) */
    char *producer;
    int64_t ir_version;
    int opset;        /* default-domain opset */
    int n_values;
    cd_value *values;
    int n_nodes;
    cd_node *nodes;   /* topological order */
    int n_inputs;
    int *inputs;      /* value ids of graph inputs that are not initializers */
    int n_outputs;
    int *outputs;
    struct cd_sidecar *sidecar; /* NULL when no sidecar */
    uint64_t max_activation_bytes; /* cd_load_options; 0 = the plan default */
};

/* Attribute lookup on a node. Return the default when absent. */
const cd_attr *cd_node_attr(const cd_node *n, const char *name);
int64_t cd_attr_int(const cd_node *n, const char *name, int64_t def);
float cd_attr_float(const cd_node *n, const char *name, float def);
const char *cd_attr_string(const cd_node *n, const char *name, const char *def);
/* Returns the number of ints (and sets *vals), or -1 when absent. */
int cd_attr_ints(const cd_node *n, const char *name, const int64_t **vals);
int cd_attr_floats(const cd_node *n, const char *name, const float **vals);
const cd_tensor *cd_attr_tensor(const cd_node *n, const char *name);

/* Building nodes programmatically (tests, MC-dropout site insertion). The node
 * is zeroed first; strings are copied. Release with cd_node_clear. */
cd_status cd_node_init(cd_node *n, const char *op_type, int opset, int n_inputs, int n_outputs,
                       cd_error *err);
cd_status cd_node_add_int(cd_node *n, const char *name, int64_t v, cd_error *err);
cd_status cd_node_add_float(cd_node *n, const char *name, float v, cd_error *err);
cd_status cd_node_add_string(cd_node *n, const char *name, const char *v, cd_error *err);
cd_status cd_node_add_ints(cd_node *n, const char *name, const int64_t *v, size_t count,
                           cd_error *err);
cd_status cd_node_add_floats(cd_node *n, const char *name, const float *v, size_t count,
                             cd_error *err);
/* Takes ownership of t. */
cd_status cd_node_add_tensor(cd_node *n, const char *name, cd_tensor *t, cd_error *err);
/* Resolves n->op from op_type/domain and lets the op parse its attributes.
 * Fails with CD_ERR_UNSUPPORTED naming node, op type and opset. */
cd_status cd_node_bind(cd_node *n, cd_error *err);
void cd_node_clear(cd_node *n);

/* Looks a value up by name; -1 when absent. */
int cd_model_find_value(const cd_model *m, const char *name);

#endif
