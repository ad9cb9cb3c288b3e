/* Explanation cost (issue 6, acceptance 4): median times of one forward pass
 * (cd_session_run, the fast fused plan) and, on the same input, of
 *   - the vanilla gradient (cd_explain_gradient, batch 1: forward on the
 *     tape plan + backward),
 *   - Integrated Gradients with 32 Gauss-Legendre steps, batched
 *     (max_batch = BATCH rows per forward+backward pass),
 *   - occlusion and RISE, whose masked copies run BATCH rows per forward
 *     pass (fast plan): per-mask cost in forward-pass equivalents.
 * Runs are interleaved (forward, gradient, IG, ...) so that load from other
 * processes hits every method alike; the first round is a warm-up. Process
 * CPU time is recorded too: on a loaded machine its ratios are the steadier
 * ones (wall time counts time spent waiting for a core).
 *
 *   explain_cost MODEL X.npy THREADS RUNS BATCH [grad-only]
 * prints one JSON object; "grad-only" skips occlusion and RISE. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench_util.h"
#include "candor/candor.h"
#include "candor/explain.h"

static double cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int die(const char *what, const cd_error *err)
{
    fprintf(stderr, "explain_cost: %s: %s\n", what, err->message);
    return 1;
}

enum { FWD, GRAD, IG, OCC, RISE, N_KIND };

int main(int argc, char **argv)
{
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: explain_cost MODEL X.npy THREADS RUNS BATCH [grad-only]\n");
        return 2;
    }
    int threads = atoi(argv[3]), runs = atoi(argv[4]), batch = atoi(argv[5]);
    int grad_only = argc == 7;
    cd_error err = {0};
    cd_model *m = NULL;
    cd_tensor *x = NULL, *y = NULL, *g = NULL;
    if (cd_model_load(argv[1], NULL, &m, &err) != CD_OK)
        return die("load", &err);
    if (cd_npy_load_f32(argv[2], &x, &err) != CD_OK)
        return die("input", &err);
    cd_session *s = NULL;
    cd_session_options so = {.threads = threads};
    cd_explainer *e = NULL;
    cd_explain_options eo = {.threads = threads, .max_batch = batch};
    if (cd_session_create(m, &so, &s, &err) != CD_OK ||
        cd_explainer_create(m, &eo, &e, &err) != CD_OK)
        return die("create", &err);
    cd_explain_params ig, occ, rise;
    cd_explain_params_default(&ig, CD_EXPLAIN_IG);
    ig.steps = 32;
    cd_explain_params_default(&occ, CD_EXPLAIN_OCCLUSION);
    occ.window = 56; /* 4 x 4 = 16 windows on 224 x 224 */
    occ.stride = 56;
    cd_explain_params_default(&rise, CD_EXPLAIN_RISE);
    rise.rise_masks = 32;
    double *t[N_KIND], *c[N_KIND];
    for (int k = 0; k < N_KIND; k++) {
        t[k] = calloc((size_t)runs, sizeof(double));
        c[k] = calloc((size_t)runs, sizeof(double));
    }
    const cd_tensor *in[1] = {x};
    int occ_windows = 0;
    for (int r = -1; r < runs; r++) {
        double c0 = cpu_ms(), t0 = now_ms();
        if (cd_session_run(s, 1, NULL, in, 1, NULL, &y, &err) != CD_OK)
            return die("run", &err);
        double t1 = now_ms(), c1 = cpu_ms();
        if (cd_explain_gradient(e, x, NULL, 1, NULL, &g, NULL, NULL, &err) != CD_OK)
            return die("gradient", &err);
        double t2 = now_ms(), c2 = cpu_ms();
        cd_explanation ex;
        if (cd_explain(e, x, &ig, &ex, &err) != CD_OK)
            return die("ig", &err);
        double t3 = now_ms(), c3 = cpu_ms();
        cd_explanation_free(&ex);
        if (!grad_only && cd_explain(e, x, &occ, &ex, &err) != CD_OK)
            return die("occlusion", &err);
        double t4 = now_ms(), c4 = cpu_ms();
        if (!grad_only)
            cd_explanation_free(&ex);
        if (!grad_only && cd_explain(e, x, &rise, &ex, &err) != CD_OK)
            return die("rise", &err);
        double t5 = now_ms(), c5 = cpu_ms();
        if (!grad_only)
            cd_explanation_free(&ex);
        cd_tensor_free(y);
        cd_tensor_free(g);
        y = g = NULL;
        occ_windows = 16;
        if (r >= 0) {
            t[FWD][r] = t1 - t0;
            t[GRAD][r] = t2 - t1;
            t[IG][r] = t3 - t2;
            t[OCC][r] = t4 - t3;
            t[RISE][r] = t5 - t4;
            c[FWD][r] = c1 - c0;
            c[GRAD][r] = c2 - c1;
            c[IG][r] = c3 - c2;
            c[OCC][r] = c4 - c3;
            c[RISE][r] = c5 - c4;
        }
    }
    double f = median(t[FWD], runs), gr = median(t[GRAD], runs), i32 = median(t[IG], runs);
    double oc = median(t[OCC], runs), ri = median(t[RISE], runs);
    double cf = median(c[FWD], runs), cg = median(c[GRAD], runs), ci = median(c[IG], runs);
    double co = median(c[OCC], runs), cr = median(c[RISE], runs);
    /* Occlusion and RISE also score the clean input once (+1 pass). */
    printf("{\"threads\":%d,\"runs\":%d,\"batch\":%d,\"forward_ms\":%.2f,\"gradient_ms\":%.2f,"
           "\"gradient_ratio\":%.2f,\"ig32_ms\":%.2f,\"ig32_forward_equivalents\":%.2f,"
           "\"occlusion_windows\":%d,\"occlusion_ms\":%.2f,\"occlusion_forward_equivalents_per_window\":%.3f,"
           "\"rise_masks\":%d,\"rise_ms\":%.2f,\"rise_forward_equivalents_per_mask\":%.3f,"
           "\"forward_cpu_ms\":%.2f,\"gradient_cpu_ratio\":%.2f,\"ig32_cpu_forward_equivalents\":%.2f,"
           "\"occlusion_cpu_per_window\":%.3f,\"rise_cpu_per_mask\":%.3f}\n",
           threads, runs, batch, f, gr, gr / f, i32, i32 / f, occ_windows, oc,
           (oc / f - 1) / occ_windows, rise.rise_masks, ri, (ri / f - 1) / rise.rise_masks, cf, cg / cf, ci / cf, (co / cf - 1) / occ_windows,
           (cr / cf - 1) / rise.rise_masks);
    for (int k = 0; k < N_KIND; k++) {
        free(t[k]);
        free(c[k]);
    }
    cd_explainer_free(e);
    cd_session_free(s);
    cd_tensor_free(x);
    cd_model_free(m);
    return 0;
}
