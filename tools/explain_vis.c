/* candor explain --method featuremaps | maximize: the two explanation methods
 * that look at what the network represents rather than at one decision.
 *   candor explain MODEL INPUT... --method featuremaps --layer NAME [--top N] -o DIR
 *   candor explain MODEL --method maximize (--target C | --channel LAYER:C) -o DIR */
#include "explain_vis.h"

#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "candor/explain.h"
#include "inputs.h"
#include "interp_util.h"
#include "cli_util.h"

static void help_featuremaps(FILE *f)
{
    fprintf(f,
"usage: candor explain MODEL INPUT... --method featuremaps --layer NAME [--top N] -o DIR\n\n"
"Feature maps: the activations of one layer (any 4-D, 3-D or 2-D tensor of the graph)\n"
"for each input, its channels ranked by mean activation.\n\n"
"options:\n"
"  --layer NAME      tensor to show (the message for an unknown name lists candidates)\n"
"  --top N           show the N most active channels (16; 0 = all)\n"
"  --cell PX         each channel drawn at least PX pixels wide (64)\n"
"  --threads N       threads (default: all cores)\n"
"  -o, --outdir DIR  writes per input NAME.featuremaps.png (grid: channel index above\n"
"                    each map, one shared viridis scale, bar labelled max/min),\n"
"                    NAME.featuremaps.npy (the raw (1, C, ...) tensor, as\n"
"                    `candor run --output LAYER=FILE` gives it) and NAME.featuremaps.json\n"
"  -h, --help        this help\n");
}

static void help_maximize(FILE *f)
{
    fprintf(f,
"usage: candor explain MODEL --method maximize (--target CLASS | --channel LAYER:C) -o DIR\n\n"
"Activation maximisation: gradient ascent on the input from seeded noise for a class's\n"
"pre-softmax score or a channel's mean activation (docs/interpretability.md).\n\n"
"options:\n"
"  --target CLASS    class whose pre-softmax score is maximised\n"
"  --channel L:C     maximise the mean of channel C of tensor L instead\n"
"  --steps S         ascent steps (200)\n"
"  --lr LR           step length in model-input units along g/rms(g) (0.05)\n"
"  --l2 D            L2 decay: x *= 1 - D after each step (0.002)\n"
"  --jitter J        random circular shift of up to J pixels per step (2)\n"
"  --blur S          Gaussian blur sigma in pixels (0.5; 0 = off)\n"
"  --blur-every K    blur every K steps (4)\n"
"  --init-std S      start: N(0, S^2) noise in model-input space (0.1)\n"
"  --no-clip         do not clip to the input range the preprocessing allows\n"
"  --seed S          seed for the start noise and the jitter (0)\n"
"  --threads N       threads (default: all cores)\n"
"  -o, --outdir DIR  writes maximize.NAME.{png,npy,json}: the image (pixels), the raw\n"
"                    input tensor and the score trajectory\n"
"  -h, --help        this help\n");
}

/* ------------------------------------------------------------ arguments */

typedef struct vis_args {
    const char *layer, *outdir;
    int top, cell, threads;
    cd_maximize_params mp;
    bool have_target;
    char channel_layer[256];
} vis_args;

enum { V_LAYER = 300, V_TOP, V_CELL, V_THREADS, V_TARGET, V_CHANNEL, V_STEPS, V_LR, V_L2,
       V_JITTER, V_BLUR, V_BLUR_EVERY, V_INIT, V_NOCLIP, V_SEED, V_METHOD };

static bool parse_channel(const char *v, vis_args *a)
{
    const char *colon = strrchr(v, ':');
    if (!colon || colon == v || (size_t)(colon - v) >= sizeof a->channel_layer)
        return false;
    memcpy(a->channel_layer, v, (size_t)(colon - v));
    a->channel_layer[colon - v] = '\0';
    a->mp.layer = a->channel_layer;
    return cli_parse_int(colon + 1, 0, 1 << 30, &a->mp.channel);
}

static bool apply(int c, const char *v, void *ctx)
{
    vis_args *a = ctx;
    cd_maximize_params *p = &a->mp;
    switch (c) {
    case V_LAYER: a->layer = v; return true;
    case V_TOP: return cli_parse_int(v, 0, 1 << 20, &a->top);
    case V_CELL: return cli_parse_int(v, 1, 1024, &a->cell);
    case V_THREADS: return cli_parse_int(v, 1, 1024, &a->threads);
    case V_TARGET: a->have_target = true; return cli_parse_int(v, 0, 1 << 30, &p->target);
    case V_CHANNEL: return parse_channel(v, a);
    case V_STEPS: return cli_parse_int(v, 1, 1000000, &p->steps);
    case V_LR: return cli_parse_float(v, 0, &p->lr) && p->lr > 0;
    case V_L2: return cli_parse_float(v, 0, &p->l2_decay) && p->l2_decay < 1;
    case V_JITTER: return cli_parse_int(v, 0, 1 << 16, &p->jitter);
    case V_BLUR: return cli_parse_float(v, 0, &p->blur_sigma);
    case V_BLUR_EVERY: return cli_parse_int(v, 1, 1 << 20, &p->blur_every);
    case V_INIT: return cli_parse_float(v, 0, &p->init_std);
    case V_NOCLIP: p->clip = false; return true;
    case V_SEED: p->seed = strtoull(v, NULL, 10); return true;
    case 'o': a->outdir = v; return true;
    case V_METHOD: return true;
    default: return false;
    }
}

/* 0 parsed, 1 after --help, 2 usage error. */
static int parse(int argc, char **argv, bool maximize, vis_args *a)
{
    static const struct option opts[] = {
        {"layer", required_argument, 0, V_LAYER},     {"top", required_argument, 0, V_TOP},
        {"cell", required_argument, 0, V_CELL},       {"threads", required_argument, 0, V_THREADS},
        {"target", required_argument, 0, V_TARGET},   {"channel", required_argument, 0, V_CHANNEL},
        {"steps", required_argument, 0, V_STEPS},     {"lr", required_argument, 0, V_LR},
        {"l2", required_argument, 0, V_L2},           {"jitter", required_argument, 0, V_JITTER},
        {"blur", required_argument, 0, V_BLUR},       {"blur-every", required_argument, 0, V_BLUR_EVERY},
        {"init-std", required_argument, 0, V_INIT},   {"no-clip", no_argument, 0, V_NOCLIP},
        {"seed", required_argument, 0, V_SEED},       {"method", required_argument, 0, V_METHOD},
        {"outdir", required_argument, 0, 'o'},        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    void (*help)(FILE *) = maximize ? help_maximize : help_featuremaps;
    a->top = 16;
    a->threads = 0; /* all cores */
    cd_maximize_params_default(&a->mp);
    int rc = cli_apply_options(argc, argv, opts, "explain", help, apply, a);
    if (rc)
        return rc;
    const char *bad = !a->outdir ? "needs -o OUTDIR"
                      : maximize && a->have_target == (a->mp.layer != NULL)
                          ? "maximize needs exactly one of --target CLASS or --channel LAYER:C"
                      : maximize && argc - optind != 1 ? "maximize takes MODEL only (no INPUT)"
                      : !maximize && !a->layer         ? "featuremaps needs --layer NAME"
                      : !maximize && argc - optind < 2 ? "featuremaps needs MODEL INPUT..."
                                                       : NULL;
    if (bad) {
        cli_fail("explain: %s", bad);
        return 2;
    }
    return 0;
}

/* ------------------------------------------------------------ featuremaps */

typedef struct fm_json {
    const char *input, *layer;
    const cd_feature_maps *fm;
} fm_json;

static void write_fm_json(FILE *f, const void *vctx)
{
    const fm_json *j = vctx;
    const cd_feature_maps *fm = j->fm;
    const int64_t *d = cd_tensor_dims(fm->tensor);
    fprintf(f, "{\"method\":\"featuremaps\",\"input\":");
    cli_json_str(f, j->input);
    fprintf(f, ",\"layer\":");
    cli_json_str(f, j->layer);
    fprintf(f, ",\"shape\":[");
    for (int i = 0; i < cd_tensor_ndim(fm->tensor); i++)
        fprintf(f, "%s%lld", i ? "," : "", (long long)d[i]);
    fprintf(f, "],\"ranking\":\"mean activation over positions, descending\",\"top\":[");
    for (int i = 0; i < fm->n_top; i++) {
        fprintf(f, "%s{\"channel\":%d,\"mean\":", i ? "," : "", fm->channels[i]);
        cli_json_num(f, fm->means[i]);
        fputc('}', f);
    }
    fprintf(f, "],\"color_scale\":{\"colormap\":\"viridis\",\"min\":");
    cli_json_num(f, fm->lo);
    fprintf(f, ",\"max\":");
    cli_json_num(f, fm->hi);
    fprintf(f, "}}\n");
}

static int featuremaps_one(const cd_model *m, const char *input, const vis_args *a)
{
    cd_error err = {0};
    cd_tensor *x = NULL;
    cd_feature_maps fm = {0};
    cd_image *img = NULL;
    char stem[256], path[4096];
    iu_stem(input, stem, sizeof stem);
    cd_status st = inputs_load_tensor(m, input, &x, &err);
    if (st == CD_OK)
        st = cd_feature_maps_compute(m, x, a->layer, a->top, a->threads, &fm, &err);
    if (st == CD_OK) {
        snprintf(path, sizeof path, "%s/%s.featuremaps.npy", a->outdir, stem);
        st = cd_npy_save(path, fm.tensor, &err);
    }
    if (st == CD_OK)
        st = cd_feature_maps_render(&fm, a->cell, &img, &err);
    if (st == CD_OK) {
        snprintf(path, sizeof path, "%s/%s.featuremaps.png", a->outdir, stem);
        st = cd_image_save_png(path, img, true, &err);
    }
    if (st == CD_OK) {
        fm_json j = {input, a->layer, &fm};
        snprintf(path, sizeof path, "%s/%s.featuremaps.json", a->outdir, stem);
        st = iu_write_file(path, write_fm_json, &j, &err);
    }
    if (st == CD_OK) {
        printf("%s: layer %s, %d channels; most active:", input, a->layer, fm.n_channels);
        for (int i = 0; i < fm.n_top && i < 8; i++)
            printf(" %d (%.3g)", fm.channels[i], fm.means[i]);
        printf("%s\n", fm.n_top > 8 ? " ..." : "");
    }
    cd_image_free(img);
    cd_feature_maps_free(&fm);
    cd_tensor_free(x);
    if (st != CD_OK) {
        fprintf(stderr, "candor explain: %s: error (%s): %s\n", input, cd_status_name(err.code),
                err.message);
        return 1;
    }
    return 0;
}

static int run_featuremaps(int argc, char **argv, const vis_args *a)
{
    cd_error err = {0};
    cd_model *m = NULL;
    if (cd_model_load(argv[0], NULL, &m, &err) != CD_OK)
        return cli_fail_err("explain", &err);
    input_list in = {0};
    int failures = 0;
    if (inputs_collect(argc - 1, argv + 1, &in) != 0 || in.count == 0)
        failures = cli_fail("explain: no inputs found");
    else if (iu_mkdir("explain", a->outdir))
        failures = 1;
    for (int i = 0; !failures && i < in.count; i++)
        failures += featuremaps_one(m, in.paths[i], a);
    inputs_free(&in);
    cd_model_free(m);
    return failures ? 1 : 0;
}

/* ------------------------------------------------------------ maximize */

typedef struct mx_json {
    const cd_model *m;
    const cd_maximize_params *p;
    const cd_maximize_result *r;
} mx_json;

static void json_series(FILE *f, const char *name, const double *v, int n)
{
    fprintf(f, ",\"%s\":[", name);
    for (int i = 0; i < n; i++) {
        if (i)
            fputc(',', f);
        cli_json_num(f, v[i]);
    }
    fputc(']', f);
}

static void write_mx_json(FILE *f, const void *vctx)
{
    const mx_json *j = vctx;
    const cd_maximize_params *p = j->p;
    fprintf(f, "{\"method\":\"maximize\",\"objective\":{");
    if (p->layer) {
        fprintf(f, "\"kind\":\"channel mean activation\",\"layer\":");
        cli_json_str(f, p->layer);
        fprintf(f, ",\"channel\":%d}", p->channel);
    } else {
        fprintf(f, "\"kind\":\"pre-softmax class score (logit)\",\"target\":%d", p->target);
        if (cd_model_label(j->m, p->target)) {
            fprintf(f, ",\"label\":");
            cli_json_str(f, cd_model_label(j->m, p->target));
        }
        fputc('}', f);
    }
    fprintf(f, ",\"settings\":{\"steps\":%d,\"lr\":%g,\"step\":\"x += lr * g / rms(g)\","
               "\"l2_decay\":%g,\"jitter\":%d,\"blur_sigma\":%g,\"blur_every\":%d,"
               "\"init\":\"N(0, %g^2) in model-input space\",\"clip\":%s,\"seed\":%llu}",
            p->steps, (double)p->lr, (double)p->l2_decay, p->jitter, (double)p->blur_sigma,
            p->blur_every, (double)p->init_std, p->clip ? "true" : "false",
            (unsigned long long)p->seed);
    fprintf(f, ",\"start_score\":");
    cli_json_num(f, j->r->start_score);
    fprintf(f, ",\"final_score\":");
    cli_json_num(f, j->r->final_score);
    fprintf(f, ",\"ratio\":");
    cli_json_num(f, j->r->ratio); /* null when the start score is <= 0 */
    json_series(f, "score", j->r->score, j->r->n_points);
    if (j->r->prob)
        json_series(f, "probability", j->r->prob, j->r->n_points);
    fprintf(f, "}\n");
}

static cd_status save_maximize(const cd_model *m, const vis_args *a, const char *base,
                               const cd_maximize_result *r, cd_error *err)
{
    char path[4096];
    cd_image *img = NULL;
    snprintf(path, sizeof path, "%s/%s.npy", a->outdir, base);
    cd_status st = cd_npy_save(path, r->image, err);
    if (st == CD_OK)
        st = iu_input_to_image(m, r->image, 0, 112, &img, err);
    if (st == CD_OK) {
        snprintf(path, sizeof path, "%s/%s.png", a->outdir, base);
        st = cd_image_save_png(path, img, true, err);
    }
    cd_image_free(img);
    mx_json j = {m, &a->mp, r};
    snprintf(path, sizeof path, "%s/%s.json", a->outdir, base);
    return st == CD_OK ? iu_write_file(path, write_mx_json, &j, err) : st;
}

static int run_maximize(char **argv, const vis_args *a)
{
    cd_error err = {0};
    cd_model *m = NULL;
    cd_explainer *e = NULL;
    cd_maximize_result r = {0};
    if (cd_model_load(argv[0], NULL, &m, &err) != CD_OK)
        return cli_fail_err("explain", &err);
    cd_explain_options eo = {.threads = a->threads, .max_batch = 1};
    char base[300], safe[256];
    if (a->mp.layer) {
        iu_safe_name(a->mp.layer, safe, sizeof safe);
        snprintf(base, sizeof base, "maximize.%s.ch%d", safe, a->mp.channel);
    } else {
        snprintf(base, sizeof base, "maximize.class%d", a->mp.target);
    }
    cd_status st = iu_mkdir("explain", a->outdir) ? CD_ERR_IO : CD_OK;
    if (st == CD_OK && (st = cd_explainer_create(m, &eo, &e, &err)) == CD_OK)
        st = cd_explain_maximize(e, &a->mp, &r, &err);
    if (st == CD_OK)
        st = save_maximize(m, a, base, &r, &err);
    if (st == CD_OK) {
        printf("maximize %s: score %.4g -> %.4g", base + 9, r.start_score, r.final_score);
        if (isfinite(r.ratio))
            printf(" (x%.1f)", r.ratio);
        else
            printf(" (start <= 0: no ratio)");
        if (r.prob)
            printf(", softmax probability %.4g -> %.4g", r.prob[0], r.prob[r.n_points - 1]);
        printf(" after %d steps\n", a->mp.steps);
    }
    cd_maximize_result_free(&r);
    cd_explainer_free(e);
    cd_model_free(m);
    if (st != CD_OK && err.code)
        return cli_fail_err("explain", &err);
    return st == CD_OK ? 0 : 1;
}

/* ------------------------------------------------------------ dispatch */

int explain_vis_dispatch(int argc, char **argv)
{
    const char *method = NULL;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--method") == 0 && i + 1 < argc)
            method = argv[i + 1];
        else if (strncmp(argv[i], "--method=", 9) == 0)
            method = argv[i] + 9;
    bool maximize = method && strcmp(method, "maximize") == 0;
    if (!method || (!maximize && strcmp(method, "featuremaps") != 0))
        return -1;
    vis_args a = {0};
    int rc = parse(argc, argv, maximize, &a);
    if (rc)
        return rc == 1 ? 0 : 2;
    return maximize ? run_maximize(argv + optind, &a)
                    : run_featuremaps(argc - optind, argv + optind, &a);
}
