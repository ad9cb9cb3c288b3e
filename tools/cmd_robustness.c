/* candor robustness MODEL --data D --attack fgsm|pgd --eps E [options] -o DIR
 *
 * Attacks every labelled input (in the model-input space, clipped to the
 * range the preprocessing allows), reports accuracy clean vs attacked, and
 * how well candor's own uncertainty scores separate attacked inputs from
 * clean ones (AUROC), with example adversarial images and their saliency. */
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "calib_data.h"
#include "candor/explain.h"
#include "inputs.h"
#include "interp_util.h"
#include "cli_util.h"

static void help(FILE *f)
{
    fprintf(f,
"usage: candor robustness MODEL --data D --attack fgsm|pgd --eps E [options] -o DIR\n\n"
"Adversarial robustness: accuracy on clean vs attacked inputs, and how well the\n"
"model's uncertainty (max-probability confidence, entropy; with --mc T the MC-dropout\n"
"predictive entropy and mutual information) tells attacked inputs from clean ones\n"
"(AUROC). D is labelled data as for `candor calibrate`: an .npy array with --labels,\n"
"a folder with one subfolder per class, or a CSV of path,label rows.\n"
"Attacks are untargeted L-inf on the cross-entropy of the true label, computed on the\n"
"deterministic model (Dropout as identity) in model-input space (after preprocessing),\n"
"clipped to the range the preprocessing allows (8-bit pixels 0..255).\n\n"
"options:\n"
"  --data D          labelled data (required)\n"
"  --labels FILE     labels for an .npy array (.npy integers or .txt lines)\n"
"  --attack A        fgsm (default) | pgd\n"
"  --eps E           L-inf radius in model-input units (required; the JSON also gives it\n"
"                    in 8-bit pixel levels)\n"
"  --steps S         PGD steps (10)\n"
"  --alpha A         PGD step size (default 2.5 eps / steps)\n"
"  --random-start    PGD: start from a uniform point of the eps ball (seeded)\n"
"  --mc T            also score with MC dropout, T samples\n"
"  --limit N         use the first N rows only\n"
"  --examples K      write K example adversarial images with saliency (4)\n"
"  --save-arrays     also write clean.npy and adversarial.npy (model-input space)\n"
"  --batch N         rows per pass (32)\n"
"  --seed S          seed for PGD's random start and MC dropout masks (0)\n"
"  --threads N       threads (default: all cores)\n"
"  --json            print the JSON summary on stdout instead of the table\n"
"  -o, --outdir DIR  writes robustness.json, example_I.{clean,adv}.png,\n"
"                    example_I.{clean,adv}.saliency.png (required)\n"
"  -h, --help        this help\n"
"Progress goes to stderr.\n");
}

typedef struct rb_args {
    const char *data, *labels, *outdir;
    cd_attack_params ap;
    int mc, limit, examples, batch, threads;
    bool save_arrays, json;
    uint64_t seed;
} rb_args;

enum { R_DATA = 400, R_LABELS, R_ATTACK, R_EPS, R_STEPS, R_ALPHA, R_RANDOM, R_MC, R_LIMIT,
       R_EXAMPLES, R_SAVE, R_BATCH, R_SEED, R_THREADS, R_JSON };

static bool apply(int c, const char *v, void *ctx)
{
    rb_args *a = ctx;
    switch (c) {
    case R_DATA: a->data = v; return true;
    case R_LABELS: a->labels = v; return true;
    case R_ATTACK:
        if (strcmp(v, "fgsm") == 0)
            a->ap.kind = CD_ATTACK_FGSM;
        else if (strcmp(v, "pgd") == 0)
            a->ap.kind = CD_ATTACK_PGD;
        else
            return false;
        return true;
    case R_EPS: a->ap.eps = -1; return cli_parse_float(v, 0, &a->ap.eps);
    case R_STEPS: return cli_parse_int(v, 1, 100000, &a->ap.steps);
    case R_ALPHA: return cli_parse_float(v, 0, &a->ap.alpha);
    case R_RANDOM: a->ap.random_start = true; return true;
    case R_MC: return cli_parse_int(v, 1, 100000, &a->mc);
    case R_LIMIT: return cli_parse_int(v, 1, 1 << 30, &a->limit);
    case R_EXAMPLES: return cli_parse_int(v, 0, 1000, &a->examples);
    case R_SAVE: a->save_arrays = true; return true;
    case R_BATCH: return cli_parse_int(v, 1, 4096, &a->batch);
    case R_SEED: a->seed = strtoull(v, NULL, 10); return true;
    case R_THREADS: return cli_parse_int(v, 1, 1024, &a->threads);
    case R_JSON: a->json = true; return true;
    case 'o': a->outdir = v; return true;
    default: return false;
    }
}

/* 0 parsed, 1 after --help, 2 usage error. */
static int parse(int argc, char **argv, rb_args *a)
{
    static const struct option opts[] = {
        {"data", required_argument, 0, R_DATA},         {"labels", required_argument, 0, R_LABELS},
        {"attack", required_argument, 0, R_ATTACK},     {"eps", required_argument, 0, R_EPS},
        {"steps", required_argument, 0, R_STEPS},       {"alpha", required_argument, 0, R_ALPHA},
        {"random-start", no_argument, 0, R_RANDOM},     {"mc", required_argument, 0, R_MC},
        {"limit", required_argument, 0, R_LIMIT},       {"examples", required_argument, 0, R_EXAMPLES},
        {"save-arrays", no_argument, 0, R_SAVE},        {"batch", required_argument, 0, R_BATCH},
        {"seed", required_argument, 0, R_SEED},         {"threads", required_argument, 0, R_THREADS},
        {"json", no_argument, 0, R_JSON},               {"outdir", required_argument, 0, 'o'},
        {"help", no_argument, 0, 'h'},                  {0, 0, 0, 0}};
    cd_attack_params_default(&a->ap, CD_ATTACK_FGSM);
    a->ap.eps = NAN;
    a->examples = 4;
    a->batch = 32;
    a->threads = 0; /* all cores */
    int rc = cli_apply_options(argc, argv, opts, "robustness", help, apply, a);
    if (rc)
        return rc;
    const char *bad = argc - optind != 1 ? "needs exactly one MODEL"
                      : !a->data         ? "needs --data D"
                      : isnan(a->ap.eps) ? "needs --eps E"
                      : !a->outdir       ? "needs -o OUTDIR"
                                         : NULL;
    if (bad) {
        cli_fail("robustness: %s", bad);
        help(stderr);
        return 2;
    }
    a->ap.seed = a->seed;
    return 0;
}

/* ------------------------------------------------------------ data */

/* The sidecar preprocessing fitted to the model input, as `candor calibrate`
 * applies it to uint8 array rows: colour from the channel count, an exact
 * resize when the sidecar gives no size. */
static void fitted_preprocess(const cd_model *m, int h, int w, cd_preprocess *pp)
{
    int nd = -1;
    int64_t d[CD_MAX_DIMS];
    cd_model_preprocess(m, pp);
    if (cd_model_input_shape(m, 0, &nd, d, NULL) != CD_OK || nd != 4)
        return;
    pp->color = d[1] == 3 ? CD_COLOR_RGB : d[1] == 1 ? CD_COLOR_GRAY : pp->color;
    bool sized = pp->resize_short > 0 || (pp->resize_h > 0 && pp->resize_w > 0);
    if (!sized && !(pp->crop_h > 0 && pp->crop_w > 0) && d[2] > 0 && d[3] > 0 &&
        (d[2] != h || d[3] != w)) {
        pp->resize_h = (int)d[2];
        pp->resize_w = (int)d[3];
    }
}

/* Row r of an .npy dataset: uint8 rows are images (preprocessed), float rows
 * are model inputs already. */
static cd_status array_row(const cd_model *m, const cd_tensor *arr, size_t r, cd_tensor **out,
                           cd_error *err)
{
    const int64_t *d = cd_tensor_dims(arr);
    int nd = cd_tensor_ndim(arr);
    int c = nd == 4 ? (int)d[1] : 1, h = (int)d[nd - 2], w = (int)d[nd - 1];
    size_t plane = (size_t)h * (size_t)w, row = plane * (size_t)c;
    cd_tensor *f = NULL;
    int64_t dims[4] = {1, c, h, w};
    cd_status st = cd_tensor_create(CD_FLOAT32, 4, dims, &f, err);
    if (st != CD_OK)
        return st;
    float *v = cd_tensor_data(f);
    for (size_t i = 0; i < row; i++)
        switch (cd_tensor_dtype(arr)) {
        case CD_UINT8: v[i] = ((const uint8_t *)cd_tensor_cdata(arr))[r * row + i]; break;
        case CD_FLOAT32: v[i] = ((const float *)cd_tensor_cdata(arr))[r * row + i]; break;
        default: v[i] = (float)((const double *)cd_tensor_cdata(arr))[r * row + i]; break;
        }
    if (cd_tensor_dtype(arr) != CD_UINT8) {
        *out = f;
        return CD_OK;
    }
    cd_image *img = NULL;
    if ((c != 1 && c != 3) || (st = cd_image_create(w, h, c, &img, err)) != CD_OK) {
        cd_tensor_free(f);
        return st ? st : cli_set_error(err, CD_ERR_SHAPE, "uint8 rows need 1 or 3 channels");
    }
    for (int ch = 0; ch < c; ch++)
        for (size_t p = 0; p < plane; p++)
            img->pixels[p * (size_t)c + (size_t)ch] = v[(size_t)ch * plane + p];
    cd_preprocess pp;
    fitted_preprocess(m, h, w, &pp);
    st = cd_image_to_tensor(img, &pp, out, err);
    cd_image_free(img);
    cd_tensor_free(f);
    return st;
}

/* Rows [first, first + count) as one (count, C, H, W) tensor. */
static cd_status load_rows(const cd_model *m, const calib_dataset *d, size_t first, size_t count,
                           cd_tensor **out, cd_error *err)
{
    *out = NULL;
    cd_status st = CD_OK;
    for (size_t j = 0; j < count && st == CD_OK; j++) {
        cd_tensor *x = NULL;
        st = d->array ? array_row(m, d->array, first + j, &x, err)
                      : inputs_load_tensor(m, d->paths[first + j], &x, err);
        if (st == CD_OK && !*out) {
            int64_t dims[CD_MAX_DIMS];
            memcpy(dims, cd_tensor_dims(x), (size_t)cd_tensor_ndim(x) * sizeof *dims);
            dims[0] = (int64_t)count;
            st = cd_tensor_create(CD_FLOAT32, cd_tensor_ndim(x), dims, out, err);
        }
        if (st == CD_OK && cd_tensor_numel(x) * count != cd_tensor_numel(*out))
            st = cli_set_error(err, CD_ERR_SHAPE, "row %zu has another shape than row %zu",
                               first + j, first);
        if (st == CD_OK)
            memcpy((char *)cd_tensor_data(*out) + j * cd_tensor_nbytes(x), cd_tensor_cdata(x),
                   cd_tensor_nbytes(x));
        cd_tensor_free(x);
    }
    if (st != CD_OK) {
        cd_tensor_free(*out);
        *out = NULL;
    }
    return st;
}

/* ------------------------------------------------------------ scoring */

/* Per-row scores of one population (clean or attacked). */
typedef struct population {
    int *pred;          /* deterministic top class */
    double *conf_unc;   /* 1 - max softmax probability */
    double *entropy;    /* entropy of the softmax */
    int *mc_pred;       /* MC: top class of the mean probabilities */
    double *mc_unc;     /* MC: 1 - max mean probability */
    double *mc_entropy; /* MC: predictive entropy H[p̄] */
    double *mc_mi;      /* MC: mutual information */
} population;

typedef struct rb_state {
    const rb_args *a;
    cd_model *m;
    cd_session *sess;
    cd_mc_session *mc;
    cd_explainer *ex;
    calib_dataset ds;
    size_t n;
    int k;
    bool probs_out;
    float lo[64], hi[64];
    int channels;
    population clean, adv;
    cd_tensor *clean_all, *adv_all; /* --save-arrays */
    double linf_max;
} rb_state;

static bool pop_alloc(population *p, size_t n, bool mc)
{
    p->pred = calloc(n, sizeof *p->pred);
    p->conf_unc = calloc(n, sizeof(double));
    p->entropy = calloc(n, sizeof(double));
    if (mc) {
        p->mc_pred = calloc(n, sizeof *p->mc_pred);
        p->mc_unc = calloc(n, sizeof(double));
        p->mc_entropy = calloc(n, sizeof(double));
        p->mc_mi = calloc(n, sizeof(double));
    }
    return p->pred && p->conf_unc && p->entropy &&
           (!mc || (p->mc_pred && p->mc_unc && p->mc_entropy && p->mc_mi));
}

static void pop_free(population *p)
{
    free(p->pred);
    free(p->conf_unc);
    free(p->entropy);
    free(p->mc_pred);
    free(p->mc_unc);
    free(p->mc_entropy);
    free(p->mc_mi);
}

/* Softmax (unless the output already holds probabilities) of one row. */
static void row_probs(const float *z, int k, bool probs_out, double *p)
{
    double mx = z[0], sum = 0;
    for (int c = 0; c < k; c++)
        mx = fmax(mx, z[c]);
    for (int c = 0; c < k; c++)
        sum += (p[c] = probs_out ? z[c] : exp(z[c] - mx));
    for (int c = 0; c < k; c++)
        p[c] /= sum;
}

static cd_status score_det(rb_state *s, const cd_tensor *x, size_t first, population *pop,
                           cd_error *err)
{
    cd_tensor *y = NULL;
    const cd_tensor *in[1] = {x};
    cd_status st = cd_session_run(s->sess, 1, NULL, in, 1, NULL, &y, err);
    if (st != CD_OK)
        return st;
    int64_t rows = cd_tensor_dims(x)[0];
    if (cd_tensor_ndim(y) != 2 || cd_tensor_dims(y)[0] != rows || cd_tensor_dims(y)[1] != s->k) {
        cd_tensor_free(y);
        return cli_set_error(err, CD_ERR_SHAPE, "robustness needs an (N, %d) classifier output",
                             s->k);
    }
    double p[4096];
    for (int64_t b = 0; b < rows; b++) {
        row_probs((const float *)cd_tensor_cdata(y) + b * s->k, s->k, s->probs_out, p);
        int top = 0;
        double h = 0;
        for (int c = 0; c < s->k; c++) {
            top = p[c] > p[top] ? c : top;
            h -= p[c] > 0 ? p[c] * log(p[c]) : 0;
        }
        pop->pred[first + (size_t)b] = top;
        pop->conf_unc[first + (size_t)b] = 1.0 - p[top];
        pop->entropy[first + (size_t)b] = h;
    }
    cd_tensor_free(y);
    return CD_OK;
}

static cd_status score_mc(rb_state *s, const cd_tensor *x, size_t first, population *pop,
                          cd_error *err)
{
    cd_tensor *smp = NULL;
    const cd_tensor *in[1] = {x};
    cd_status st = cd_mc_sample(s->mc, 1, in, 1, NULL, &smp, err);
    if (st == CD_OK && !s->probs_out)
        st = cd_softmax_axis(smp, -1, err);
    int64_t rows = cd_tensor_dims(x)[0], t = s->a->mc;
    for (int64_t b = 0; st == CD_OK && b < rows; b++) {
        cd_class_summary cs = {0};
        st = cd_summarize_classification((const float *)cd_tensor_cdata(smp) + b * t * s->k,
                                         (int)t, s->k, 0.95, &cs, err);
        if (st != CD_OK)
            break;
        size_t r = first + (size_t)b;
        pop->mc_pred[r] = cs.top_class;
        pop->mc_unc[r] = 1.0 - cs.mean[cs.top_class];
        pop->mc_entropy[r] = cs.predictive_entropy;
        pop->mc_mi[r] = cs.mutual_information;
        cd_class_summary_free(&cs);
    }
    cd_tensor_free(smp);
    return st;
}

static cd_status score_both(rb_state *s, const cd_tensor *x, const cd_tensor *adv, size_t first,
                            cd_error *err)
{
    cd_status st = score_det(s, x, first, &s->clean, err);
    if (st == CD_OK)
        st = score_det(s, adv, first, &s->adv, err);
    if (st == CD_OK && s->mc)
        st = score_mc(s, x, first, &s->clean, err);
    if (st == CD_OK && s->mc)
        st = score_mc(s, adv, first, &s->adv, err);
    return st;
}

/* ------------------------------------------------------------ examples */

/* Gradient saliency (|d logit_pred / dx| summed over channels) of row r. */
static cd_status save_saliency(rb_state *s, const cd_tensor *x, size_t r, int target,
                               const char *path, cd_error *err)
{
    const int64_t *d = cd_tensor_dims(x);
    size_t row = cd_tensor_numel(x) / (size_t)d[0];
    int64_t dims[4] = {1, d[1], d[2], d[3]};
    cd_tensor *one = NULL, *sal = NULL;
    cd_image *img = NULL;
    cd_explanation ex = {0};
    cd_status st = cd_tensor_from_data(CD_FLOAT32, 4, dims,
                                       (const float *)cd_tensor_cdata(x) + r * row, &one, err);
    cd_explain_params p;
    cd_explain_params_default(&p, CD_EXPLAIN_GRADIENT);
    p.objective.target = target;
    if (st == CD_OK)
        st = cd_explain(s->ex, one, &p, &ex, err);
    if (st == CD_OK)
        st = cd_explain_saliency_2d(ex.map, true, &sal, err);
    if (st == CD_OK)
        st = cd_explain_render_heatmap(sal, true, &img, err);
    if (st == CD_OK) {
        cd_image *big = NULL;
        st = iu_upscale(img, 112, &big, err);
        if (st == CD_OK)
            st = cd_image_save_png(path, big, true, err);
        cd_image_free(big);
    }
    cd_image_free(img);
    cd_tensor_free(sal);
    cd_explanation_free(&ex);
    cd_tensor_free(one);
    return st;
}

static cd_status save_example(rb_state *s, const cd_tensor *x, const cd_tensor *adv, size_t b,
                              size_t row, int idx, cd_error *err)
{
    char path[4096];
    const char *what[2] = {"clean", "adv"};
    const cd_tensor *src[2] = {x, adv};
    const population *pop[2] = {&s->clean, &s->adv};
    cd_status st = CD_OK;
    for (int i = 0; i < 2 && st == CD_OK; i++) {
        cd_image *img = NULL;
        snprintf(path, sizeof path, "%s/example_%d.%s.png", s->a->outdir, idx, what[i]);
        st = iu_input_to_image(s->m, src[i], b, 112, &img, err);
        if (st == CD_OK)
            st = cd_image_save_png(path, img, true, err);
        cd_image_free(img);
        snprintf(path, sizeof path, "%s/example_%d.%s.saliency.png", s->a->outdir, idx, what[i]);
        if (st == CD_OK)
            st = save_saliency(s, src[i], b, pop[i]->pred[row], path, err);
    }
    return st;
}

/* ------------------------------------------------------------ main loop */

static void store_rows(cd_tensor *all, const cd_tensor *part, size_t first)
{
    if (all)
        memcpy((char *)cd_tensor_data(all) + first * (cd_tensor_nbytes(part) /
                                                      (size_t)cd_tensor_dims(part)[0]),
               cd_tensor_cdata(part), cd_tensor_nbytes(part));
}

static double linf(const cd_tensor *a, const cd_tensor *b)
{
    const float *x = cd_tensor_cdata(a), *y = cd_tensor_cdata(b);
    double m = 0;
    for (size_t i = 0; i < cd_tensor_numel(a); i++)
        m = fmax(m, fabs((double)x[i] - y[i]));
    return m;
}

static cd_status one_batch(rb_state *s, size_t first, size_t count, int *examples, cd_error *err)
{
    cd_tensor *x = NULL, *adv = NULL;
    cd_status st = load_rows(s->m, &s->ds, first, count, &x, err);
    if (st == CD_OK && cd_tensor_ndim(x) >= 2 && cd_tensor_dims(x)[1] > 64)
        st = cli_set_error(err, CD_ERR_UNSUPPORTED, "at most 64 input channels");
    cd_attack_params ap = s->a->ap;
    ap.clip_lo = s->lo;
    ap.clip_hi = s->hi;
    if (st == CD_OK)
        st = cd_attack(s->ex, x, s->ds.labels + first, &ap, &adv, err);
    if (st == CD_OK)
        st = score_both(s, x, adv, first, err);
    if (st == CD_OK && s->a->save_arrays && !s->clean_all) {
        int64_t dims[CD_MAX_DIMS];
        memcpy(dims, cd_tensor_dims(x), (size_t)cd_tensor_ndim(x) * sizeof *dims);
        dims[0] = (int64_t)s->n;
        st = cd_tensor_create(CD_FLOAT32, cd_tensor_ndim(x), dims, &s->clean_all, err);
        if (st == CD_OK)
            st = cd_tensor_create(CD_FLOAT32, cd_tensor_ndim(x), dims, &s->adv_all, err);
    }
    if (st == CD_OK) {
        store_rows(s->clean_all, x, first);
        store_rows(s->adv_all, adv, first);
        s->linf_max = fmax(s->linf_max, linf(x, adv));
    }
    /* Examples: attacks that flipped a correct prediction, in data order. */
    for (size_t b = 0; st == CD_OK && b < count && *examples < s->a->examples; b++) {
        size_t r = first + b;
        if (s->clean.pred[r] == s->ds.labels[r] && s->adv.pred[r] != s->ds.labels[r])
            st = save_example(s, x, adv, b, r, (*examples)++, err);
    }
    cd_tensor_free(x);
    cd_tensor_free(adv);
    return st;
}

static cd_status run_all(rb_state *s, cd_error *err)
{
    size_t b = (size_t)s->a->batch;
    int examples = 0;
    size_t next_report = 0;
    for (size_t first = 0; first < s->n; first += b) {
        size_t count = s->n - first < b ? s->n - first : b;
        cd_status st = one_batch(s, first, count, &examples, err);
        if (st != CD_OK)
            return st;
        if (first + count >= next_report || first + count == s->n) {
            fprintf(stderr, "robustness: %zu/%zu rows attacked\n", first + count, s->n);
            next_report = first + count + (s->n + 9) / 10;
        }
    }
    return CD_OK;
}

/* ------------------------------------------------------------ report */

typedef struct det_score {
    const char *name, *what;
    double *clean, *adv;
} det_score;

static int det_scores(const rb_state *s, det_score *out)
{
    int n = 0;
    out[n++] = (det_score){"confidence", "1 - max softmax probability", s->clean.conf_unc,
                           s->adv.conf_unc};
    out[n++] = (det_score){"entropy", "entropy of the softmax (nats)", s->clean.entropy,
                           s->adv.entropy};
    if (s->mc) {
        out[n++] = (det_score){"mc_confidence", "1 - max mean MC probability", s->clean.mc_unc,
                               s->adv.mc_unc};
        out[n++] = (det_score){"mc_entropy", "MC predictive entropy H[mean p]",
                               s->clean.mc_entropy, s->adv.mc_entropy};
        out[n++] = (det_score){"mc_mutual_information", "MC mutual information",
                               s->clean.mc_mi, s->adv.mc_mi};
    }
    return n;
}

/* AUROC over all rows, and over successful attacks (clean correct, attacked
 * wrong) against the clean inputs that were correct. */
static void aurocs(const rb_state *s, const det_score *d, double *all, double *succ)
{
    *all = cd_auroc(d->clean, s->n, d->adv, s->n);
    double *neg = malloc(s->n * sizeof *neg), *pos = malloc(s->n * sizeof *pos);
    size_t nn = 0, np = 0;
    for (size_t i = 0; neg && pos && i < s->n; i++) {
        if (s->clean.pred[i] != s->ds.labels[i])
            continue;
        neg[nn++] = d->clean[i];
        if (s->adv.pred[i] != s->ds.labels[i])
            pos[np++] = d->adv[i];
    }
    *succ = neg && pos ? cd_auroc(neg, nn, pos, np) : NAN;
    free(neg);
    free(pos);
}

static double accuracy(const int *pred, const int *labels, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += pred[i] == labels[i];
    return n ? (double)c / (double)n : NAN;
}

static double flip_rate(const rb_state *s)
{
    size_t ok = 0, flipped = 0;
    for (size_t i = 0; i < s->n; i++)
        if (s->clean.pred[i] == s->ds.labels[i]) {
            ok++;
            flipped += s->adv.pred[i] != s->ds.labels[i];
        }
    return ok ? (double)flipped / (double)ok : NAN;
}

static double eps_pixels(const rb_state *s)
{
    /* The input range spans 255 pixel levels. */
    double span = (double)s->hi[0] - (double)s->lo[0];
    return span > 0 ? s->a->ap.eps * 255.0 / span : NAN;
}

static void write_json(FILE *f, const void *vctx)
{
    const rb_state *s = vctx;
    const rb_args *a = s->a;
    fprintf(f, "{\"command\":\"robustness\",\"data\":");
    cli_json_str(f, a->data);
    fprintf(f, ",\"rows\":%zu,\"attack\":{\"kind\":\"%s\",\"norm\":\"linf\",\"loss\":"
               "\"cross-entropy of the true label (pre-softmax score)\",\"eps\":%g,"
               "\"eps_pixel_levels\":",
            s->n, a->ap.kind == CD_ATTACK_FGSM ? "fgsm" : "pgd", (double)a->ap.eps);
    cli_json_num(f, eps_pixels(s));
    if (a->ap.kind == CD_ATTACK_PGD)
        fprintf(f, ",\"steps\":%d,\"alpha\":%g,\"random_start\":%s,\"seed\":%llu", a->ap.steps,
                (double)(a->ap.alpha > 0 ? a->ap.alpha : 2.5f * a->ap.eps / (float)a->ap.steps),
                a->ap.random_start ? "true" : "false", (unsigned long long)a->seed);
    fprintf(f, ",\"clip\":{\"lo\":");
    cli_json_num(f, s->lo[0]);
    fprintf(f, ",\"hi\":");
    cli_json_num(f, s->hi[0]);
    fprintf(f, "},\"max_linf_measured\":");
    cli_json_num(f, s->linf_max);
    fprintf(f, "},\"accuracy\":{\"clean\":");
    cli_json_num(f, accuracy(s->clean.pred, s->ds.labels, s->n));
    fprintf(f, ",\"attacked\":");
    cli_json_num(f, accuracy(s->adv.pred, s->ds.labels, s->n));
    if (s->mc) {
        fprintf(f, ",\"mc_clean\":");
        cli_json_num(f, accuracy(s->clean.mc_pred, s->ds.labels, s->n));
        fprintf(f, ",\"mc_attacked\":");
        cli_json_num(f, accuracy(s->adv.mc_pred, s->ds.labels, s->n));
    }
    fprintf(f, ",\"flip_rate\":");
    cli_json_num(f, flip_rate(s));
    fprintf(f, "}");
    if (s->mc)
        fprintf(f, ",\"mc\":{\"samples\":%d,\"seed\":%llu}", a->mc, (unsigned long long)a->seed);
    fprintf(f, ",\"detection\":{\"positive\":\"attacked\",\"scores\":[");
    det_score d[5];
    int nd = det_scores(s, d);
    for (int i = 0; i < nd; i++) {
        double all, succ;
        aurocs(s, &d[i], &all, &succ);
        fprintf(f, "%s{\"score\":\"%s\",\"definition\":\"%s\",\"auroc_all\":", i ? "," : "",
                d[i].name, d[i].what);
        cli_json_num(f, all);
        fprintf(f, ",\"auroc_successful\":");
        cli_json_num(f, succ);
        fputc('}', f);
    }
    fprintf(f, "]}}\n");
}

static void print_table(const rb_state *s)
{
    const rb_args *a = s->a;
    printf("robustness: %zu rows, %s eps %g (%.2f pixel levels)\n", s->n,
           a->ap.kind == CD_ATTACK_FGSM ? "FGSM" : "PGD", (double)a->ap.eps, eps_pixels(s));
    printf("  accuracy clean     %.2f%%\n", 100 * accuracy(s->clean.pred, s->ds.labels, s->n));
    printf("  accuracy attacked  %.2f%%  (%.1f%% of correct predictions flipped)\n",
           100 * accuracy(s->adv.pred, s->ds.labels, s->n), 100 * flip_rate(s));
    if (s->mc)
        printf("  MC (T=%d) accuracy clean %.2f%%, attacked %.2f%%\n", a->mc,
               100 * accuracy(s->clean.mc_pred, s->ds.labels, s->n),
               100 * accuracy(s->adv.mc_pred, s->ds.labels, s->n));
    printf("  detection AUROC (attacked = positive)   all    successful attacks\n");
    det_score d[5];
    int nd = det_scores(s, d);
    for (int i = 0; i < nd; i++) {
        double all, succ;
        aurocs(s, &d[i], &all, &succ);
        printf("    %-24s            %.3f  %.3f\n", d[i].name, all, succ);
    }
}

static cd_status save_arrays(const rb_state *s, cd_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/clean.npy", s->a->outdir);
    cd_status st = cd_npy_save(path, s->clean_all, err);
    snprintf(path, sizeof path, "%s/adversarial.npy", s->a->outdir);
    return st == CD_OK ? cd_npy_save(path, s->adv_all, err) : st;
}

/* ------------------------------------------------------------ setup */

static cd_status open_all(rb_state *s, const char *model, cd_error *err)
{
    const rb_args *a = s->a;
    cd_status st = cd_model_load(model, NULL, &s->m, err);
    if (st != CD_OK)
        return st;
    int nd = -1;
    int64_t d[CD_MAX_DIMS];
    s->k = cd_model_label_count(s->m);
    if (cd_model_output_shape(s->m, 0, &nd, d, NULL) == CD_OK && nd == 2 && d[1] > 0)
        s->k = (int)d[1];
    if (s->k < 2 || s->k > 4096)
        return cli_set_error(err, CD_ERR_UNSUPPORTED, "robustness needs a classifier with a "
                             "known number of classes (2..4096); found %d", s->k);
    s->probs_out = strcmp(cd_model_output_kind(s->m), "probabilities") == 0;
    if (cd_model_input_shape(s->m, 0, &nd, d, NULL) != CD_OK || nd < 2 || d[1] < 1 || d[1] > 64)
        return cli_set_error(err, CD_ERR_UNSUPPORTED, "robustness needs an (N, C, ...) input "
                             "with a fixed C <= 64");
    s->channels = (int)d[1];
    if ((st = cd_explain_input_range(s->m, s->channels, s->lo, s->hi, err)) != CD_OK ||
        (st = calib_data_load(s->m, a->data, a->labels, s->k, &s->ds, err)) != CD_OK)
        return st;
    s->n = a->limit > 0 && (size_t)a->limit < s->ds.n ? (size_t)a->limit : s->ds.n;
    if (s->n == 0)
        return cli_set_error(err, CD_ERR_INVALID_ARGUMENT, "no rows in '%s'", a->data);
    cd_session_options so = {.threads = a->threads};
    cd_explain_options eo = {.threads = a->threads, .max_batch = a->batch};
    if ((st = cd_session_create(s->m, &so, &s->sess, err)) != CD_OK ||
        (st = cd_explainer_create(s->m, &eo, &s->ex, err)) != CD_OK)
        return st;
    if (a->mc) {
        cd_mc_options mo;
        cd_mc_options_default(&mo);
        mo.samples = a->mc;
        mo.seed = a->seed;
        mo.threads = a->threads;
        if ((st = cd_mc_session_create(s->m, &mo, &s->mc, err)) != CD_OK)
            return st;
    }
    if (!pop_alloc(&s->clean, s->n, a->mc) || !pop_alloc(&s->adv, s->n, a->mc))
        return cli_set_error(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    return CD_OK;
}

static void close_all(rb_state *s)
{
    pop_free(&s->clean);
    pop_free(&s->adv);
    cd_tensor_free(s->clean_all);
    cd_tensor_free(s->adv_all);
    cd_mc_session_free(s->mc);
    cd_explainer_free(s->ex);
    cd_session_free(s->sess);
    calib_data_free(&s->ds);
    cd_model_free(s->m);
}

int cmd_robustness(int argc, char **argv)
{
    rb_args a = {0};
    int rc = parse(argc, argv, &a);
    if (rc)
        return rc == 1 ? 0 : 2;
    if (iu_mkdir("robustness", a.outdir))
        return 1;
    rb_state s = {.a = &a};
    cd_error err = {0};
    char path[4096];
    snprintf(path, sizeof path, "%s/robustness.json", a.outdir);
    cd_status st = open_all(&s, argv[optind], &err);
    if (st == CD_OK)
        st = run_all(&s, &err);
    if (st == CD_OK && a.save_arrays)
        st = save_arrays(&s, &err);
    if (st == CD_OK)
        st = iu_write_file(path, write_json, &s, &err);
    if (st == CD_OK) {
        if (a.json)
            write_json(stdout, &s);
        else
            print_table(&s);
    }
    close_all(&s);
    return st == CD_OK ? 0 : cli_fail_err("robustness", &err);
}
