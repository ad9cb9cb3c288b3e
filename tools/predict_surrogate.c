/* Surrogate trees: feature names, rules, JSON in and out, and
 * `candor predict --surrogate`. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/atomic_file.h"
#include "inputs.h"
#include "predict_surrogate.h"
#include "cli_util.h"

#define MAX_DEPTH_PATH 256

char *surrogate_feature_name(cd_surrogate_kind kind, const char *layer, int grid, int h, int w,
                             int f)
{
    char buf[512];
    if (kind == CD_SURROGATE_POOLED) {
        snprintf(buf, sizeof buf, "mean(%s[%d])", layer ? layer : "?", f);
    } else {
        int r = f / grid, c = f % grid;
        snprintf(buf, sizeof buf, "cell(%d,%d) rows %d-%d cols %d-%d", r, c, r * h / grid,
                 (r + 1) * h / grid - 1, c * w / grid, (c + 1) * w / grid - 1);
    }
    return strdup(buf);
}

/* Nodes from the root to leaf (inclusive) into path; returns the length
 * (0 when leaf is not below node). */
static int find_path(const cd_tree *t, int node, int leaf, int *path, int depth)
{
    if (depth >= MAX_DEPTH_PATH)
        return 0;
    path[depth] = node;
    if (node == leaf)
        return depth + 1;
    if (t->nodes[node].feature < 0)
        return 0;
    int n = find_path(t, t->nodes[node].left, leaf, path, depth + 1);
    return n ? n : find_path(t, t->nodes[node].right, leaf, path, depth + 1);
}

static const char *fname(const surrogate_def *s, int f)
{
    return s->names && f < s->n_features ? s->names[f] : "?";
}

char *surrogate_rule_text(const surrogate_def *s, int leaf)
{
    int path[MAX_DEPTH_PATH];
    int n = find_path(s->tree, 0, leaf, path, 0);
    size_t cap = 64, len = 0;
    for (int i = 0; i + 1 < n; i++)
        cap += strlen(fname(s, s->tree->nodes[path[i]].feature)) + 48;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    out[0] = 0;
    if (n <= 1)
        snprintf(out, cap, "(always)");
    for (int i = 0; i + 1 < n; i++) {
        const cd_tree_node *nd = &s->tree->nodes[path[i]];
        bool left = nd->left == path[i + 1];
        len += (size_t)snprintf(out + len, cap - len, "%s%s %s %.6g", i ? " AND " : "",
                                fname(s, nd->feature), left ? "<=" : ">", nd->threshold);
    }
    return out;
}

cJSON *surrogate_rule_json(const surrogate_def *s, int leaf)
{
    int path[MAX_DEPTH_PATH];
    int n = find_path(s->tree, 0, leaf, path, 0);
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; arr && i + 1 < n; i++) {
        const cd_tree_node *nd = &s->tree->nodes[path[i]];
        cJSON *c = cJSON_CreateObject();
        cJSON_AddNumberToObject(c, "feature", nd->feature);
        cJSON_AddStringToObject(c, "name", fname(s, nd->feature));
        cJSON_AddStringToObject(c, "op", nd->left == path[i + 1] ? "<=" : ">");
        cJSON_AddNumberToObject(c, "threshold", nd->threshold);
        cJSON_AddItemToArray(arr, c);
    }
    return arr;
}

cJSON *surrogate_tree_json(const cd_tree *t)
{
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; arr && i < t->n_nodes; i++) {
        const cd_tree_node *nd = &t->nodes[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", i);
        cJSON_AddNumberToObject(o, "feature", nd->feature);
        cJSON_AddNumberToObject(o, "threshold", nd->threshold);
        cJSON_AddNumberToObject(o, "left", nd->left);
        cJSON_AddNumberToObject(o, "right", nd->right);
        cJSON_AddNumberToObject(o, "depth", nd->depth);
        cJSON_AddNumberToObject(o, "class", nd->klass);
        cJSON_AddNumberToObject(o, "samples", (double)nd->n_samples);
        cJSON_AddNumberToObject(o, "impurity", nd->impurity);
        cJSON *cnt = cJSON_CreateDoubleArray(t->counts + (size_t)i * (size_t)t->n_classes,
                                             t->n_classes);
        cJSON_AddItemToObject(o, "counts", cnt);
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

/* ------------------------------------------------------------ loading */

static int get_int(const cJSON *o, const char *k, int def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? (int)v->valuedouble : def;
}

/* Checks every node's links: children inside the table and after their
 * parent (so walking the tree always ends), features inside [0, F). */
static cd_status check_tree(const cd_tree *t, const char *path, cd_error *err)
{
    for (int i = 0; i < t->n_nodes; i++) {
        const cd_tree_node *nd = &t->nodes[i];
        bool leaf = nd->feature < 0;
        if (!leaf && (nd->feature >= t->n_features || nd->left <= i || nd->right <= i ||
                      nd->left >= t->n_nodes || nd->right >= t->n_nodes))
            return cli_set_error(err, CD_ERR_PARSE, "%s: tree node %d has invalid feature or "
                                 "children", path, i);
        if (!isfinite(nd->threshold))
            return cli_set_error(err, CD_ERR_PARSE, "%s: tree node %d has a non-finite "
                                 "threshold", path, i);
    }
    return CD_OK;
}

static cd_status parse_features(const cJSON *fe, const char *path, surrogate_def *s,
                                cd_error *err)
{
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(fe, "kind");
    const cJSON *layer = cJSON_GetObjectItemCaseSensitive(fe, "layer");
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(fe, "names");
    if (!cJSON_IsString(kind) || !cJSON_IsArray(names))
        return cli_set_error(err, CD_ERR_PARSE, "%s: features.kind or features.names missing",
                             path);
    if (strcmp(kind->valuestring, "pooled") == 0) {
        s->kind = CD_SURROGATE_POOLED;
        if (!cJSON_IsString(layer))
            return cli_set_error(err, CD_ERR_PARSE, "%s: pooled features need features.layer",
                                 path);
        s->layer = strdup(layer->valuestring);
    } else if (strcmp(kind->valuestring, "grid") == 0) {
        s->kind = CD_SURROGATE_GRID;
        s->grid = get_int(fe, "grid", 0);
        if (s->grid < 1)
            return cli_set_error(err, CD_ERR_PARSE, "%s: features.grid must be >= 1", path);
    } else {
        return cli_set_error(err, CD_ERR_PARSE, "%s: unknown features.kind '%s'", path,
                             kind->valuestring);
    }
    int n = cJSON_GetArraySize(names);
    if (n < 1)
        return cli_set_error(err, CD_ERR_PARSE, "%s: no feature names", path);
    s->names = calloc((size_t)n, sizeof *s->names);
    if (!s->names)
        return cli_set_error(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    s->n_features = n;
    for (int i = 0; i < n; i++) {
        const cJSON *v = cJSON_GetArrayItem(names, i);
        s->names[i] = strdup(cJSON_IsString(v) ? v->valuestring : "?");
    }
    return CD_OK;
}

static cd_status parse_tree(const cJSON *nodes, int k, const char *path, surrogate_def *s,
                            cd_error *err)
{
    int n = cJSON_GetArraySize(nodes);
    if (n < 1 || k < 1 || k > 100000)
        return cli_set_error(err, CD_ERR_PARSE, "%s: tree without nodes or classes", path);
    cd_tree *t = calloc(1, sizeof *t);
    if (!t)
        return cli_set_error(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    s->tree = t;
    t->nodes = calloc((size_t)n, sizeof *t->nodes);
    t->counts = calloc((size_t)n * (size_t)k, sizeof *t->counts);
    if (!t->nodes || !t->counts)
        return cli_set_error(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    t->n_nodes = n;
    t->n_classes = k;
    t->n_features = s->n_features;
    for (int i = 0; i < n; i++) {
        const cJSON *o = cJSON_GetArrayItem(nodes, i);
        const cJSON *thr = cJSON_GetObjectItemCaseSensitive(o, "threshold");
        cd_tree_node *nd = &t->nodes[i];
        nd->feature = get_int(o, "feature", -1);
        nd->threshold = cJSON_IsNumber(thr) ? thr->valuedouble : NAN;
        nd->left = get_int(o, "left", -1);
        nd->right = get_int(o, "right", -1);
        nd->depth = get_int(o, "depth", 0);
        nd->klass = get_int(o, "class", -1);
        nd->n_samples = get_int(o, "samples", 0);
        if (nd->klass < 0 || nd->klass >= k)
            return cli_set_error(err, CD_ERR_PARSE, "%s: node %d class outside [0, %d)", path,
                                 i, k);
        const cJSON *cnt = cJSON_GetObjectItemCaseSensitive(o, "counts");
        for (int c = 0; c < k && c < cJSON_GetArraySize(cnt); c++)
            t->counts[(size_t)i * (size_t)k + (size_t)c] = cJSON_GetArrayItem(cnt, c)->valuedouble;
    }
    return check_tree(t, path, err);
}

cd_status surrogate_load(const char *path, surrogate_def *out, cd_error *err)
{
    memset(out, 0, sizeof *out);
    uint8_t *text = NULL;
    size_t size = 0;
    cd_status st = cd_read_file(path, 256u << 20, &text, &size, err);
    if (st)
        return st;
    cJSON *root = cJSON_ParseWithLength((const char *)text, size);
    free(text);
    if (!root)
        return cli_set_error(err, CD_ERR_PARSE, "%s: not valid JSON", path);
    const cJSON *fe = cJSON_GetObjectItemCaseSensitive(root, "features");
    const cJSON *tree = cJSON_GetObjectItemCaseSensitive(root, "tree");
    const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(tree, "nodes");
    if (!cJSON_IsObject(fe) || !cJSON_IsArray(nodes))
        st = cli_set_error(err, CD_ERR_PARSE, "%s: not a surrogate file (needs \"features\" "
                           "and \"tree\".\"nodes\"; write one with 'candor surrogate')", path);
    if (!st)
        st = parse_features(fe, path, out, err);
    if (!st)
        st = parse_tree(nodes, get_int(tree, "classes", 0), path, out, err);
    cJSON_Delete(root);
    if (st)
        surrogate_free(out);
    return st;
}

void surrogate_free(surrogate_def *s)
{
    for (int i = 0; s->names && i < s->n_features; i++)
        free(s->names[i]);
    free(s->names);
    free(s->layer);
    cd_tree_free(s->tree);
    memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------ predict */

/* The model's top class and its softmax probability for row x. */
static cd_status model_top(cd_explainer *e, const cd_tensor *x, int *top, double *prob,
                           cd_error *err)
{
    cd_objective o;
    cd_objective_default(&o);
    o.kind = CD_OBJECTIVE_PROB;
    return cd_explain_scores(e, x, &o, prob, top, err);
}

static cd_status explain_input(const cd_model *m, cd_explainer *e, const surrogate_def *s,
                               const char *path, bool json, bool *first, cd_error *err)
{
    cd_tensor *x = NULL, *f = NULL;
    cd_status st = inputs_load_tensor(m, path, &x, err);
    int top = -1;
    double prob = 0;
    if (!st)
        st = model_top(e, x, &top, &prob, err);
    if (!st)
        st = cd_surrogate_features(e, x, s->kind, s->layer, s->grid, &f, NULL, err);
    if (!st && (int64_t)cd_tensor_numel(f) != s->n_features)
        st = cli_set_error(err, CD_ERR_SHAPE, "the surrogate has %d features but the model "
                           "gives %zu for this input", s->n_features, cd_tensor_numel(f));
    if (!st) {
        int leaf = cd_tree_apply(s->tree, cd_tensor_cdata(f));
        int k = s->tree->nodes[leaf].klass;
        char *rule = surrogate_rule_text(s, leaf);
        char b1[32], b2[32];
        if (json) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "input", path);
            cJSON_AddNumberToObject(o, "model_class", top);
            cJSON_AddStringToObject(o, "model_label", cli_label(m, top, b1, sizeof b1));
            cJSON_AddNumberToObject(o, "model_probability", prob);
            cJSON_AddNumberToObject(o, "leaf", leaf);
            cJSON_AddNumberToObject(o, "surrogate_class", k);
            cJSON_AddStringToObject(o, "surrogate_label", cli_label(m, k, b2, sizeof b2));
            cJSON_AddBoolToObject(o, "agrees", k == top);
            cJSON_AddItemToObject(o, "rule", surrogate_rule_json(s, leaf));
            cJSON_AddStringToObject(o, "rule_text", rule ? rule : "");
            char *txt = cJSON_PrintUnformatted(o);
            printf("%s%s", *first ? "" : ",\n", txt ? txt : "{}");
            *first = false;
            free(txt);
            cJSON_Delete(o);
        } else {
            const char *sl = cli_label(m, k, b2, sizeof b2);
            printf("%s\n  model:     %s (%.2f%%)\n  surrogate: %s (leaf %d, %s)\n  rule:      "
                   "IF %s THEN %s\n", path, cli_label(m, top, b1, sizeof b1), 100 * prob, sl,
                   leaf, k == top ? "agrees" : "DISAGREES", rule ? rule : "?", sl);
        }
        free(rule);
    }
    cd_tensor_free(x);
    cd_tensor_free(f);
    return st;
}

int predict_surrogate_run(const char *file, bool json, int threads, int argc, char **argv)
{
    if (argc < 2)
        return cli_fail("predict --surrogate: need MODEL and at least one INPUT"), 2;
    cd_error err;
    surrogate_def s;
    if (surrogate_load(file, &s, &err))
        return cli_fail_err("predict", &err);
    cd_model *m = NULL;
    cd_explainer *e = NULL;
    cd_explain_options eo = {.threads = threads > 0 ? threads : 1, .max_batch = 8};
    if (cd_model_load(argv[0], NULL, &m, &err) || cd_explainer_create(m, &eo, &e, &err)) {
        surrogate_free(&s);
        cd_model_free(m);
        return cli_fail_err("predict", &err);
    }
    input_list in;
    int failures = 0;
    if (inputs_collect(argc - 1, argv + 1, &in) != 0 || in.count == 0)
        failures = cli_fail("predict: no inputs found");
    bool first = true;
    if (json && in.count)
        printf("[");
    for (int i = 0; i < in.count; i++)
        if (explain_input(m, e, &s, in.paths[i], json, &first, &err)) {
            fprintf(stderr, "candor predict: error (%s): %s: %s\n", cd_status_name(err.code),
                    in.paths[i], err.message);
            failures++;
        }
    if (json && in.count)
        printf("]\n");
    inputs_free(&in);
    cd_explainer_free(e);
    cd_model_free(m);
    surrogate_free(&s);
    return failures ? 1 : 0;
}
