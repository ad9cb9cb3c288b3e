/* candor global MODEL --data D [--layer NAME] [--concept C --random R ...] -o DIR
 * Dataset-level explanations (explain/global.c, explain/tcav.c):
 * class-average saliency, channel importance and TCAV. */
#define _POSIX_C_SOURCE 200809L
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "interp_data.h"
#include "cli_util.h"

#define MAX_CONCEPTS 16
#define MAX_TARGETS 64

static void help(FILE *f)
{
    fprintf(f,
"usage: candor global MODEL --data D [options] -o DIR\n\n"
"Explanations of the model over a whole dataset (definitions in\n"
"docs/interpretability.md). D is labelled data as for 'candor calibrate'\n"
"(class folders, CSV path,label, or .npy rows with --labels).\n\n"
"  class-average saliency  for each class k: the mean over the rows labelled k\n"
"                          of sum_c |d z_k / d x_c| (z_k the pre-softmax score)\n"
"  channel importance      for each class k and channel c of --layer: the mean\n"
"                          over rows labelled k of mean_positions |g * a|\n"
"                          (a the layer's activation, g = d z_k / d a)\n"
"  TCAV (with --concept)   Kim et al. 2018: a CAV separates the layer's\n"
"                          activations on concept vs random examples (L2\n"
"                          logistic regression); score = fraction of class-k\n"
"                          rows whose z_k grows along the CAV; a two-sided\n"
"                          Welch t-test against random-vs-random CAVs; a\n"
"                          concept is significant only when p < --alpha\n\n"
"options:\n"
"  --data D          labelled data (required)\n"
"  --labels FILE     labels for an .npy --data (.npy or text)\n"
"  --layer NAME      layer for channel importance and TCAV (default: the\n"
"                    Grad-CAM layer, see 'candor explain')\n"
"  --concept PATH    concept examples: a folder of images/.npy files or one .npy\n"
"                    array of rows (repeatable, up to 16)\n"
"  --random PATH     random (counter-)examples, same forms (needed with --concept)\n"
"  --target CLASS    TCAV class (repeatable; default: every class in the data)\n"
"  --runs R          concept runs and null runs each (default 20, at least 10)\n"
"  --subset N        examples per side per run (default min(concept, random/2))\n"
"  --l2 L            logistic-regression L2 penalty (default 0.01)\n"
"  --alpha A         significance level (default 0.05)\n"
"  --seed S          seed of the TCAV subsets (default 0)\n"
"  --top N           channels listed per class in the text ranking (default 10)\n"
"  --no-saliency     skip class-average saliency and channel importance\n"
"  --threads N       threads (default: all cores)\n"
"  --batch N         rows per forward/backward pass (default 32)\n"
"  --json            print global.json on stdout instead of the text summary\n"
"  -o, --outdir DIR  writes class_saliency.{npy,png}, channel_importance.{npy,json,txt},\n"
"                    tcav.json (with --concept) and global.json (everything)\n"
"  -h, --help        this help\n"
"Progress goes to stderr.\n");
}

typedef struct gl_args {
    const char *model, *data, *labels, *layer, *random, *outdir;
    const char *concepts[MAX_CONCEPTS];
    int n_concepts, targets[MAX_TARGETS], n_targets;
    cd_tcav_params tp;
    int top, threads, batch;
    bool saliency, json;
} gl_args;

static int parse(int argc, char **argv, gl_args *a)
{
    static const struct option opts[] = {
        {"data", required_argument, 0, 'd'},   {"labels", required_argument, 0, 'l'},
        {"layer", required_argument, 0, 'L'},  {"concept", required_argument, 0, 'c'},
        {"random", required_argument, 0, 'r'}, {"target", required_argument, 0, 'T'},
        {"runs", required_argument, 0, 'R'},   {"subset", required_argument, 0, 'n'},
        {"l2", required_argument, 0, '2'},     {"alpha", required_argument, 0, 'a'},
        {"seed", required_argument, 0, 'S'},   {"top", required_argument, 0, 'k'},
        {"no-saliency", no_argument, 0, 'N'},  {"threads", required_argument, 0, 't'},
        {"batch", required_argument, 0, 'b'},  {"json", no_argument, 0, 'j'},
        {"outdir", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    memset(a, 0, sizeof *a);
    cd_tcav_params_default(&a->tp);
    a->top = 10;
    a->threads = 0; /* all cores */
    a->batch = 32;
    a->saliency = true;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
        switch (c) {
        case 'h': help(stdout); return 0;
        case 'd': a->data = optarg; break;
        case 'l': a->labels = optarg; break;
        case 'L': a->layer = optarg; break;
        case 'c':
            if (a->n_concepts == MAX_CONCEPTS)
                return cli_fail("global: at most %d --concept", MAX_CONCEPTS), 2;
            a->concepts[a->n_concepts++] = optarg;
            break;
        case 'r': a->random = optarg; break;
        case 'T':
            if (a->n_targets == MAX_TARGETS)
                return cli_fail("global: at most %d --target", MAX_TARGETS), 2;
            a->targets[a->n_targets++] = atoi(optarg);
            break;
        case 'R': a->tp.runs = atoi(optarg); break;
        case 'n': a->tp.subset = atoi(optarg); break;
        case '2': a->tp.l2 = atof(optarg); break;
        case 'a': a->tp.alpha = atof(optarg); break;
        case 'S': a->tp.seed = strtoull(optarg, NULL, 10); break;
        case 'k': a->top = atoi(optarg); break;
        case 'N': a->saliency = false; break;
        case 't': a->threads = atoi(optarg); break;
        case 'b': a->batch = atoi(optarg); break;
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
    if (a->n_concepts && !a->random)
        return cli_fail("global: --concept needs --random examples"), 2;
    if (a->tp.runs < 10 || a->tp.subset < 0 || a->tp.l2 < 0 || !(a->tp.alpha > 0 &&
        a->tp.alpha < 1) || a->top < 1 || a->threads < 0 || a->batch < 1)
        return cli_fail("global: need --runs >= 10, --subset >= 0, --l2 >= 0, 0 < --alpha < 1, "
                        "--top, --threads and --batch >= 1"), 2;
    if (!a->saliency && !a->n_concepts)
        return cli_fail("global: nothing to do (--no-saliency without --concept)"), 2;
    a->tp.layer = a->layer;
    return -1;
}

typedef struct gl_state {
    cd_model *m;
    cd_explainer *e;
    cd_tensor *x;
    int *labels, k;
    cd_global_result g;
} gl_state;

/* Appends to a fixed buffer; *len never passes cap - 1 (text is cut). */
static void app(char *buf, size_t cap, size_t *len, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static void app(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    if (*len + 1 >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n > 0)
        *len = *len + (size_t)n < cap ? *len + (size_t)n : cap - 1;
}

/* One (H, W) plane of the (K, H, W) maps, upscaled `s` times (nearest). */
static cd_status class_plane(const cd_tensor *maps, int k, int s, cd_tensor **out, cd_error *err)
{
    const int64_t *d = cd_tensor_dims(maps);
    int64_t dims[2] = {d[1] * s, d[2] * s};
    cd_status st = cd_tensor_create(CD_FLOAT32, 2, dims, out, err);
    if (st)
        return st;
    const float *src = (const float *)cd_tensor_cdata(maps) + (size_t)k * (size_t)(d[1] * d[2]);
    float *dst = cd_tensor_data(*out);
    for (int64_t y = 0; y < dims[0]; y++)
        for (int64_t x = 0; x < dims[1]; x++)
            dst[y * dims[1] + x] = src[(y / s) * d[2] + x / s];
    return CD_OK;
}

/* Grid PNG of the classes with rows: each map min-max scaled on its own,
 * with its own scale bar, upscaled to at least 112 pixels. */
static cd_status saliency_png(const char *path, const cd_global_result *g, cd_error *err)
{
    const int64_t *d = cd_tensor_dims(g->class_saliency);
    int s = d[1] >= 112 ? 1 : (int)((112 + d[1] - 1) / d[1]);
    int shown[1024], n = 0;
    for (int k = 0; k < g->n_classes && n < 1024; k++)
        if (g->counts[k] > 0)
            shown[n++] = k;
    if (n == 0)
        return cli_set_error(err, CD_ERR_INVALID_ARGUMENT, "no class has rows");
    int cols = (int)ceil(sqrt((double)n)), rows = (n + cols - 1) / cols, gap = 6;
    cd_image *grid = NULL, *cell = NULL;
    cd_status st = CD_OK;
    for (int i = 0; !st && i < n; i++) {
        cd_tensor *plane = NULL;
        st = class_plane(g->class_saliency, shown[i], s, &plane, err);
        if (!st)
            st = cd_explain_render_heatmap(plane, true, &cell, err);
        cd_tensor_free(plane);
        if (!st && !grid) {
            st = cd_image_create(cols * (cell->width + gap), rows * (cell->height + gap), 3, &grid,
                                 err);
            for (size_t p = 0; !st && p < (size_t)grid->width * grid->height * 3; p++)
                grid->pixels[p] = 255;
        }
        int ox = (i % cols) * (cell ? cell->width + gap : 0);
        int oy = (i / cols) * (cell ? cell->height + gap : 0);
        for (int y = 0; !st && y < cell->height; y++)
            memcpy(grid->pixels + ((size_t)(oy + y) * grid->width + ox) * 3,
                   cell->pixels + (size_t)y * cell->width * 3, (size_t)cell->width * 3 * sizeof(float));
        cd_image_free(cell);
        cell = NULL;
    }
    if (!st)
        st = cd_image_save_png(path, grid, true, err);
    cd_image_free(grid);
    return st;
}

/* Channels of class k by importance, highest first (ties: lower index). */
static void rank_channels(const float *imp, int c, int *order)
{
    for (int i = 0; i < c; i++)
        order[i] = i;
    for (int i = 1; i < c; i++) { /* insertion sort: C is small */
        int v = order[i], j = i;
        while (j > 0 && imp[order[j - 1]] < imp[v]) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = v;
    }
}

static cJSON *importance_json(const gl_args *a, const gl_state *s, char **text)
{
    const cd_global_result *g = &s->g;
    int c = (int)cd_tensor_dims(g->channel_importance)[1];
    int *order = malloc((size_t)c * sizeof *order);
    size_t cap = (size_t)g->n_classes * ((size_t)a->top * 48 + 160) + 256, len = 0;
    *text = malloc(cap);
    cJSON *o = cJSON_CreateObject();
    if (!order || !*text || !o) {
        free(order);
        return o;
    }
    cJSON_AddStringToObject(o, "layer", g->layer);
    cJSON_AddStringToObject(o, "definition", "mean over the class's rows of mean over positions "
                            "of |d z_k/d a * a|");
    cJSON *classes = cJSON_AddArrayToObject(o, "classes");
    app(*text, cap, &len, "channel importance at %s "
                            "(mean |gradient x activation|), top %d per class\n", g->layer, a->top);
    for (int k = 0; k < g->n_classes; k++) {
        const float *imp = (const float *)cd_tensor_cdata(g->channel_importance) + (size_t)k * c;
        rank_channels(imp, c, order);
        char buf[32];
        cJSON *ck = cJSON_CreateObject();
        cJSON_AddNumberToObject(ck, "class", k);
        cJSON_AddStringToObject(ck, "label", cli_label(s->m, k, buf, sizeof buf));
        cJSON_AddNumberToObject(ck, "rows", (double)g->counts[k]);
        cJSON_AddItemToObject(ck, "ranking", cJSON_CreateIntArray(order, c));
        double *v = malloc((size_t)c * sizeof *v);
        for (int i = 0; v && i < c; i++)
            v[i] = imp[order[i]];
        cJSON_AddItemToObject(ck, "importance", v ? cJSON_CreateDoubleArray(v, c) : cJSON_CreateNull());
        free(v);
        cJSON_AddItemToArray(classes, ck);
        app(*text, cap, &len, "%-16s (%lld rows):",
                                cli_label(s->m, k, buf, sizeof buf), (long long)g->counts[k]);
        for (int i = 0; i < a->top && i < c && g->counts[k]; i++)
            app(*text, cap, &len, " %d:%.3g", order[i], imp[order[i]]);
        app(*text, cap, &len, "\n");
    }
    free(order);
    return o;
}

/* Rows of x labelled k as a new tensor (NULL when there are none). */
static cd_status class_rows(const gl_state *s, int k, cd_tensor **out, cd_error *err)
{
    const int64_t *d = cd_tensor_dims(s->x);
    size_t n = (size_t)d[0], rn = cd_tensor_numel(s->x) / n, m = 0;
    *out = NULL;
    for (size_t i = 0; i < n; i++)
        m += s->labels[i] == k;
    if (m == 0)
        return CD_OK;
    int64_t dims[4] = {(int64_t)m, d[1], d[2], d[3]};
    cd_status st = cd_tensor_create(CD_FLOAT32, 4, dims, out, err);
    size_t j = 0;
    for (size_t i = 0; !st && i < n; i++)
        if (s->labels[i] == k)
            memcpy((float *)cd_tensor_data(*out) + j++ * rn,
                   (const float *)cd_tensor_cdata(s->x) + i * rn, rn * sizeof(float));
    return st;
}

static cJSON *tcav_json(const gl_state *s, const char *concept, int k,
                        const cd_tcav_result *r, const cd_tcav_params *p)
{
    char buf[32];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "concept", concept);
    cJSON_AddNumberToObject(o, "class", k);
    cJSON_AddStringToObject(o, "label", cli_label(s->m, k, buf, sizeof buf));
    cJSON_AddStringToObject(o, "layer", r->layer);
    cJSON_AddNumberToObject(o, "runs", r->runs);
    cJSON_AddNumberToObject(o, "subset", r->subset);
    cJSON_AddNumberToObject(o, "score", r->score_mean);
    cJSON_AddNumberToObject(o, "score_std", r->score_std);
    cJSON_AddNumberToObject(o, "null_score", r->null_mean);
    cJSON_AddNumberToObject(o, "null_std", r->null_std);
    cJSON_AddNumberToObject(o, "t", isfinite(r->t) ? r->t : (r->t > 0 ? 1e300 : -1e300));
    cJSON_AddNumberToObject(o, "dof", r->dof);
    cJSON_AddNumberToObject(o, "p_value", r->p_value);
    cJSON_AddNumberToObject(o, "alpha", p->alpha);
    cJSON_AddBoolToObject(o, "significant", r->significant);
    cJSON_AddNumberToObject(o, "cav_accuracy", r->cav_accuracy);
    cJSON_AddItemToObject(o, "scores", cJSON_CreateDoubleArray(r->scores, r->runs));
    cJSON_AddItemToObject(o, "null_scores", cJSON_CreateDoubleArray(r->null_scores, r->runs));
    return o;
}

/* TCAV of every concept for every target class; results into arr. */
static cd_status run_tcav(const gl_args *a, gl_state *s, cJSON *arr, cd_error *err)
{
    cd_tensor *rnd = NULL;
    fprintf(stderr, "global: loading random examples %s\n", a->random);
    cd_status st = interp_load_examples(s->m, a->random, &rnd, err);
    int targets[MAX_TARGETS > 1024 ? MAX_TARGETS : 1024], nt = 0;
    if (a->n_targets) {
        memcpy(targets, a->targets, (size_t)a->n_targets * sizeof(int));
        nt = a->n_targets;
    } else {
        for (int k = 0; k < s->k && nt < 1024; k++)
            for (size_t i = 0; i < (size_t)cd_tensor_dims(s->x)[0]; i++)
                if (s->labels[i] == k) {
                    targets[nt++] = k;
                    break;
                }
    }
    for (int c = 0; !st && c < a->n_concepts; c++) {
        cd_tensor *con = NULL;
        fprintf(stderr, "global: loading concept %s\n", a->concepts[c]);
        st = interp_load_examples(s->m, a->concepts[c], &con, err);
        for (int t = 0; !st && t < nt; t++) {
            cd_tensor *rows = NULL;
            if (targets[t] < 0 || targets[t] >= s->k)
                st = cli_set_error(err, CD_ERR_INVALID_ARGUMENT, "--target %d outside the "
                                   "model's classes [0, %d)", targets[t], s->k);
            if (!st)
                st = class_rows(s, targets[t], &rows, err);
            if (!st && !rows)
                st = cli_set_error(err, CD_ERR_INVALID_ARGUMENT, "--target %d: no rows of that "
                                   "class in --data", targets[t]);
            cd_tcav_params p = a->tp;
            p.target = targets[t];
            cd_tcav_result r;
            fprintf(stderr, "global: TCAV concept %s, class %d (%d + %d runs)\n", a->concepts[c],
                    targets[t], p.runs, p.runs);
            if (!st && !(st = cd_tcav(s->e, rows, con, rnd, &p, &r, err))) {
                cJSON_AddItemToArray(arr, tcav_json(s, a->concepts[c], targets[t], &r, &p));
                cd_tcav_result_free(&r);
            }
            cd_tensor_free(rows);
        }
        cd_tensor_free(con);
    }
    cd_tensor_free(rnd);
    return st;
}

static cd_status run_saliency(const gl_args *a, gl_state *s, cJSON *doc, char **imp_text,
                              cd_error *err)
{
    char p[4096];
    fprintf(stderr, "global: class-average saliency and channel importance over %lld rows\n",
            (long long)cd_tensor_dims(s->x)[0]);
    cd_status st = cd_global_explain(s->e, s->x, s->labels, s->k, a->layer, true, &s->g, err);
    if (!st)
        st = cd_npy_save(interp_path(p, sizeof p, a->outdir, "class_saliency.npy"),
                         s->g.class_saliency, err);
    if (!st)
        st = saliency_png(interp_path(p, sizeof p, a->outdir, "class_saliency.png"), &s->g, err);
    if (!st)
        st = cd_npy_save(interp_path(p, sizeof p, a->outdir, "channel_importance.npy"),
                         s->g.channel_importance, err);
    if (st)
        return st;
    cJSON *imp = importance_json(a, s, imp_text);
    if (!*imp_text)
        return cli_set_error(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    cJSON_AddItemToObject(doc, "channel_importance", imp);
    st = interp_write_json(interp_path(p, sizeof p, a->outdir, "channel_importance.json"), imp,
                           err);
    if (!st)
        st = interp_write_text(interp_path(p, sizeof p, a->outdir, "channel_importance.txt"),
                               *imp_text, err);
    cJSON *sal = cJSON_AddObjectToObject(doc, "class_saliency");
    cJSON_AddStringToObject(sal, "definition", "mean over the class's rows of sum_c |d z_k/d x_c|");
    cJSON_AddStringToObject(sal, "npy", "class_saliency.npy");
    cJSON_AddStringToObject(sal, "png", "class_saliency.png");
    double counts[1024];
    int nk = s->k < 1024 ? s->k : 1024;
    for (int k = 0; k < nk; k++)
        counts[k] = (double)s->g.counts[k];
    cJSON_AddItemToObject(sal, "rows_per_class", cJSON_CreateDoubleArray(counts, nk));
    return st;
}

static void print_tcav(const cJSON *arr)
{
    const cJSON *o;
    cJSON_ArrayForEach(o, arr)
    {
        printf("TCAV %s, %s (class %d): score %.3f +- %.3f vs random %.3f +- %.3f, p = %.3g: %s\n",
               cJSON_GetObjectItem(o, "concept")->valuestring,
               cJSON_GetObjectItem(o, "label")->valuestring,
               cJSON_GetObjectItem(o, "class")->valueint,
               cJSON_GetObjectItem(o, "score")->valuedouble,
               cJSON_GetObjectItem(o, "score_std")->valuedouble,
               cJSON_GetObjectItem(o, "null_score")->valuedouble,
               cJSON_GetObjectItem(o, "null_std")->valuedouble,
               cJSON_GetObjectItem(o, "p_value")->valuedouble,
               cJSON_IsTrue(cJSON_GetObjectItem(o, "significant")) ? "significant"
                                                                   : "NOT significant");
    }
}

int cmd_global(int argc, char **argv)
{
    gl_args a;
    int rc = parse(argc, argv, &a);
    if (rc >= 0)
        return rc;
    gl_state s;
    memset(&s, 0, sizeof s);
    cd_error err;
    char p[4096], *imp_text = NULL;
    cJSON *doc = cJSON_CreateObject();
    cd_status st = interp_open(a.model, a.threads, a.batch, a.data, a.labels, "global", &s.m,
                               &s.e, &s.x, &s.labels, &err);
    if (!st)
        st = interp_make_dir(a.outdir, &err);
    if (!st) {
        s.k = interp_class_count(s.m, s.labels, (size_t)cd_tensor_dims(s.x)[0]);
        cJSON_AddStringToObject(doc, "model", a.model);
        cJSON_AddStringToObject(doc, "data", a.data);
        cJSON_AddNumberToObject(doc, "rows", (double)cd_tensor_dims(s.x)[0]);
        cJSON_AddNumberToObject(doc, "classes", s.k);
    }
    if (!st && a.saliency)
        st = run_saliency(&a, &s, doc, &imp_text, &err);
    cJSON *tcav = cJSON_CreateArray();
    if (!st && a.n_concepts) {
        st = run_tcav(&a, &s, tcav, &err);
        cJSON *t = cJSON_AddObjectToObject(doc, "tcav");
        cJSON_AddStringToObject(t, "classifier", "L2 logistic regression (accelerated gradient "
                                "descent) on centred, RMS-scaled activations");
        cJSON_AddStringToObject(t, "test", "two-sided Welch t-test, concept CAVs vs "
                                "random-vs-random CAVs");
        cJSON_AddNumberToObject(t, "l2", a.tp.l2);
        cJSON_AddNumberToObject(t, "seed", (double)a.tp.seed);
        cJSON_AddItemReferenceToObject(t, "results", tcav);
        if (!st)
            st = interp_write_json(interp_path(p, sizeof p, a.outdir, "tcav.json"), tcav, &err);
    }
    if (!st)
        st = interp_write_json(interp_path(p, sizeof p, a.outdir, "global.json"), doc, &err);
    if (!st && a.json) {
        char *out = cJSON_Print(doc);
        printf("%s\n", out ? out : "{}");
        free(out);
    } else if (!st) {
        if (imp_text)
            printf("%s", imp_text);
        print_tcav(tcav);
        printf("wrote %s/global.json\n", a.outdir);
    }
    free(imp_text);
    cJSON_Delete(doc);
    cJSON_Delete(tcav);
    cd_global_result_free(&s.g);
    cd_explainer_free(s.e);
    cd_tensor_free(s.x);
    free(s.labels);
    cd_model_free(s.m);
    return st ? cli_fail_err("global", &err) : 0;
}
