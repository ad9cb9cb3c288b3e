/* candor surrogate MODEL --data D [--features pooled|grid] [--layer NAME]
 *   [--grid G] [--depth K] [--min-leaf N] [--split F] -o DIR
 * Distils the model's predicted classes into a CART decision tree over
 * interpretable features (explain/surrogate.c) and reports fidelity and
 * accuracy on a held-out split. */
#define _POSIX_C_SOURCE 200809L
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "interp_data.h"
#include "predict_surrogate.h"
#include "cli_util.h"

static void help(FILE *f)
{
    fprintf(f,
"usage: candor surrogate MODEL --data D [options] -o DIR\n\n"
"Distils the model into a decision tree (CART, Gini) that predicts the model's\n"
"own top class from interpretable features, and prints the tree's rules.\n"
"D is labelled data as for 'candor calibrate' (class folders, CSV path,label,\n"
"or .npy rows with --labels). The rows are split at random (seeded) into a\n"
"training part (--split) and a held-out part; the tree is fitted on the\n"
"training part. Definitions: docs/interpretability.md.\n\n"
"options:\n"
"  --data D          labelled data (required)\n"
"  --labels FILE     labels for an .npy --data (.npy or text)\n"
"  --features F      pooled (default): mean of each channel of --layer\n"
"                    grid: mean input intensity over a G x G grid of cells\n"
"  --layer NAME      pooled layer (default: the Grad-CAM layer, see 'candor explain')\n"
"  --grid G          grid size (default 4)\n"
"  --depth K         maximum tree depth (default 4; 0 = unlimited)\n"
"  --min-leaf N      minimum training rows per leaf (default 1)\n"
"  --min-split N     minimum rows to split a node (default 2)\n"
"  --split F         training fraction (default 0.5)\n"
"  --seed S          split seed (default 0)\n"
"  --threads N       threads (default: all cores)\n"
"  --json            print the summary as JSON on stdout instead of text\n"
"  -o, --outdir DIR  writes surrogate.json (settings, fidelity, accuracy,\n"
"                    rules, tree: the file for 'candor predict --surrogate'),\n"
"                    rules.txt, features.npy (N x F float32), predictions.npy\n"
"                    (model classes, int64), labels.npy, train.npy (1 = training row)\n"
"  -h, --help        this help\n"
"Progress goes to stderr.\n");
}

typedef struct sg_args {
    const char *model, *data, *labels, *layer, *outdir;
    cd_surrogate_kind kind;
    int grid, threads;
    cd_tree_params tp;
    double split;
    unsigned long long seed;
    bool json;
} sg_args;

static int parse(int argc, char **argv, sg_args *a)
{
    static const struct option opts[] = {
        {"data", required_argument, 0, 'd'},     {"labels", required_argument, 0, 'l'},
        {"features", required_argument, 0, 'f'}, {"layer", required_argument, 0, 'L'},
        {"grid", required_argument, 0, 'g'},     {"depth", required_argument, 0, 'k'},
        {"min-leaf", required_argument, 0, 'm'}, {"min-split", required_argument, 0, 'M'},
        {"split", required_argument, 0, 's'},    {"seed", required_argument, 0, 'S'},
        {"threads", required_argument, 0, 't'},  {"json", no_argument, 0, 'j'},
        {"outdir", required_argument, 0, 'o'},   {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    memset(a, 0, sizeof *a);
    a->grid = 4;
    a->threads = 0; /* all cores */
    a->split = 0.5;
    cd_tree_params_default(&a->tp);
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
        switch (c) {
        case 'h': help(stdout); return 0;
        case 'd': a->data = optarg; break;
        case 'l': a->labels = optarg; break;
        case 'f':
            if (strcmp(optarg, "pooled") && strcmp(optarg, "grid"))
                return cli_fail("surrogate: --features is pooled or grid"), 2;
            a->kind = strcmp(optarg, "grid") == 0 ? CD_SURROGATE_GRID : CD_SURROGATE_POOLED;
            break;
        case 'L': a->layer = optarg; break;
        case 'g': a->grid = atoi(optarg); break;
        case 'k': a->tp.max_depth = atoi(optarg); break;
        case 'm': a->tp.min_samples_leaf = atoi(optarg); break;
        case 'M': a->tp.min_samples_split = atoi(optarg); break;
        case 's': a->split = atof(optarg); break;
        case 'S': a->seed = strtoull(optarg, NULL, 10); break;
        case 't': a->threads = atoi(optarg); break;
        case 'j': a->json = true; break;
        case 'o': a->outdir = optarg; break;
        default: help(stderr); return 2;
        }
    }
    if (optind != argc - 1 || !a->data || !a->outdir) {
        help(stderr);
        return 2;
    }
    a->model = argv[optind];
    if (!(a->split > 0 && a->split < 1) || a->grid < 1 || a->threads < 0 ||
        a->tp.max_depth < 0 || a->tp.min_samples_leaf < 1 || a->tp.min_samples_split < 2)
        return cli_fail("surrogate: need 0 < --split < 1, --grid >= 1, --threads >= 1, "
                        "--depth >= 0, --min-leaf >= 1, --min-split >= 2"), 2;
    return -1;
}

/* splitmix64: the training/held-out split. */
static uint64_t mix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* train[i] = 1 for round(split * n) rows chosen by a seeded shuffle. */
static void make_split(size_t n, double split, uint64_t seed, uint8_t *train)
{
    size_t *perm = malloc(n * sizeof *perm);
    size_t n_train = (size_t)llround(split * (double)n);
    if (n_train < 1)
        n_train = 1;
    for (size_t i = 0; perm && i < n; i++)
        perm[i] = i;
    for (size_t i = n; perm && i > 1; i--) {
        size_t j = (size_t)(mix(&seed) % i), t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
    memset(train, 0, n);
    for (size_t i = 0; i < n_train && i < n; i++)
        train[perm ? perm[i] : i] = 1;
    free(perm);
}

typedef struct sg_state {
    cd_model *m;
    cd_explainer *e;
    cd_tensor *x, *feat;
    int *labels, *pred, k;
    size_t n;
    uint8_t *train;
    const char *layer_used;
    surrogate_def def;
    /* metrics */
    size_t n_train, n_test;
    double fid_train, fid_test, acc_tree_test, acc_model_test;
} sg_state;

static void sg_free(sg_state *s)
{
    cd_explainer_free(s->e);
    cd_tensor_free(s->x);
    cd_tensor_free(s->feat);
    free(s->labels);
    free(s->pred);
    free(s->train);
    surrogate_free(&s->def);
    cd_model_free(s->m);
}

static cd_status compute(const sg_args *a, sg_state *s, cd_error *err)
{
    cd_status st = interp_open(a->model, a->threads, 32, a->data, a->labels, "surrogate", &s->m,
                               &s->e, &s->x, &s->labels, err);
    if (st)
        return st;
    s->n = (size_t)cd_tensor_dims(s->x)[0];
    s->pred = malloc(s->n * sizeof *s->pred);
    s->train = malloc(s->n);
    if (!s->pred || !s->train)
        return cli_set_error(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    fprintf(stderr, "surrogate: running the model on %zu rows\n", s->n);
    if ((st = cd_explain_scores(s->e, s->x, NULL, NULL, s->pred, err)))
        return st;
    fprintf(stderr, "surrogate: computing %s features\n",
            a->kind == CD_SURROGATE_GRID ? "grid" : "pooled");
    st = cd_surrogate_features(s->e, s->x, a->kind, a->layer, a->grid, &s->feat, &s->layer_used,
                               err);
    if (st)
        return st;
    /* Classes covering both the model's predictions and the labels. */
    int kp = interp_class_count(s->m, s->pred, s->n);
    int kl = interp_class_count(s->m, s->labels, s->n);
    s->k = kp > kl ? kp : kl;
    make_split(s->n, a->split, a->seed, s->train);
    return CD_OK;
}

static cd_status fit(const sg_args *a, sg_state *s, cd_error *err)
{
    int F = (int)cd_tensor_dims(s->feat)[1];
    const float *X = cd_tensor_cdata(s->feat);
    float *Xt = malloc(s->n * (size_t)F * sizeof *Xt);
    int *yt = malloc(s->n * sizeof *yt);
    if (!Xt || !yt) {
        free(Xt);
        free(yt);
        return cli_set_error(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    }
    size_t m = 0;
    for (size_t i = 0; i < s->n; i++)
        if (s->train[i]) {
            memcpy(Xt + m * (size_t)F, X + i * (size_t)F, (size_t)F * sizeof *Xt);
            yt[m++] = s->pred[i];
        }
    fprintf(stderr, "surrogate: fitting a tree on %zu rows x %d features\n", m, F);
    cd_status st = cd_tree_fit(Xt, m, F, yt, s->k, &a->tp, &s->def.tree, err);
    free(Xt);
    free(yt);
    if (st)
        return st;
    s->def.kind = a->kind;
    s->def.grid = a->grid;
    s->def.layer = s->layer_used ? strdup(s->layer_used) : NULL;
    s->def.n_features = F;
    s->def.names = calloc((size_t)F, sizeof *s->def.names);
    const int64_t *xd = cd_tensor_dims(s->x);
    for (int f = 0; s->def.names && f < F; f++)
        s->def.names[f] = surrogate_feature_name(a->kind, s->layer_used, a->grid, (int)xd[2],
                                                 (int)xd[3], f);
    size_t ft = 0, fh = 0, at = 0, am = 0;
    for (size_t i = 0; i < s->n; i++) {
        int t = cd_tree_predict(s->def.tree, X + i * (size_t)F);
        if (s->train[i]) {
            s->n_train++;
            ft += t == s->pred[i];
        } else {
            s->n_test++;
            fh += t == s->pred[i];
            at += t == s->labels[i];
            am += s->pred[i] == s->labels[i];
        }
    }
    s->fid_train = s->n_train ? (double)ft / (double)s->n_train : NAN;
    s->fid_test = s->n_test ? (double)fh / (double)s->n_test : NAN;
    s->acc_tree_test = s->n_test ? (double)at / (double)s->n_test : NAN;
    s->acc_model_test = s->n_test ? (double)am / (double)s->n_test : NAN;
    return CD_OK;
}

/* One rule per leaf, in node order: JSON array and text lines. */
static cJSON *rules(const sg_state *s, char **text)
{
    const cd_tree *t = s->def.tree;
    cJSON *arr = cJSON_CreateArray();
    size_t cap = 4096, len = 0;
    *text = malloc(cap);
    if (*text)
        (*text)[0] = 0;
    for (int i = 0; i < t->n_nodes; i++) {
        const cd_tree_node *nd = &t->nodes[i];
        if (nd->feature >= 0)
            continue;
        char buf[32];
        const char *lab = cli_label(s->m, nd->klass, buf, sizeof buf);
        double purity = nd->n_samples ? t->counts[(size_t)i * (size_t)t->n_classes +
                                                  (size_t)nd->klass] / (double)nd->n_samples
                                      : 0;
        char *cond = surrogate_rule_text(&s->def, i);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "leaf", i);
        cJSON_AddNumberToObject(o, "class", nd->klass);
        cJSON_AddStringToObject(o, "label", lab);
        cJSON_AddNumberToObject(o, "samples", (double)nd->n_samples);
        cJSON_AddNumberToObject(o, "purity", purity);
        cJSON_AddItemToObject(o, "conditions", surrogate_rule_json(&s->def, i));
        cJSON_AddStringToObject(o, "text", cond ? cond : "");
        cJSON_AddItemToArray(arr, o);
        size_t need = (cond ? strlen(cond) : 0) + strlen(lab) + 128;
        if (*text && len + need >= cap) {
            cap = (cap + need) * 2;
            char *g = realloc(*text, cap);
            if (!g) {
                free(*text);
                *text = NULL;
            }
            *text = g;
        }
        if (*text)
            len += (size_t)snprintf(*text + len, cap - len,
                                    "leaf %d: IF %s THEN %s  [%lld training rows, purity %.3f]\n",
                                    i, cond ? cond : "?", lab, (long long)nd->n_samples, purity);
        free(cond);
    }
    return arr;
}

static cJSON *report(const sg_args *a, const sg_state *s, char **text)
{
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "model", a->model);
    cJSON_AddStringToObject(r, "data", a->data);
    cJSON_AddStringToObject(r, "target", "the model's top class (argmax of its output)");
    cJSON *fe = cJSON_AddObjectToObject(r, "features");
    cJSON_AddStringToObject(fe, "kind", a->kind == CD_SURROGATE_GRID ? "grid" : "pooled");
    if (a->kind == CD_SURROGATE_GRID) {
        cJSON_AddNumberToObject(fe, "grid", a->grid);
        cJSON_AddStringToObject(fe, "definition", "mean model-input value (all channels) per "
                                "cell of a G x G grid, rows [i H/G, (i+1) H/G)");
    } else {
        cJSON_AddStringToObject(fe, "layer", s->layer_used);
        cJSON_AddStringToObject(fe, "definition", "mean over positions of each channel");
    }
    cJSON_AddItemToObject(fe, "names", cJSON_CreateStringArray((const char *const *)s->def.names,
                                                               s->def.n_features));
    cJSON *se = cJSON_AddObjectToObject(r, "settings");
    cJSON_AddStringToObject(se, "criterion", "gini");
    cJSON_AddNumberToObject(se, "max_depth", a->tp.max_depth);
    cJSON_AddNumberToObject(se, "min_samples_leaf", a->tp.min_samples_leaf);
    cJSON_AddNumberToObject(se, "min_samples_split", a->tp.min_samples_split);
    cJSON_AddNumberToObject(se, "split", a->split);
    cJSON_AddNumberToObject(se, "seed", (double)a->seed);
    cJSON_AddNumberToObject(r, "n_train", (double)s->n_train);
    cJSON_AddNumberToObject(r, "n_test", (double)s->n_test);
    cJSON *fi = cJSON_AddObjectToObject(r, "fidelity");
    cJSON_AddNumberToObject(fi, "train", s->fid_train);
    cJSON_AddNumberToObject(fi, "test", s->fid_test);
    cJSON *ac = cJSON_AddObjectToObject(r, "accuracy");
    cJSON_AddNumberToObject(ac, "tree_test", s->acc_tree_test);
    cJSON_AddNumberToObject(ac, "model_test", s->acc_model_test);
    cJSON_AddItemToObject(r, "rules", rules(s, text));
    cJSON *tr = cJSON_AddObjectToObject(r, "tree");
    cJSON_AddNumberToObject(tr, "classes", s->k);
    cJSON_AddNumberToObject(tr, "n_leaves", 0);
    int leaves = 0;
    for (int i = 0; i < s->def.tree->n_nodes; i++)
        leaves += s->def.tree->nodes[i].feature < 0;
    cJSON_SetNumberValue(cJSON_GetObjectItem(tr, "n_leaves"), leaves);
    cJSON_AddItemToObject(tr, "nodes", surrogate_tree_json(s->def.tree));
    return r;
}

static cd_status save_int_npy(const char *path, const int *v, const uint8_t *u, size_t n,
                              cd_error *err)
{
    int64_t dims[1] = {(int64_t)n};
    cd_tensor *t = NULL;
    cd_status st = cd_tensor_create(CD_INT64, 1, dims, &t, err);
    for (size_t i = 0; !st && i < n; i++)
        ((int64_t *)cd_tensor_data(t))[i] = v ? v[i] : u[i];
    if (!st)
        st = cd_npy_save(path, t, err);
    cd_tensor_free(t);
    return st;
}

static cd_status write_outputs(const sg_args *a, const sg_state *s, const cJSON *doc,
                               const char *text, cd_error *err)
{
    char p[4096];
    cd_status st = interp_make_dir(a->outdir, err);
    if (!st)
        st = interp_write_json(interp_path(p, sizeof p, a->outdir, "surrogate.json"), doc, err);
    if (!st)
        st = interp_write_text(interp_path(p, sizeof p, a->outdir, "rules.txt"), text, err);
    if (!st)
        st = cd_npy_save(interp_path(p, sizeof p, a->outdir, "features.npy"), s->feat, err);
    if (!st)
        st = save_int_npy(interp_path(p, sizeof p, a->outdir, "predictions.npy"), s->pred, NULL,
                          s->n, err);
    if (!st)
        st = save_int_npy(interp_path(p, sizeof p, a->outdir, "labels.npy"), s->labels, NULL,
                          s->n, err);
    if (!st)
        st = save_int_npy(interp_path(p, sizeof p, a->outdir, "train.npy"), NULL, s->train,
                          s->n, err);
    return st;
}

int cmd_surrogate(int argc, char **argv)
{
    sg_args a;
    int rc = parse(argc, argv, &a);
    if (rc >= 0)
        return rc;
    sg_state s;
    memset(&s, 0, sizeof s);
    cd_error err;
    cd_status st = compute(&a, &s, &err);
    if (!st)
        st = fit(&a, &s, &err);
    char *text = NULL;
    cJSON *doc = st ? NULL : report(&a, &s, &text);
    if (!st && (!doc || !text))
        st = cli_set_error(&err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    if (!st)
        st = write_outputs(&a, &s, doc, text, &err);
    if (!st && a.json) {
        char *out = cJSON_Print(doc);
        printf("%s\n", out ? out : "{}");
        free(out);
    } else if (!st) {
        printf("surrogate tree (%d nodes) over %d %s features; fidelity train %.4f, held-out "
               "%.4f (%zu rows); held-out accuracy: tree %.4f, model %.4f\n%s",
               s.def.tree->n_nodes, s.def.n_features,
               a.kind == CD_SURROGATE_GRID ? "grid" : "pooled", s.fid_train, s.fid_test,
               s.n_test, s.acc_tree_test, s.acc_model_test, text);
    }
    free(text);
    cJSON_Delete(doc);
    sg_free(&s);
    return st ? cli_fail_err("surrogate", &err) : 0;
}
