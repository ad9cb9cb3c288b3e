/* ONNX model loader: protobuf -> struct cd_model (core/graph.h).
 *
 * Steps: parse the ModelProto (protobuf-c), check the opset imports, build the
 * values table (initializers, graph inputs, node outputs; names are resolved
 * through a hash map so big graphs load in linear time), convert the nodes
 * with their attributes, sort them topologically (Kahn, smallest file index
 * first so an already sorted file keeps its order), bind every node to its
 * operator, then record declared shapes. Any failure frees everything built
 * so far and reports a message naming the file and the node/value at fault. */
#define _XOPEN_SOURCE 700

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"
#include "onnx_io.h"
#include "ops/op.h"
#include "sidecar.h"

#define MIN_DEFAULT_OPSET 1
#define MAX_DEFAULT_OPSET 21

/* ------------------------------------------------------------------------ */
/* Name -> value id hash map (open addressing, linear probing). */

typedef struct name_map {
    size_t mask;  /* capacity - 1, capacity a power of two */
    int *slots;   /* value id + 1; 0 = empty */
} name_map;

static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static bool map_init(name_map *map, size_t count)
{
    size_t cap = 16;
    while (cap < count * 2 + 1) {
        if (cap > SIZE_MAX / 4)
            return false;
        cap *= 2;
    }
    map->slots = calloc(cap, sizeof *map->slots);
    map->mask = cap - 1;
    return map->slots != NULL;
}

static int map_find(const name_map *map, const cd_value *values, const char *name)
{
    for (size_t i = hash_name(name) & map->mask;; i = (i + 1) & map->mask) {
        int slot = map->slots[i];
        if (slot == 0)
            return -1;
        if (strcmp(values[slot - 1].name, name) == 0)
            return slot - 1;
    }
}

/* The map is sized for every value up front, so it never fills. */
static void map_insert(name_map *map, const char *name, int id)
{
    size_t i = hash_name(name) & map->mask;
    while (map->slots[i] != 0)
        i = (i + 1) & map->mask;
    map->slots[i] = id + 1;
}

/* ------------------------------------------------------------------------ */

typedef struct loader {
    const CandorOnnx__GraphProto *g;
    const CandorOnnx__ModelProto *mp;
    cd_onnx_source src;
    const char *file;
    uint32_t max_nodes;
    uint32_t max_depth;
    int default_opset;
    cd_model *m;
    int max_values;
    name_map map;
} loader;

static bool is_default_domain(const char *d)
{
    return !d || !d[0] || strcmp(d, "ai.onnx") == 0;
}

/* Returns the imported version of domain, or -1 when not imported. */
static int64_t imported_version(const CandorOnnx__ModelProto *mp, const char *domain)
{
    for (size_t i = 0; i < mp->n_opset_import; i++) {
        const CandorOnnx__OperatorSetIdProto *op = mp->opset_import[i];
        bool same = is_default_domain(domain) ? is_default_domain(op->domain)
                                              : op->domain && strcmp(op->domain, domain) == 0;
        if (same)
            return op->has_version ? op->version : 1;
    }
    return -1;
}

/* The default domain's version must be one candor knows. A model may omit
 * the default domain altogether (e.g. only ai.onnx.preview.training nodes);
 * then any default-domain node is refused when it is converted. */
static cd_status check_opsets(loader *L, cd_error *err)
{
    int64_t v = imported_version(L->mp, "");
    if (v < 0) {
        L->default_opset = 0;
        return CD_OK;
    }
    if (v < MIN_DEFAULT_OPSET || v > MAX_DEFAULT_OPSET)
        return cd_fail(err, CD_ERR_UNSUPPORTED,
                       "%s: default-domain opset %lld is not supported (candor handles %d..%d)",
                       L->file, (long long)v, MIN_DEFAULT_OPSET, MAX_DEFAULT_OPSET);
    L->default_opset = (int)v;
    return CD_OK;
}

/* Adds a value named name (must be new). Returns its id or -1 on error. */
static int add_value(loader *L, const char *name, cd_error *err)
{
    cd_model *m = L->m;
    if (m->n_values >= L->max_values) {
        cd_fail(err, CD_ERR_INTERNAL, "%s: value table overflow", L->file);
        return -1;
    }
    cd_value *v = &m->values[m->n_values];
    memset(v, 0, sizeof *v);
    v->name = cd_strdup(name);
    if (!v->name) {
        cd_fail(err, CD_ERR_OUT_OF_MEMORY, "%s: out of memory", L->file);
        return -1;
    }
    v->ndim = -1;
    v->producer = -1;
    map_insert(&L->map, v->name, m->n_values);
    return m->n_values++;
}

/* Declared type/shape of a value from a ValueInfoProto. strict (graph
 * inputs/outputs) refuses non-tensor types and ranks candor cannot hold. */
static cd_status apply_value_info(loader *L, const CandorOnnx__ValueInfoProto *vi, cd_value *v,
                                  const char *role, bool strict, cd_error *err)
{
    const CandorOnnx__TypeProto *tp = vi->type;
    if (!tp || tp->value_case == CANDOR_ONNX__TYPE_PROTO__VALUE__NOT_SET)
        return CD_OK;
    if (tp->value_case != CANDOR_ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type) {
        if (!strict)
            return CD_OK;
        return cd_fail(err, CD_ERR_UNSUPPORTED,
                       "%s: %s '%s' is not a tensor (sequence/map/optional types are not "
                       "supported)", L->file, role, v->name);
    }
    const CandorOnnx__TypeProto__Tensor *tt = tp->tensor_type;
    if (tt->has_elem_type)
        v->dtype = cd_onnx_declared_dtype(tt->elem_type);
    if (!tt->shape)
        return CD_OK;
    if (tt->shape->n_dim > CD_MAX_DIMS) {
        if (!strict)
            return CD_OK;
        return cd_fail(err, CD_ERR_UNSUPPORTED, "%s: %s '%s' has rank %zu (candor's limit is %d)",
                       L->file, role, v->name, tt->shape->n_dim, CD_MAX_DIMS);
    }
    v->ndim = (int)tt->shape->n_dim;
    for (int i = 0; i < v->ndim; i++) {
        const CandorOnnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
        bool fixed = d && d->value_case == CANDOR_ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE
                     && d->dim_value >= 0;
        v->dims[i] = fixed ? d->dim_value : -1; /* dim_param or unknown: dynamic */
    }
    return CD_OK;
}

static cd_status add_initializers(loader *L, cd_error *err)
{
    const CandorOnnx__GraphProto *g = L->g;
    if (g->n_sparse_initializer > 0)
        return cd_fail(err, CD_ERR_UNSUPPORTED, "%s: sparse initializers are not supported",
                       L->file);
    for (size_t i = 0; i < g->n_initializer; i++) {
        const CandorOnnx__TensorProto *tp = g->initializer[i];
        if (!tp->name || !tp->name[0])
            return cd_fail(err, CD_ERR_PARSE, "%s: initializer #%zu has no name", L->file, i);
        if (map_find(&L->map, L->m->values, tp->name) >= 0)
            return cd_fail(err, CD_ERR_PARSE, "%s: initializer '%s' is defined twice", L->file,
                           tp->name);
        char what[300];
        snprintf(what, sizeof what, "initializer '%s'", tp->name);
        cd_tensor *t = NULL;
        cd_status st = cd_onnx_tensor_from_proto(tp, what, &L->src, &t, err);
        if (st != CD_OK)
            return st;
        int id = add_value(L, tp->name, err);
        if (id < 0) {
            cd_tensor_free(t);
            return err ? err->code : CD_ERR_OUT_OF_MEMORY;
        }
        cd_value *v = &L->m->values[id];
        v->init = t;
        v->dtype = t->dtype;
        v->ndim = t->ndim;
        memcpy(v->dims, t->dims, sizeof v->dims);
    }
    return CD_OK;
}

/* Graph inputs that are also initializers are constants, not model inputs. */
static cd_status add_graph_inputs(loader *L, cd_error *err)
{
    const CandorOnnx__GraphProto *g = L->g;
    cd_model *m = L->m;
    m->inputs = malloc((g->n_input ? g->n_input : 1) * sizeof *m->inputs);
    if (!m->inputs)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "%s: out of memory", L->file);
    for (size_t i = 0; i < g->n_input; i++) {
        const CandorOnnx__ValueInfoProto *vi = g->input[i];
        if (!vi->name || !vi->name[0])
            return cd_fail(err, CD_ERR_PARSE, "%s: graph input #%zu has no name", L->file, i);
        int id = map_find(&L->map, m->values, vi->name);
        if (id >= 0 && m->values[id].init)
            continue;
        if (id >= 0)
            return cd_fail(err, CD_ERR_PARSE, "%s: graph input '%s' is declared twice", L->file,
                           vi->name);
        if ((id = add_value(L, vi->name, err)) < 0)
            return err ? err->code : CD_ERR_OUT_OF_MEMORY;
        m->values[id].is_graph_input = true;
        cd_status st = apply_value_info(L, vi, &m->values[id], "graph input", true, err);
        if (st != CD_OK)
            return st;
        m->inputs[m->n_inputs++] = id;
    }
    return CD_OK;
}

/* Registers every node output as a value produced by node index (file order). */
static cd_status add_node_outputs(loader *L, cd_error *err)
{
    const CandorOnnx__GraphProto *g = L->g;
    for (size_t i = 0; i < g->n_node; i++) {
        const CandorOnnx__NodeProto *np = g->node[i];
        for (size_t k = 0; k < np->n_output; k++) {
            const char *name = np->output[k];
            if (!name || !name[0])
                continue; /* omitted optional output */
            int id = map_find(&L->map, L->m->values, name);
            if (id >= 0)
                return cd_fail(err, CD_ERR_PARSE,
                               "%s: node '%s' (%s): output '%s' is already defined elsewhere",
                               L->file, np->name ? np->name : "", np->op_type ? np->op_type : "?",
                               name);
            if ((id = add_value(L, name, err)) < 0)
                return err ? err->code : CD_ERR_OUT_OF_MEMORY;
            L->m->values[id].producer = (int)i;
        }
    }
    return CD_OK;
}

/* ------------------------------------------------------------------------ */
/* Attributes */

static int attr_type_of(const CandorOnnx__AttributeProto *ap)
{
    if (ap->has_type && ap->type != CANDOR_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__UNDEFINED)
        return (int)ap->type;
    /* IR version 1 files carry no type: infer it from the field present. */
    if (ap->has_f) return CANDOR_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
    if (ap->has_i) return CANDOR_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    if (ap->has_s) return CANDOR_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
    if (ap->t) return CANDOR_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR;
    if (ap->n_floats) return CANDOR_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS;
    if (ap->n_ints) return CANDOR_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    if (ap->n_strings) return CANDOR_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS;
    if (ap->has_g) return CANDOR_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH;
    return CANDOR_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__UNDEFINED;
}

static cd_status add_string_attr(loader *L, cd_node *n, const char *name,
                                 const ProtobufCBinaryData *s, cd_error *err)
{
    char *copy = malloc(s->len + 1);
    if (!copy)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "%s: out of memory", L->file);
    if (s->len)
        memcpy(copy, s->data, s->len);
    copy[s->len] = '\0';
    cd_status st = cd_node_add_string(n, name, copy, err);
    free(copy);
    return st;
}

/* Converts one attribute. Types candor's operators never read (graphs,
 * sparse tensors, string lists, ...) are not stored; *skipped remembers the
 * first so the node fails only if its operator is otherwise supported. */
static cd_status convert_attr(loader *L, cd_node *n, const CandorOnnx__AttributeProto *ap,
                              const char **skipped, cd_error *err)
{
    const char *name = ap->name;
    if (!name || !name[0])
        return cd_fail(err, CD_ERR_PARSE, "%s: node '%s' (%s): attribute without a name", L->file,
                       n->name, n->op_type);
    switch (attr_type_of(ap)) {
    case CANDOR_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT:
        return cd_node_add_float(n, name, ap->f, err);
    case CANDOR_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT:
        return cd_node_add_int(n, name, ap->i, err);
    case CANDOR_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING:
        return add_string_attr(L, n, name, &ap->s, err);
    case CANDOR_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS:
        return cd_node_add_floats(n, name, ap->floats, ap->n_floats, err);
    case CANDOR_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS:
        return cd_node_add_ints(n, name, ap->ints, ap->n_ints, err);
    case CANDOR_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR: {
        if (!ap->t)
            return cd_fail(err, CD_ERR_PARSE, "%s: node '%s' (%s): tensor attribute '%s' is empty",
                           L->file, n->name, n->op_type, name);
        char what[600];
        snprintf(what, sizeof what, "node '%s' (%s) attribute '%s'", n->name, n->op_type, name);
        cd_tensor *t = NULL;
        cd_status st = cd_onnx_tensor_from_proto(ap->t, what, &L->src, &t, err);
        return st != CD_OK ? st : cd_node_add_tensor(n, name, t, err);
    }
    default:
        if (!*skipped)
            *skipped = name;
        return CD_OK;
    }
}

/* ------------------------------------------------------------------------ */
/* Nodes */

static cd_status resolve_io(loader *L, cd_node *n, const CandorOnnx__NodeProto *np,
                            cd_error *err)
{
    for (size_t k = 0; k < np->n_input; k++) {
        const char *name = np->input[k];
        if (!name || !name[0]) {
            n->inputs[k] = -1; /* omitted optional input */
            continue;
        }
        int id = map_find(&L->map, L->m->values, name);
        if (id < 0)
            return cd_fail(err, CD_ERR_PARSE,
                           "%s: node '%s' (%s): input '%s' is not produced by any node, "
                           "initializer or graph input", L->file, n->name, n->op_type, name);
        n->inputs[k] = id;
    }
    for (size_t k = 0; k < np->n_output; k++) {
        const char *name = np->output[k];
        n->outputs[k] = name && name[0] ? map_find(&L->map, L->m->values, name) : -1;
    }
    return CD_OK;
}

/* Converts proto node index into n (not yet bound). */
static cd_status convert_node(loader *L, size_t index, cd_node *n, const char **skipped,
                              cd_error *err)
{
    const CandorOnnx__NodeProto *np = L->g->node[index];
    if (!np->op_type || !np->op_type[0])
        return cd_fail(err, CD_ERR_PARSE, "%s: node #%zu has no op_type", L->file, index);
    if (np->n_input > INT_MAX || np->n_output > INT_MAX || np->n_attribute > INT_MAX)
        return cd_fail(err, CD_ERR_LIMIT, "%s: node #%zu has too many inputs/outputs", L->file,
                       index);
    int64_t opset = imported_version(L->mp, np->domain);
    if (opset < 0)
        return cd_fail(err, CD_ERR_PARSE,
                       "%s: node #%zu (%s) uses domain '%s' but the model imports no opset "
                       "for it", L->file, index, np->op_type,
                       is_default_domain(np->domain) ? "ai.onnx" : np->domain);
    cd_status st = cd_node_init(n, np->op_type, (int)(opset > INT_MAX ? INT_MAX : opset),
                                (int)np->n_input, (int)np->n_output, err);
    if (st != CD_OK)
        return st;
    if (!is_default_domain(np->domain)) {
        free(n->domain);
        if (!(n->domain = cd_strdup(np->domain)))
            return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "%s: out of memory", L->file);
    }
    char fallback[300];
    snprintf(fallback, sizeof fallback, "%s_%zu", np->op_type, index);
    free(n->name);
    if (!(n->name = cd_strdup(np->name && np->name[0] ? np->name : fallback)))
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "%s: out of memory", L->file);
    if ((st = resolve_io(L, n, np, err)) != CD_OK)
        return st;
    for (size_t a = 0; a < np->n_attribute; a++)
        if ((st = convert_attr(L, n, np->attribute[a], skipped, err)) != CD_OK)
            return st;
    return CD_OK;
}

/* Binary min-heap of node indices: Kahn's algorithm then emits the ready node
 * that comes first in the file, so a file already in order keeps it. */
typedef struct heap {
    int *a;
    int n;
} heap;

static void heap_push(heap *h, int v)
{
    int i = h->n++;
    h->a[i] = v;
    while (i > 0 && h->a[(i - 1) / 2] > h->a[i]) {
        int p = (i - 1) / 2, t = h->a[p];
        h->a[p] = h->a[i];
        h->a[i] = t;
        i = p;
    }
}

static int heap_pop(heap *h)
{
    int top = h->a[0];
    h->a[0] = h->a[--h->n];
    for (int i = 0;;) {
        int l = 2 * i + 1, r = l + 1, s = i;
        if (l < h->n && h->a[l] < h->a[s]) s = l;
        if (r < h->n && h->a[r] < h->a[s]) s = r;
        if (s == i)
            break;
        int t = h->a[s];
        h->a[s] = h->a[i];
        h->a[i] = t;
        i = s;
    }
    return top;
}

/* Names one node of a cycle (a node never emitted) and a value it waits on. */
static cd_status report_cycle(loader *L, const cd_node *nodes, int n, const int *indeg,
                              cd_error *err)
{
    const cd_value *vals = L->m->values;
    for (int i = 0; i < n; i++) {
        if (indeg[i] == 0)
            continue;
        for (int k = 0; k < nodes[i].n_inputs; k++) {
            int v = nodes[i].inputs[k];
            if (v >= 0 && vals[v].producer >= 0 && indeg[vals[v].producer] > 0)
                return cd_fail(err, CD_ERR_PARSE,
                               "%s: the graph has a cycle: node '%s' (%s) needs value '%s', "
                               "which depends on the node's own output", L->file, nodes[i].name,
                               nodes[i].op_type, vals[v].name);
        }
    }
    return cd_fail(err, CD_ERR_PARSE, "%s: the graph has a cycle", L->file);
}

/* Kahn's algorithm over nodes (file order); fills order[] with node indices. */
static cd_status topo_sort(loader *L, const cd_node *nodes, int n, int *order, cd_error *err)
{
    const cd_value *vals = L->m->values;
    int nv = L->m->n_values;
    int *indeg = calloc((size_t)n + 1, sizeof *indeg);
    int *start = calloc((size_t)nv + 1, sizeof *start); /* consumers of value v (CSR) */
    int *fill = calloc((size_t)nv + 1, sizeof *fill);
    size_t slots = 0;
    for (int i = 0; i < n; i++)
        slots += (size_t)nodes[i].n_inputs;
    int *cons = malloc((slots + 1) * sizeof *cons);
    heap h = {malloc(((size_t)n + 1) * sizeof(int)), 0};
    cd_status st = CD_OK;
    if (!indeg || !start || !fill || !cons || !h.a) {
        st = cd_fail(err, CD_ERR_OUT_OF_MEMORY, "%s: out of memory", L->file);
        goto done;
    }
    for (int i = 0; i < n; i++)
        for (int k = 0; k < nodes[i].n_inputs; k++) {
            int v = nodes[i].inputs[k];
            if (v >= 0 && vals[v].producer >= 0) {
                indeg[i]++;
                start[v + 1]++;
            }
        }
    for (int v = 0; v < nv; v++)
        start[v + 1] += start[v];
    for (int i = 0; i < n; i++)
        for (int k = 0; k < nodes[i].n_inputs; k++) {
            int v = nodes[i].inputs[k];
            if (v >= 0 && vals[v].producer >= 0)
                cons[start[v] + fill[v]++] = i;
        }
    for (int i = 0; i < n; i++)
        if (indeg[i] == 0)
            heap_push(&h, i);
    int emitted = 0;
    while (h.n > 0) {
        int p = heap_pop(&h);
        order[emitted++] = p;
        for (int k = 0; k < nodes[p].n_outputs; k++) {
            int v = nodes[p].outputs[k];
            for (int c = v >= 0 ? start[v] : 0; v >= 0 && c < start[v + 1]; c++)
                if (--indeg[cons[c]] == 0)
                    heap_push(&h, cons[c]);
        }
    }
    if (emitted < n)
        st = report_cycle(L, nodes, n, indeg, err);
done:
    free(indeg);
    free(start);
    free(fill);
    free(cons);
    free(h.a);
    return st;
}

/* Moves tmp[] (file order) into L->m->nodes in topological order and renumbers
 * the value producers to match. */
static void adopt_in_order(loader *L, cd_node *tmp, const int *order, int *pos, int n)
{
    cd_model *m = L->m;
    for (int k = 0; k < n; k++) {
        m->nodes[k] = tmp[order[k]];
        pos[order[k]] = k;
    }
    memset(tmp, 0, (size_t)n * sizeof *tmp); /* ownership moved to m->nodes */
    m->n_nodes = n;
    for (int v = 0; v < m->n_values; v++)
        if (m->values[v].producer >= 0)
            m->values[v].producer = pos[m->values[v].producer];
}

/* Binds every node to its operator (in topological order). skipped[] is in
 * file order, hence order[]. */
static cd_status bind_all(loader *L, const int *order, const char *const *skipped,
                          cd_error *err)
{
    for (int k = 0; k < L->m->n_nodes; k++) {
        cd_node *node = &L->m->nodes[k];
        cd_status st = cd_node_bind(node, err);
        if (st != CD_OK)
            return cd_error_prefix(err, st, "%s", L->file);
        /* The first output of every operator candor implements is required
         * (later ones, masks and indices, may be omitted with ""); kernels
         * write output 0 unconditionally. Checked after binding because some
         * ONNX operators candor lacks (GRU, LSTM) do allow omitting it. */
        if (node->n_outputs < 1 || node->outputs[0] < 0)
            return cd_fail(err, CD_ERR_PARSE, "%s: node '%s' (%s) has no first output",
                           L->file, node->name, node->op_type);
        if (skipped[order[k]])
            return cd_fail(err, CD_ERR_UNSUPPORTED,
                           "%s: node '%s' (%s): attribute '%s' has a type candor does not "
                           "support", L->file, node->name, node->op_type, skipped[order[k]]);
    }
    return CD_OK;
}

/* The longest chain of nodes (nodes are in topological order, producers
 * already renumbered). Capped so that no later pass over the graph — and no
 * caller walking it recursively — meets an unbounded depth. */
static cd_status check_depth(loader *L, cd_error *err)
{
    const cd_model *m = L->m;
    uint32_t *depth = calloc((size_t)m->n_nodes + 1, sizeof *depth);
    if (!depth)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "%s: out of memory", L->file);
    cd_status st = CD_OK;
    for (int k = 0; k < m->n_nodes && st == CD_OK; k++) {
        const cd_node *n = &m->nodes[k];
        uint32_t d = 1;
        for (int i = 0; i < n->n_inputs; i++) {
            int v = n->inputs[i];
            int p = v >= 0 ? m->values[v].producer : -1;
            if (p >= 0 && p < k && depth[p] + 1 > d)
                d = depth[p] + 1;
        }
        depth[k] = d;
        if (d > L->max_depth)
            st = cd_fail(err, CD_ERR_LIMIT,
                         "%s: the graph is deeper than the limit of %u nodes (node '%s' (%s) "
                         "is at depth %u)", L->file, L->max_depth, n->name, n->op_type, d);
    }
    free(depth);
    return st;
}

/* Converts, sorts and binds all nodes into L->m. */
static cd_status build_nodes(loader *L, cd_error *err)
{
    int n = (int)L->g->n_node;
    size_t count = (size_t)n + 1;
    cd_node *tmp = calloc(count, sizeof *tmp);
    int *order = malloc(count * sizeof *order);
    int *pos = malloc(count * sizeof *pos);
    const char **skipped = calloc(count, sizeof *skipped);
    L->m->nodes = calloc(count, sizeof *L->m->nodes);
    cd_status st = CD_OK;
    if (!tmp || !order || !pos || !skipped || !L->m->nodes)
        st = cd_fail(err, CD_ERR_OUT_OF_MEMORY, "%s: out of memory", L->file);
    for (int i = 0; i < n && st == CD_OK; i++)
        st = convert_node(L, (size_t)i, &tmp[i], &skipped[i], err);
    if (st == CD_OK)
        st = topo_sort(L, tmp, n, order, err);
    if (st == CD_OK) {
        adopt_in_order(L, tmp, order, pos, n);
        st = bind_all(L, order, skipped, err);
    }
    if (st == CD_OK)
        st = check_depth(L, err);
    for (int i = 0; tmp && i < n; i++)
        cd_node_clear(&tmp[i]);
    free(tmp);
    free(order);
    free(pos);
    free(skipped);
    return st;
}

static cd_status add_graph_outputs(loader *L, cd_error *err)
{
    const CandorOnnx__GraphProto *g = L->g;
    cd_model *m = L->m;
    m->outputs = malloc((g->n_output ? g->n_output : 1) * sizeof *m->outputs);
    if (!m->outputs)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "%s: out of memory", L->file);
    for (size_t i = 0; i < g->n_output; i++) {
        const CandorOnnx__ValueInfoProto *vi = g->output[i];
        int id = vi->name && vi->name[0] ? map_find(&L->map, m->values, vi->name) : -1;
        if (id < 0)
            return cd_fail(err, CD_ERR_PARSE,
                           "%s: graph output '%s' is not produced by any node, initializer or "
                           "input", L->file, vi->name ? vi->name : "");
        cd_value *v = &m->values[id];
        v->is_graph_output = true;
        if (!v->init && !v->is_graph_input) {
            cd_status st = apply_value_info(L, vi, v, "graph output", true, err);
            if (st != CD_OK)
                return st;
        }
        m->outputs[m->n_outputs++] = id;
    }
    return CD_OK;
}

/* Intermediate value_info is advisory: unknown names and odd types are ignored. */
static void add_value_infos(loader *L)
{
    const CandorOnnx__GraphProto *g = L->g;
    for (size_t i = 0; i < g->n_value_info; i++) {
        const CandorOnnx__ValueInfoProto *vi = g->value_info[i];
        int id = vi->name ? map_find(&L->map, L->m->values, vi->name) : -1;
        if (id < 0)
            continue;
        cd_value *v = &L->m->values[id];
        if (!v->init && !v->is_graph_input && !v->is_graph_output)
            apply_value_info(L, vi, v, "value", false, NULL);
    }
}

/* Upper bound of the values table: every name that can define a value. */
static cd_status count_values(loader *L, cd_error *err)
{
    const CandorOnnx__GraphProto *g = L->g;
    size_t total = g->n_initializer + g->n_input;
    if (g->n_node > L->max_nodes)
        return cd_fail(err, CD_ERR_LIMIT, "%s: %zu nodes exceed the limit of %u", L->file,
                       g->n_node, L->max_nodes);
    for (size_t i = 0; i < g->n_node; i++)
        total += g->node[i]->n_output;
    if (total >= (size_t)INT_MAX / 2)
        return cd_fail(err, CD_ERR_LIMIT, "%s: too many values (%zu)", L->file, total);
    L->max_values = (int)total;
    L->m->values = calloc(total + 1, sizeof *L->m->values);
    if (!L->m->values || !map_init(&L->map, total))
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "%s: out of memory", L->file);
    return CD_OK;
}

static cd_status build_model(loader *L, cd_error *err)
{
    cd_model *m = L->m;
    if (!L->g)
        return cd_fail(err, CD_ERR_PARSE, "%s: not a valid ONNX model (no graph)", L->file);
    m->ir_version = L->mp->has_ir_version ? L->mp->ir_version : 0;
    m->producer = cd_strdup(L->mp->producer_name ? L->mp->producer_name : "");
    if (!m->producer)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "%s: out of memory", L->file);
    cd_status st = check_opsets(L, err);
    if (st == CD_OK)
        st = count_values(L, err);
    if (st == CD_OK)
        st = add_initializers(L, err);
    if (st == CD_OK)
        st = add_graph_inputs(L, err);
    if (st == CD_OK)
        st = add_node_outputs(L, err);
    if (st == CD_OK)
        st = build_nodes(L, err);
    if (st == CD_OK)
        st = add_graph_outputs(L, err);
    if (st != CD_OK)
        return st;
    add_value_infos(L);
    m->opset = L->default_opset;
    return CD_OK;
}

/* Loads from bytes; file names the model in messages (NULL = memory). */
static cd_status load_bytes(const void *bytes, size_t size, const char *file,
                            const char *base_dir, const cd_load_options *opts, cd_model **out,
                            cd_error *err)
{
    const char *label = file ? file : "<memory>";
    CandorOnnx__ModelProto *mp = candor_onnx__model_proto__unpack(NULL, size, bytes);
    if (!mp)
        return cd_fail(err, CD_ERR_PARSE, "%s: not a valid ONNX model (protobuf parse failed)",
                       label);
    loader L;
    memset(&L, 0, sizeof L);
    L.mp = mp;
    L.g = mp->graph;
    L.file = label;
    cd_onnx_source_init(&L.src, label, base_dir);
    L.max_nodes = CD_ONNX_DEFAULT_MAX_NODES;
    if (opts && opts->max_tensor_elements)
        L.src.max_elements = opts->max_tensor_elements;
    if (opts && opts->max_total_bytes)
        L.src.max_bytes = opts->max_total_bytes;
    if (opts && opts->max_nodes)
        L.max_nodes = opts->max_nodes;
    L.max_depth = opts && opts->max_graph_depth ? opts->max_graph_depth : CD_ONNX_DEFAULT_MAX_DEPTH;
    cd_status st = CD_OK;
    if (!(L.m = calloc(1, sizeof *L.m)))
        st = cd_fail(err, CD_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
    else
        st = build_model(&L, err);
    if (st == CD_OK && opts)
        L.m->max_activation_bytes = opts->max_activation_bytes;
    free(L.map.slots);
    candor_onnx__model_proto__free_unpacked(mp, NULL);
    if (st != CD_OK) {
        cd_model_free(L.m);
        return st;
    }
    *out = L.m;
    return CD_OK;
}

/* ------------------------------------------------------------------------ */
/* Public API */

cd_status cd_model_load_memory(const void *bytes, size_t size, const char *base_dir,
                               const cd_load_options *opts, cd_model **out, cd_error *err)
{
    if (!out || (!bytes && size))
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_model_load_memory: NULL argument");
    *out = NULL;
    return load_bytes(bytes ? bytes : "", size, NULL, base_dir, opts, out, err);
}

/* The folder part of path ("." when it has none) as a new string. */
static char *folder_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return cd_strdup(".");
    size_t len = slash == path ? 1 : (size_t)(slash - path);
    char *dir = malloc(len + 1);
    if (dir) {
        memcpy(dir, path, len);
        dir[len] = '\0';
    }
    return dir;
}

cd_status cd_model_load(const char *path, const cd_load_options *opts, cd_model **out,
                        cd_error *err)
{
    if (!path || !out)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_model_load: NULL argument");
    *out = NULL;
    uint8_t *bytes = NULL;
    size_t size = 0;
    cd_status st = cd_onnx_read_file(path, &bytes, &size, err);
    if (st != CD_OK)
        return st;
    char *dir = folder_of(path);
    cd_model *m = NULL;
    if (!dir)
        st = cd_fail(err, CD_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    else
        st = load_bytes(bytes, size, path, dir, opts, &m, err);
    free(bytes);
    free(dir);
    if (st != CD_OK)
        return st;
    if (!(m->path = cd_strdup(path))) {
        cd_model_free(m);
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    /* MODEL.candor.json next to the model, when present (core/sidecar.c). */
    st = cd_sidecar_load_for_model(path, &m->sidecar, err);
    if (st != CD_OK) {
        cd_model_free(m);
        return st;
    }
    *out = m;
    return CD_OK;
}

void cd_model_free(cd_model *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->n_values; i++) {
        free(m->values[i].name);
        cd_tensor_free(m->values[i].init);
    }
    free(m->values);
    for (int i = 0; i < m->n_nodes; i++)
        cd_node_clear(&m->nodes[i]);
    free(m->nodes);
    free(m->inputs);
    free(m->outputs);
    free(m->path);
    free(m->producer);
    cd_sidecar_free(m->sidecar);
    free(m);
}

int cd_model_opset(const cd_model *m) { return m ? m->opset : 0; }
const char *cd_model_producer(const cd_model *m) { return m && m->producer ? m->producer : ""; }
int cd_model_node_count(const cd_model *m) { return m ? m->n_nodes : 0; }
int cd_model_input_count(const cd_model *m) { return m ? m->n_inputs : 0; }
int cd_model_output_count(const cd_model *m) { return m ? m->n_outputs : 0; }

const char *cd_model_input_name(const cd_model *m, int index)
{
    if (!m || index < 0 || index >= m->n_inputs)
        return NULL;
    return m->values[m->inputs[index]].name;
}

const char *cd_model_output_name(const cd_model *m, int index)
{
    if (!m || index < 0 || index >= m->n_outputs)
        return NULL;
    return m->values[m->outputs[index]].name;
}

static cd_status declared_shape(const cd_model *m, const int *ids, int count, int index,
                                const char *role, int *ndim, int64_t dims[CD_MAX_DIMS],
                                cd_error *err)
{
    if (!m || !ndim || !dims || index < 0 || index >= count)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "%s index %d out of range (model has %d)",
                       role, index, m ? count : 0);
    const cd_value *v = &m->values[ids[index]];
    *ndim = v->ndim;
    for (int i = 0; i < CD_MAX_DIMS; i++)
        dims[i] = i < v->ndim ? v->dims[i] : 0;
    return CD_OK;
}

cd_status cd_model_input_shape(const cd_model *m, int index, int *ndim,
                               int64_t dims[CD_MAX_DIMS], cd_error *err)
{
    return declared_shape(m, m ? m->inputs : NULL, m ? m->n_inputs : 0, index, "input", ndim,
                          dims, err);
}

cd_status cd_model_output_shape(const cd_model *m, int index, int *ndim,
                                int64_t dims[CD_MAX_DIMS], cd_error *err)
{
    return declared_shape(m, m ? m->outputs : NULL, m ? m->n_outputs : 0, index, "output", ndim,
                          dims, err);
}

cd_dtype cd_model_input_dtype(const cd_model *m, int index)
{
    if (!m || index < 0 || index >= m->n_inputs)
        return CD_DTYPE_UNDEFINED;
    return m->values[m->inputs[index]].dtype;
}

uint64_t cd_model_parameter_count(const cd_model *m)
{
    uint64_t total = 0;
    for (int i = 0; m && i < m->n_values; i++) {
        const cd_value *v = &m->values[i];
        if (v->init && v->producer < 0 && (v->dtype == CD_FLOAT32 || v->dtype == CD_FLOAT64))
            total += cd_tensor_numel_raw(v->init);
    }
    return total;
}
