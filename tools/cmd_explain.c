/* candor explain MODEL INPUT... --method M [options] (-o OUTDIR | --npy FILE) */
#include <errno.h>
#include <float.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "candor/explain.h"
#include "core/atomic_file.h"
#include "explain_vis.h"
#include "inputs.h"
#include "mpi_shard.h"
#include "cli_util.h"

static void help(FILE *f)
{
    fprintf(f,
"usage: candor explain MODEL INPUT... --method METHOD [options] (-o OUTDIR | --npy FILE)\n\n"
"Saliency maps: which parts of the input drove the model's score for a class.\n"
"INPUT is an image (preprocessed as the model's sidecar says) or a .npy tensor.\n\n"
"methods (definitions in docs/explain.md):\n"
"  gradient     d(pre-softmax score of the target)/d(input), the input's shape\n"
"  gradxinput   input * gradient\n"
"  smoothgrad   mean gradient over noisy copies, sigma = noise * (max x - min x)\n"
"  ig           Integrated Gradients (completeness delta printed)\n"
"  gradcam      Grad-CAM on a 4-D layer (default: last Conv block output)\n"
"  gradcam++    Grad-CAM++ (Chattopadhay et al. 2018, eq. 19)\n"
"  occlusion    mean score drop over the windows covering each pixel\n"
"  rise         RISE random masks (Petsiuk et al. 2018)\n"
"  featuremaps  a layer's most active channels (own options: --method featuremaps --help)\n"
"  maximize     activation maximisation, no INPUT (own options: --method maximize --help)\n\n"
"options:\n"
"  --method M          one of the methods above (default gradient)\n"
"  --target CLASS      class to explain (default: the top class)\n"
"  --objective K       logit (default) | prob | logprob | entropy | sum\n"
"  --output NAME       output tensor for the objective (default: first output)\n"
"  --region R          sum a spatial output over LO:HI[,LO:HI...] (segmentation)\n"
"  --layer NAME        Grad-CAM layer (4-D tensor name)\n"
"  --samples N         SmoothGrad samples (25)\n"
"  --noise S           SmoothGrad noise level s (0.15)\n"
"  --form F            SmoothGrad form: mean | squared | vargrad (mean)\n"
"  --steps N           IG steps (32)\n"
"  --rule R            IG rule: gauss-legendre | riemann-middle (gauss-legendre)\n"
"  --baseline B        IG baseline: black | blur | FILE.npy (black)\n"
"  --window N          occlusion window (16); --stride N (8); --value V (0)\n"
"  --masks N           RISE masks (4000); --grid S (7); --p P (0.5)\n"
"  --seed S            seed for SmoothGrad noise, RISE masks, MC dropout masks and\n"
"                      the --sanity weights (0)\n"
"  --evaluate          deletion/insertion curves and AUCs\n"
"  --step N            pixels per deletion/insertion step (default ceil(HW/50))\n"
"  --blur S            blur sigma for insertion and the IG blur baseline (5)\n"
"  --alpha A           overlay opacity (0.5)\n"
"  --batch N           rows per forward/backward pass (8)\n"
"  --threads N         threads (default: all cores)\n"
"  --precision P       float32 (default) | float64: evaluate every pass in float64\n"
"                      (exact gradients at ReLU/Clip kinks; slower, docs/explain.md)\n"
"  --npy FILE          write the raw signed map of the (single) input to FILE\n"
"                      (with --mc/--ensemble: the mean map)\n"
"uncertainty (maps per MC sample / ensemble member, docs/explain.md):\n"
"  --mc T              MC dropout with T samples (graph Dropout nodes + sites)\n"
"  --dropout SITE:P[:channel]  declare a dropout site after tensor/node SITE\n"
"  --ensemble          the leading *.onnx arguments are ensemble members\n"
"  --member M          add ensemble member M (repeatable)\n"
"  --samples FILE.npy  write the per-sample maps (S, ...) of the (single) input\n"
"                      (a number instead of a file sets the SmoothGrad samples)\n"
"  writes NAME.METHOD.{mean,std}.{npy,png}, NAME.{entropy,mi}_saliency.{npy,png}\n"
"  (d H[mean p]/dx and d MI/dx through all samples) and NAME.METHOD.json\n"
"sanity check:\n"
"  --sanity            also explain a copy with the last layers' weights\n"
"                      randomised; print/store the Spearman rank correlation\n"
"  --sanity-layers K   randomise the last K parameterised nodes (1)\n"
"  -o, --outdir DIR    write NAME.METHOD.{npy,png,overlay.png,json} per input\n"
"  -h, --help          this help\n");
}

typedef struct ex_args {
    cd_explain_params p;
    cd_faithfulness_params fp;
    bool evaluate;
    float alpha;
    int batch, threads;
    const char *npy, *outdir, *baseline_path;
    char region_text[128];
    /* uncertainty */
    int mc;                     /* T; 0 = no MC dropout */
    int n_sites;
    cd_dropout_site sites[16];
    char site_names[16][256];
    bool ensemble;
    int n_members;
    const char *members[16];
    const char *samples_path;
    /* sanity check */
    bool sanity;
    int sanity_layers;
    bool float64; /* --precision float64 */
} ex_args;

/* SITE:P[:channel] into site k of a. */
static bool parse_site(const char *v, ex_args *a)
{
    if (a->n_sites >= 16)
        return false;
    int k = a->n_sites;
    snprintf(a->site_names[k], sizeof a->site_names[k], "%s", v);
    char *name = a->site_names[k], *chan = NULL, *colon = strrchr(name, ':');
    if (colon && strcmp(colon + 1, "channel") == 0) {
        chan = colon;
        *chan = '\0';
        colon = strrchr(name, ':');
    }
    if (!colon || colon == name)
        return false;
    *colon = '\0';
    char *end;
    float p = strtof(colon + 1, &end);
    if (*end || end == colon + 1 || !(p >= 0 && p < 1))
        return false;
    a->sites[k] = (cd_dropout_site){.name = name, .p = p, .channel = chan != NULL};
    a->n_sites++;
    return true;
}

static int parse_region(const char *s, cd_objective *o)
{
    int nd = 0;
    const char *q = s;
    while (*q && nd < CD_MAX_DIMS - 2) {
        char *end;
        long long lo = strtoll(q, &end, 10);
        if (*end != ':')
            return -1;
        long long hi = strtoll(end + 1, &end, 10);
        if (hi <= lo || lo < 0 || (*end && *end != ','))
            return -1;
        o->region_lo[nd] = lo;
        o->region_hi[nd++] = hi;
        q = *end ? end + 1 : end;
    }
    o->region_ndim = nd;
    return *q ? -1 : 0;
}

static int parse_enum(const char *s, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

static const char *const objective_names[] = {"logit", "prob", "logprob", "entropy", "sum"};
static const char *const form_names[] = {"mean", "squared", "vargrad"};
static const char *const rule_names[] = {"riemann-middle", "gauss-legendre"};

enum {
    OPT_TARGET = 256, OPT_OBJECTIVE, OPT_OUTPUT, OPT_REGION, OPT_LAYER, OPT_SAMPLES, OPT_NOISE,
    OPT_FORM, OPT_STEPS, OPT_RULE, OPT_BASELINE, OPT_WINDOW, OPT_STRIDE, OPT_VALUE, OPT_MASKS,
    OPT_GRID, OPT_P, OPT_SEED, OPT_EVALUATE, OPT_STEP, OPT_BLUR, OPT_ALPHA, OPT_BATCH,
    OPT_THREADS, OPT_NPY, OPT_METHOD, OPT_MC, OPT_DROPOUT, OPT_ENSEMBLE, OPT_MEMBER,
    OPT_SANITY, OPT_SANITY_LAYERS, OPT_PRECISION
};

/* Applies one option; returns false with a message on a bad value. */
static bool apply_option(int c, const char *v, void *ctx)
{
    ex_args *a = ctx;
    cd_explain_params *p = &a->p;
    int k;
    switch (c) {
    case OPT_TARGET: return cli_parse_int(v, 0, 1 << 30, &p->objective.target);
    case OPT_OBJECTIVE:
        k = parse_enum(v, objective_names, 5);
        p->objective.kind = (cd_objective_kind)k;
        return k >= 0;
    case OPT_OUTPUT: p->objective.output = v; return true;
    case OPT_REGION:
        snprintf(a->region_text, sizeof a->region_text, "%s", v);
        return parse_region(v, &p->objective) == 0;
    case OPT_LAYER: p->layer = v; return true;
    case OPT_SAMPLES:
        if (cli_parse_int(v, 1, 100000, &p->samples))
            return true;
        a->samples_path = v; /* not a number: the per-sample maps file */
        return strlen(v) > 4 && strcmp(v + strlen(v) - 4, ".npy") == 0;
    case OPT_MC: return cli_parse_int(v, 1, 100000, &a->mc);
    case OPT_DROPOUT: return parse_site(v, a);
    case OPT_ENSEMBLE: a->ensemble = true; return true;
    case OPT_MEMBER:
        if (a->n_members >= 16)
            return false;
        a->members[a->n_members++] = v;
        return true;
    case OPT_SANITY: a->sanity = true; return true;
    case OPT_SANITY_LAYERS: return cli_parse_int(v, 1, 100000, &a->sanity_layers);
    case OPT_NOISE: return cli_parse_float(v, -FLT_MAX, &p->noise_level) && p->noise_level >= 0;
    case OPT_FORM:
        k = parse_enum(v, form_names, 3);
        p->smoothgrad_form = (cd_smoothgrad_form)k;
        return k >= 0;
    case OPT_STEPS: return cli_parse_int(v, 1, 4096, &p->steps);
    case OPT_RULE:
        k = parse_enum(v, rule_names, 2);
        p->ig_rule = (cd_ig_rule)k;
        return k >= 0;
    case OPT_BASELINE:
        if (strcmp(v, "black") == 0)
            p->baseline = CD_BASELINE_BLACK;
        else if (strcmp(v, "blur") == 0)
            p->baseline = CD_BASELINE_BLUR;
        else
            p->baseline = CD_BASELINE_CUSTOM, a->baseline_path = v;
        return true;
    case OPT_WINDOW: return cli_parse_int(v, 1, 1 << 20, &p->window);
    case OPT_STRIDE: return cli_parse_int(v, 1, 1 << 20, &p->stride);
    case OPT_VALUE: return cli_parse_float(v, -FLT_MAX, &p->occlusion_value);
    case OPT_MASKS: return cli_parse_int(v, 1, 10000000, &p->rise_masks);
    case OPT_GRID: return cli_parse_int(v, 1, 1024, &p->rise_grid);
    case OPT_P: return cli_parse_float(v, -FLT_MAX, &p->rise_p) && p->rise_p > 0 && p->rise_p <= 1;
    case OPT_SEED: p->seed = strtoull(v, NULL, 10); return true;
    case OPT_EVALUATE: a->evaluate = true; return true;
    case OPT_STEP: return cli_parse_int(v, 1, 1 << 30, &a->fp.step);
    case OPT_BLUR:
        if (!cli_parse_float(v, -FLT_MAX, &a->fp.blur_sigma) || a->fp.blur_sigma < 0)
            return false;
        p->blur_sigma = a->fp.blur_sigma;
        return true;
    case OPT_ALPHA: return cli_parse_float(v, -FLT_MAX, &a->alpha) && a->alpha >= 0 && a->alpha <= 1;
    case OPT_BATCH: return cli_parse_int(v, 1, 4096, &a->batch);
    case OPT_THREADS: return cli_parse_int(v, 1, 1024, &a->threads);
    case OPT_PRECISION:
        if (strcmp(v, "float32") && strcmp(v, "float64"))
            return false;
        a->float64 = strcmp(v, "float64") == 0;
        return true;
    case OPT_NPY: a->npy = v; return true;
    case 'o': a->outdir = v; return true;
    case OPT_METHOD: return true; /* read before the loop: it sets the defaults */
    default: return false;
    }
}

/* Returns 0 when parsed, 1 after --help, 2 on a usage error. */
static int parse_args(int argc, char **argv, ex_args *a)
{
    static const struct option opts[] = {
        {"method", required_argument, 0, OPT_METHOD},   {"target", required_argument, 0, OPT_TARGET},
        {"objective", required_argument, 0, OPT_OBJECTIVE}, {"output", required_argument, 0, OPT_OUTPUT},
        {"region", required_argument, 0, OPT_REGION},   {"layer", required_argument, 0, OPT_LAYER},
        {"samples", required_argument, 0, OPT_SAMPLES}, {"noise", required_argument, 0, OPT_NOISE},
        {"form", required_argument, 0, OPT_FORM},       {"steps", required_argument, 0, OPT_STEPS},
        {"rule", required_argument, 0, OPT_RULE},       {"baseline", required_argument, 0, OPT_BASELINE},
        {"window", required_argument, 0, OPT_WINDOW},   {"stride", required_argument, 0, OPT_STRIDE},
        {"value", required_argument, 0, OPT_VALUE},     {"masks", required_argument, 0, OPT_MASKS},
        {"grid", required_argument, 0, OPT_GRID},       {"p", required_argument, 0, OPT_P},
        {"seed", required_argument, 0, OPT_SEED},       {"evaluate", no_argument, 0, OPT_EVALUATE},
        {"step", required_argument, 0, OPT_STEP},       {"blur", required_argument, 0, OPT_BLUR},
        {"alpha", required_argument, 0, OPT_ALPHA},     {"batch", required_argument, 0, OPT_BATCH},
        {"threads", required_argument, 0, OPT_THREADS}, {"npy", required_argument, 0, OPT_NPY},
        {"outdir", required_argument, 0, 'o'},          {"help", no_argument, 0, 'h'},
        {"mc", required_argument, 0, OPT_MC},           {"dropout", required_argument, 0, OPT_DROPOUT},
        {"ensemble", no_argument, 0, OPT_ENSEMBLE},     {"member", required_argument, 0, OPT_MEMBER},
        {"sanity", no_argument, 0, OPT_SANITY},
        {"sanity-layers", required_argument, 0, OPT_SANITY_LAYERS},
        {"precision", required_argument, 0, OPT_PRECISION},
        {0, 0, 0, 0}};
    /* First pass finds the method, whose defaults the other options refine. */
    int method = CD_EXPLAIN_GRADIENT;
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--method") == 0)
            method = cd_explain_method_parse(argv[i + 1]);
        else if (strncmp(argv[i], "--method=", 9) == 0)
            method = cd_explain_method_parse(argv[i] + 9);
    if (method < 0) {
        cli_fail("explain: unknown --method (gradient, gradxinput, smoothgrad, ig, gradcam, "
                 "gradcam++, occlusion, rise)");
        return 2;
    }
    cd_explain_params_default(&a->p, (cd_explain_method)method);
    cd_faithfulness_params_default(&a->fp);
    a->alpha = 0.5f;
    a->sanity_layers = 1;
    int rc = cli_apply_options(argc, argv, opts, "explain", help, apply_option, a);
    if (rc)
        return rc;
    if (argc - optind < 2 || (!a->npy && !a->outdir)) {
        cli_fail("explain: need MODEL INPUT and at least one of -o OUTDIR or --npy FILE");
        return 2;
    }
    bool uncertain = a->mc || a->ensemble || a->n_members;
    const char *bad = a->n_sites && !a->mc        ? "--dropout needs --mc T"
                      : a->samples_path && !uncertain ? "--samples FILE.npy needs --mc or an ensemble"
                      : a->sanity && uncertain      ? "--sanity does not combine with --mc/--ensemble"
                      : a->evaluate && uncertain    ? "--evaluate does not combine with --mc/--ensemble"
                                                    : NULL;
    if (bad) {
        cli_fail("explain: %s", bad);
        return 2;
    }
    return 0;
}

/* ------------------------------------------------------------ outputs */

/* Region and sum objectives (segmentation, regression) have no class
 * probability: their deletion/insertion curves record the objective itself. */
static bool custom_curve_score(const ex_args *a)
{
    return a->p.objective.region_ndim > 0 || a->p.objective.kind == CD_OBJECTIVE_SUM;
}

static void json_settings(FILE *f, const ex_args *a, const cd_explanation *ex)
{
    const cd_explain_params *p = &a->p;
    fprintf(f, "\"settings\":{\"precision\":\"%s\",\"objective\":",
            a->float64 ? "float64" : "float32");
    cli_json_str(f, objective_names[p->objective.kind]);
    if (p->objective.region_ndim)
        fprintf(f, ",\"region\":\"%s\"", a->region_text);
    switch (p->method) {
    case CD_EXPLAIN_SMOOTHGRAD:
        fprintf(f, ",\"samples\":%d,\"noise_level\":%g,\"form\":\"%s\",\"seed\":%llu", p->samples,
                p->noise_level, form_names[p->smoothgrad_form], (unsigned long long)p->seed);
        break;
    case CD_EXPLAIN_IG:
        fprintf(f, ",\"steps\":%d,\"rule\":\"%s\",\"baseline\":", p->steps, rule_names[p->ig_rule]);
        cli_json_str(f, p->baseline == CD_BASELINE_BLACK  ? "black"
                    : p->baseline == CD_BASELINE_BLUR ? "blur"
                                                      : a->baseline_path);
        fprintf(f, ",\"blur_sigma\":%g,\"baseline_score\":", p->blur_sigma);
        cli_json_num(f, ex->baseline_score);
        fprintf(f, ",\"completeness_delta\":");
        cli_json_num(f, ex->completeness_delta);
        break;
    case CD_EXPLAIN_GRADCAM:
    case CD_EXPLAIN_GRADCAM_PP:
        fprintf(f, ",\"layer\":");
        cli_json_str(f, ex->layer);
        fprintf(f, ",\"variant\":\"%s\"", p->method == CD_EXPLAIN_GRADCAM
                                              ? "Grad-CAM (Selvaraju et al. 2017)"
                                              : "Grad-CAM++ (Chattopadhay et al. 2018, eq. 19)");
        break;
    case CD_EXPLAIN_OCCLUSION:
        fprintf(f, ",\"window\":%d,\"stride\":%d,\"value\":%g", p->window, p->stride,
                p->occlusion_value);
        break;
    case CD_EXPLAIN_RISE:
        fprintf(f, ",\"masks\":%d,\"grid\":%d,\"p\":%g,\"seed\":%llu", p->rise_masks,
                p->rise_grid, p->rise_p, (unsigned long long)p->seed);
        break;
    default: break;
    }
    fprintf(f, ",\"batch\":%d}", a->batch);
}

static void json_curve(FILE *f, const char *name, const double *v, int n)
{
    fprintf(f, ",\"%s\":[", name);
    for (int i = 0; i <= n; i++) {
        if (i)
            fputc(',', f);
        cli_json_num(f, v[i]);
    }
    fputc(']', f);
}

static void json_sanity(FILE *f, const ex_args *a, const cd_sanity_result *san)
{
    fprintf(f, ",\"sanity\":{\"test\":\"model randomisation (Adebayo et al. 2018)\","
               "\"randomised_layers\":%d,\"nodes\":", san->n_layers);
    cli_json_str(f, san->layers);
    fprintf(f, ",\"weights\":\"N(0, std of the original tensor^2)\",\"seed\":%llu,"
               "\"compared\":\"2-D saliency\",\"spearman\":",
            (unsigned long long)a->p.seed);
    cli_json_num(f, san->spearman);
    fputc('}', f);
}

static cd_status write_json(const char *path, const char *input, const ex_args *a,
                            const cd_explanation *ex, const cd_faithfulness *fa,
                            const cd_sanity_result *san, cd_error *err)
{
    cd_atomic_file *af = NULL;
    cd_status st = cd_atomic_open(path, true, &af, err);
    if (st != CD_OK)
        return st;
    FILE *f = cd_atomic_stream(af);
    fprintf(f, "{\"input\":");
    cli_json_str(f, input);
    fprintf(f, ",\"method\":\"%s\",\"target\":%d,\"score\":", cd_explain_method_name(a->p.method),
            ex->target);
    cli_json_num(f, ex->score);
    fputc(',', f);
    json_settings(f, a, ex);
    if (fa && fa->deletion) {
        fprintf(f, ",\"faithfulness\":{\"step\":%d,\"n_steps\":%d,\"deletion_value\":%g,"
                   "\"insertion_blur_sigma\":%g,\"score\":\"%s\",\"deletion_auc\":",
                fa->step, fa->n_steps, a->fp.deletion_value, a->fp.blur_sigma,
                custom_curve_score(a) ? "the explained objective"
                                      : "softmax probability of the target");
        cli_json_num(f, fa->deletion_auc);
        fprintf(f, ",\"insertion_auc\":");
        cli_json_num(f, fa->insertion_auc);
        json_curve(f, "deletion", fa->deletion, fa->n_steps);
        json_curve(f, "insertion", fa->insertion, fa->n_steps);
        fputc('}', f);
    }
    if (san && san->random_map)
        json_sanity(f, a, san);
    fprintf(f, "}\n");
    return cd_atomic_commit(af, err);
}

/* The model's view of the input as a displayable image: the inverse of the
 * sidecar's normalisation. NULL when the input is not a 1/3-channel image. */
static cd_image *input_image(const cd_model *m, const cd_tensor *x)
{
    int nd = cd_tensor_ndim(x);
    const int64_t *d = cd_tensor_dims(x);
    if (nd != 4 || (d[1] != 1 && d[1] != 3))
        return NULL;
    cd_preprocess pp;
    cd_model_preprocess(m, &pp);
    cd_image *img = NULL;
    if (cd_image_create((int)d[3], (int)d[2], (int)d[1], &img, NULL) != CD_OK)
        return NULL;
    const float *v = cd_tensor_cdata(x);
    size_t hw = (size_t)(d[2] * d[3]);
    for (int c = 0; c < d[1]; c++)
        for (size_t j = 0; j < hw; j++) {
            float s = pp.std[c] != 0 ? pp.std[c] : 1;
            float px = v[(size_t)c * hw + j] * s + pp.mean[c];
            img->pixels[j * (size_t)d[1] + (size_t)c] = pp.scale > 0 ? px * pp.scale : px;
        }
    return img;
}

static bool gradient_type(cd_explain_method m)
{
    return m == CD_EXPLAIN_GRADIENT || m == CD_EXPLAIN_GRADXINPUT ||
           m == CD_EXPLAIN_SMOOTHGRAD || m == CD_EXPLAIN_IG;
}

static cd_status write_pictures(const cd_model *m, const cd_tensor *x, const cd_tensor *sal,
                                const char *base, const ex_args *a, cd_error *err)
{
    char path[4096];
    cd_image *heat = NULL, *ov = NULL, *img = NULL;
    cd_status st = cd_explain_render_heatmap(sal, true, &heat, err);
    if (st == CD_OK) {
        snprintf(path, sizeof path, "%s.png", base);
        st = cd_image_save_png(path, heat, true, err);
    }
    img = st == CD_OK ? input_image(m, x) : NULL;
    if (img) {
        st = cd_explain_render_overlay(sal, img, a->alpha, &ov, err);
        snprintf(path, sizeof path, "%s.overlay.png", base);
        if (st == CD_OK)
            st = cd_image_save_png(path, ov, true, err);
    }
    cd_image_free(heat);
    cd_image_free(ov);
    cd_image_free(img);
    return st;
}

static void print_summary(const char *input, const ex_args *a, const cd_explanation *ex,
                          const cd_faithfulness *fa, const cd_sanity_result *san)
{
    printf("%s: %s, target %d, score %.6g", input, cd_explain_method_name(a->p.method),
           ex->target, ex->score);
    if (ex->layer)
        printf(", layer '%s'", ex->layer);
    if (a->p.method == CD_EXPLAIN_IG)
        printf(", F(baseline) %.6g, completeness delta %.3g (%.3g%% of F(x)-F(x'))",
               ex->baseline_score, ex->completeness_delta,
               100.0 * fabs(ex->completeness_delta) /
                   fmax(1e-30, fabs(ex->score - ex->baseline_score)));
    printf("\n");
    if (fa && fa->deletion)
        printf("  deletion AUC %.4f, insertion AUC %.4f (%s of class %d; "
               "%d steps of %d pixels; deletion to %g, insertion from blur sigma %g)\n",
               fa->deletion_auc, fa->insertion_auc,
               custom_curve_score(a) ? "explained objective" : "softmax probability", ex->target,
               fa->n_steps, fa->step,
               a->fp.deletion_value, a->fp.blur_sigma);
    if (san && san->random_map)
        printf("  sanity check: Spearman rank correlation %.4f between the saliency of the model "
               "and of a copy with the last %d parameterised node(s) randomised (%s; seed %llu)\n",
               san->spearman, san->n_layers, san->layers, (unsigned long long)a->p.seed);
}

/* The model input at path (image or .npy): one example, batch 1. */
static cd_status load_example(const cd_model *m, const char *path, cd_tensor **x,
                              cd_error *err)
{
    cd_status st = inputs_load_tensor(m, path, x, err);
    if (st == CD_OK && cd_tensor_dims(*x)[0] != 1)
        st = cli_set_error(err, CD_ERR_INVALID_ARGUMENT, "explain takes one example (batch 1)");
    return st;
}

static int explain_one(const cd_model *m, cd_explainer *e, const char *input, const ex_args *a,
                       cd_tensor *baseline)
{
    cd_error err = {0};
    cd_tensor *x = NULL, *sal = NULL;
    cd_explanation ex = {0};
    cd_faithfulness fa = {0};
    cd_sanity_result san = {0};
    cd_explain_params p = a->p;
    p.baseline_tensor = baseline;
    cd_status st = load_example(m, input, &x, &err);
    if (st == CD_OK)
        st = cd_explain(e, x, &p, &ex, &err);
    if (st == CD_OK && a->npy)
        st = cd_npy_save(a->npy, ex.map, &err);
    bool has_2d = st == CD_OK && cd_tensor_ndim(x) >= 3 && cd_tensor_ndim(x) <= 4;
    if (has_2d && (a->outdir || a->evaluate))
        st = cd_explain_saliency_2d(ex.map, gradient_type(p.method), &sal, &err);
    cd_faithfulness_params fp = a->fp;
    if (custom_curve_score(a))
        fp.objective = &p.objective;
    if (st == CD_OK && a->evaluate && sal)
        st = cd_explain_faithfulness(e, x, sal, ex.target, &fp, &fa, &err);
    cd_explain_options eo = {.threads = a->threads, .max_batch = a->batch, .float64 = a->float64};
    if (st == CD_OK && a->sanity)
        st = cd_explain_sanity(m, &eo, x, &p, &ex, a->sanity_layers, p.seed, &san, &err);
    if (st == CD_OK && a->outdir) {
        const char *slash = strrchr(input, '/');
        char stem[1024], base[4096];
        snprintf(stem, sizeof stem, "%s", slash ? slash + 1 : input);
        char *dot = strrchr(stem, '.');
        if (dot && dot != stem)
            *dot = '\0';
        snprintf(base, sizeof base, "%s/%s.%s", a->outdir, stem, cd_explain_method_name(p.method));
        char path[4200];
        snprintf(path, sizeof path, "%s.npy", base);
        st = cd_npy_save(path, ex.map, &err);
        if (st == CD_OK && sal)
            st = write_pictures(m, x, sal, base, a, &err);
        snprintf(path, sizeof path, "%s.randomised.npy", base);
        if (st == CD_OK && san.random_map)
            st = cd_npy_save(path, san.random_map, &err);
        snprintf(path, sizeof path, "%s.json", base);
        if (st == CD_OK)
            st = write_json(path, input, a, &ex, &fa, &san, &err);
    }
    if (st == CD_OK)
        print_summary(input, a, &ex, &fa, &san);
    else
        fprintf(stderr, "candor explain: %s: error (%s): %s\n", input, cd_status_name(err.code),
                err.message);
    cd_faithfulness_free(&fa);
    cd_sanity_result_free(&san);
    cd_explanation_free(&ex);
    cd_tensor_free(sal);
    cd_tensor_free(x);
    return st == CD_OK ? 0 : 1;
}

/* ------------------------------------------------------------ uncertainty */

static cd_status save_map_files(const cd_model *m, const cd_tensor *x, const cd_tensor *map,
                                bool absolute, const char *base, const ex_args *a, cd_error *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s.npy", base);
    cd_status st = cd_npy_save(path, map, err);
    cd_tensor *sal = NULL;
    int nd = cd_tensor_ndim(x);
    if (st == CD_OK && nd >= 3 && nd <= 4)
        st = cd_explain_saliency_2d(map, absolute, &sal, err);
    if (st == CD_OK && sal)
        st = write_pictures(m, x, sal, base, a, err);
    cd_tensor_free(sal);
    return st;
}

static cd_status write_mc_json(const char *path, const char *input, const ex_args *a,
                               int members, const cd_mc_explanation *ux, cd_error *err)
{
    cd_atomic_file *af = NULL;
    cd_status st = cd_atomic_open(path, true, &af, err);
    if (st != CD_OK)
        return st;
    FILE *f = cd_atomic_stream(af);
    double mean = 0;
    for (int t = 0; t < ux->n_samples; t++)
        mean += ux->scores[t] / ux->n_samples;
    fprintf(f, "{\"input\":");
    cli_json_str(f, input);
    fprintf(f, ",\"method\":\"%s\",\"target\":%d,\"score\":", cd_explain_method_name(a->p.method),
            ux->target);
    cli_json_num(f, mean);
    fputc(',', f);
    cd_explanation ex = {.target = ux->target, .layer = ux->layer};
    json_settings(f, a, &ex);
    fprintf(f, ",\"uncertainty\":{\"samples\":%d,\"members\":%d,\"mc_samples\":%d,\"seed\":%llu,"
               "\"sites\":[", ux->n_samples, members, a->mc ? a->mc : 1,
            (unsigned long long)a->p.seed);
    for (int k = 0; k < a->n_sites; k++) {
        fprintf(f, "%s{\"name\":", k ? "," : "");
        cli_json_str(f, a->sites[k].name);
        fprintf(f, ",\"p\":%g,\"channel\":%s}", a->sites[k].p, a->sites[k].channel ? "true" : "false");
    }
    fprintf(f, "],\"std\":\"population (divisor S) per element\",\"sample_scores\":[");
    for (int t = 0; t < ux->n_samples; t++) {
        if (t)
            fputc(',', f);
        cli_json_num(f, ux->scores[t]);
    }
    fprintf(f, "],\"predictive_entropy\":");
    cli_json_num(f, ux->predictive_entropy);
    fprintf(f, ",\"expected_entropy\":");
    cli_json_num(f, ux->expected_entropy);
    fprintf(f, ",\"mutual_information\":");
    cli_json_num(f, ux->mutual_information);
    fprintf(f, ",\"entropy_saliency\":\"d H[mean p]/d input\",\"mi_saliency\":\"d MI/d input\"}}\n");
    return cd_atomic_commit(af, err);
}

static cd_status write_mc_outputs(const cd_model *m, const cd_tensor *x, const char *input,
                                  const ex_args *a, int members, const cd_mc_explanation *ux,
                                  cd_error *err)
{
    const char *slash = strrchr(input, '/');
    char stem[1024], base[4096], path[4200];
    snprintf(stem, sizeof stem, "%s", slash ? slash + 1 : input);
    char *dot = strrchr(stem, '.');
    if (dot && dot != stem)
        *dot = '\0';
    bool grad = gradient_type(a->p.method);
    snprintf(base, sizeof base, "%s/%s.%s.mean", a->outdir, stem, cd_explain_method_name(a->p.method));
    cd_status st = save_map_files(m, x, ux->mean, grad, base, a, err);
    snprintf(base, sizeof base, "%s/%s.%s.std", a->outdir, stem, cd_explain_method_name(a->p.method));
    if (st == CD_OK)
        st = save_map_files(m, x, ux->std, true, base, a, err);
    snprintf(base, sizeof base, "%s/%s.entropy_saliency", a->outdir, stem);
    if (st == CD_OK && ux->entropy_saliency)
        st = save_map_files(m, x, ux->entropy_saliency, true, base, a, err);
    snprintf(base, sizeof base, "%s/%s.mi_saliency", a->outdir, stem);
    if (st == CD_OK && ux->mi_saliency)
        st = save_map_files(m, x, ux->mi_saliency, true, base, a, err);
    snprintf(path, sizeof path, "%s/%s.%s.json", a->outdir, stem, cd_explain_method_name(a->p.method));
    if (st == CD_OK)
        st = write_mc_json(path, input, a, members, ux, err);
    return st;
}

static int explain_one_mc(const cd_model *m, cd_explain_mc *u, int members, const char *input,
                          const ex_args *a, cd_tensor *baseline)
{
    cd_error err = {0};
    cd_tensor *x = NULL;
    cd_mc_explanation ux = {0};
    cd_explain_params p = a->p;
    p.baseline_tensor = baseline;
    cd_status st = load_example(m, input, &x, &err);
    if (st == CD_OK)
        st = cd_explain_mc_run(u, x, &p, &ux, &err);
    if (st == CD_OK && a->npy)
        st = cd_npy_save(a->npy, ux.mean, &err);
    if (st == CD_OK && a->samples_path)
        st = cd_npy_save(a->samples_path, ux.samples, &err);
    if (st == CD_OK && a->outdir)
        st = write_mc_outputs(m, x, input, a, members, &ux, &err);
    if (st == CD_OK) {
        double mean = 0, smax = 0;
        for (int t = 0; t < ux.n_samples; t++)
            mean += ux.scores[t] / ux.n_samples;
        for (size_t i = 0; i < cd_tensor_numel(ux.std); i++)
            smax = fmax(smax, ((const float *)cd_tensor_cdata(ux.std))[i]);
        printf("%s: %s over %d sample(s) (%d model(s) x %d MC), target %d, mean score %.6g",
               input, cd_explain_method_name(p.method), ux.n_samples, members, a->mc ? a->mc : 1,
               ux.target, mean);
        if (ux.layer)
            printf(", layer '%s'", ux.layer);
        printf("\n  max per-pixel std of the map %.4g; predictive entropy %.4f = expected %.4f "
               "+ mutual information %.4f nats%s\n", smax, ux.predictive_entropy,
               ux.expected_entropy, ux.mutual_information,
               ux.entropy_saliency ? "; entropy and MI saliency written" : "");
    } else {
        fprintf(stderr, "candor explain: %s: error (%s): %s\n", input, cd_status_name(err.code),
                err.message);
    }
    cd_mc_explanation_free(&ux);
    cd_tensor_free(x);
    return st == CD_OK ? 0 : 1;
}

/* mpirun -n N (mpi_shard.h): once every rank succeeded, rank 0 prints all
 * ranks' summaries in input order (the per-input files under -o were
 * written by the rank that owned the input). Returns the failure count;
 * with one rank `failures` unchanged. */
static int mpi_end(bool setup_failed, int failures, const char *bad_input)
{
    if (mpi_shard_size() <= 1)
        return failures;
    char *out = NULL, why[1200];
    size_t len = 0;
    mpi_shard_capture_end(&out, &len);
    snprintf(why, sizeof why, bad_input ? "%d input(s) failed, the first: %s (see above)"
                                        : "setup failed (see above)", failures, bad_input);
    int bad = mpi_shard_end_stdout("explain", out, len, setup_failed || failures ? why : NULL);
    free(out);
    return bad;
}

static bool is_onnx_name(const char *s)
{
    size_t n = strlen(s);
    return n > 5 && strcmp(s + n - 5, ".onnx") == 0;
}

/* Loads MODEL plus the ensemble members; *used = arguments consumed. */
static int load_members(int argc, char **argv, const ex_args *a, cd_model **models, int *n,
                        int *used)
{
    const char *paths[34];
    int k = 0;
    *used = 0;
    while (*used < argc && k < 17 && (*used == 0 || (a->ensemble && is_onnx_name(argv[*used]))))
        paths[k++] = argv[(*used)++];
    for (int i = 0; i < a->n_members && k < 33; i++)
        paths[k++] = a->members[i];
    for (*n = 0; *n < k; (*n)++) {
        cd_error err = {0};
        if (cd_model_load(paths[*n], NULL, &models[*n], &err) != CD_OK)
            return cli_fail_err("explain", &err);
    }
    return 0;
}

static int run_uncertain(int argc, char **argv, ex_args *a, cd_tensor *baseline)
{
    cd_model *models[34] = {0};
    int n = 0, used = 0, failures = 0;
    int rc = load_members(argc, argv, a, models, &n, &used);
    cd_mc_options mo;
    cd_mc_options_default(&mo);
    mo.samples = a->mc ? a->mc : 1;
    mo.seed = a->p.seed;
    mo.n_sites = a->n_sites;
    mo.sites = a->sites;
    mo.threads = a->threads;
    cd_explain_options eo = {.threads = a->threads, .max_batch = a->batch, .float64 = a->float64};
    cd_explain_mc *u = NULL;
    cd_error err = {0};
    /* Without --mc an ensemble is deterministic: Dropout stays the identity. */
    if (!rc && cd_explain_mc_create(n, (const cd_model *const *)models, a->mc ? &mo : NULL, &eo,
                                    &u, &err) != CD_OK)
        rc = cli_fail_err("explain", &err);
    input_list in = {0};
    if (!rc && (inputs_collect(argc - used, argv + used, &in) != 0 || in.count == 0))
        rc = cli_fail("explain: no inputs found");
    else if (!rc && (a->npy || a->samples_path) && in.count > 1)
        rc = cli_fail("explain: --npy/--samples take a single input (use -o OUTDIR)");
    else if (!rc && a->outdir && mkdir(a->outdir, 0777) != 0 && errno != EEXIST)
        rc = cli_fail("explain: cannot create '%s': %s", a->outdir, strerror(errno));
    size_t from = 0, count = 0; /* this rank's inputs (all of them with one rank) */
    if (!rc)
        mpi_shard_range((size_t)in.count, &from, &count);
    const char *bad = NULL;
    mpi_shard_capture_begin();
    for (size_t i = from; !rc && i < from + count; i++) {
        int f = explain_one_mc(models[0], u, n, in.paths[i], a, baseline);
        bad = f && !bad ? in.paths[i] : bad;
        failures += f;
    }
    failures = mpi_end(rc != 0, failures, bad);
    inputs_free(&in);
    cd_explain_mc_free(u);
    for (int i = 0; i < n; i++)
        cd_model_free(models[i]);
    return rc || failures ? 1 : 0;
}

int cmd_explain(int argc, char **argv)
{
    int vis = explain_vis_dispatch(argc, argv); /* featuremaps, maximize: tools/explain_vis.c */
    if (vis >= 0)
        return vis;
    ex_args a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc == 1 ? 0 : 2;
    cd_error err = {0};
    cd_model *m = NULL;
    cd_explainer *e = NULL;
    cd_tensor *baseline = NULL;
    if (a.batch == 0)
        a.batch = 8;
    mpi_shard_start(); /* mpirun -n N: this rank's share of the inputs (docs/scale-out.md) */
    a.threads = mpi_shard_threads(a.threads);
    if (a.mc || a.ensemble || a.n_members) {
        if (a.baseline_path && cd_npy_load_f32(a.baseline_path, &baseline, &err) != CD_OK)
            return cli_fail_err("explain", &err);
        rc = run_uncertain(argc - optind, argv + optind, &a, baseline);
        cd_tensor_free(baseline);
        return mpi_shard_finish(rc);
    }
    if (cd_model_load(argv[optind], NULL, &m, &err) != CD_OK)
        return cli_fail_err("explain", &err);
    a.fp.output_is_probability = strcmp(cd_model_output_kind(m), "probabilities") == 0;
    cd_explain_options eo = {.threads = a.threads, .max_batch = a.batch, .float64 = a.float64};
    if (cd_explainer_create(m, &eo, &e, &err) != CD_OK ||
        (a.baseline_path && cd_npy_load_f32(a.baseline_path, &baseline, &err) != CD_OK)) {
        cd_explainer_free(e);
        cd_model_free(m);
        return cli_fail_err("explain", &err);
    }
    if (a.batch == 0)
        a.batch = 8;
    input_list in = {0};
    int failures = 0, setup = 0;
    if (inputs_collect(argc - optind - 1, argv + optind + 1, &in) != 0 || in.count == 0) {
        cli_fail("explain: no inputs found");
        setup = 1;
    } else if (a.npy && in.count > 1) {
        cli_fail("explain: --npy takes a single input (use -o OUTDIR for several)");
        setup = 1;
    } else if (a.outdir && mkdir(a.outdir, 0777) != 0 && errno != EEXIST) {
        cli_fail("explain: cannot create '%s': %s", a.outdir, strerror(errno));
        setup = 1;
    }
    size_t from = 0, count = 0; /* this rank's inputs (all of them with one rank) */
    if (!setup)
        mpi_shard_range((size_t)in.count, &from, &count);
    const char *bad = NULL;
    mpi_shard_capture_begin();
    for (size_t i = from; !setup && i < from + count; i++) {
        int f = explain_one(m, e, in.paths[i], &a, baseline);
        bad = f && !bad ? in.paths[i] : bad;
        failures += f;
    }
    failures = mpi_end(setup != 0, failures, bad);
    inputs_free(&in);
    cd_tensor_free(baseline);
    cd_explainer_free(e);
    cd_model_free(m);
    return mpi_shard_finish(failures || setup ? 1 : 0);
}
