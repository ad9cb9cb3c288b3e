/* MC dropout cost: the median time of cd_mc_sample (T samples, one input)
 * against the median time of one deterministic cd_session_run, both on the
 * same model, input and thread count, measured in the same process.
 *
 *   mc_cost MODEL INPUT.npy SITE P T THREADS RUNS
 *
 * Prints one JSON line: det_ms, mc_ms, ratio, batched, prefix_steps,
 * suffix_steps. Built and run by bench/mc_cost.sh. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench_util.h"
#include "candor/candor.h"
#include "candor/image.h"
#include "candor/uncertainty.h"

static int die(const char *what, const cd_error *err)
{
    fprintf(stderr, "mc_cost: %s: %s\n", what, err->message);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 8) {
        fprintf(stderr, "usage: mc_cost MODEL INPUT.npy SITE P T THREADS RUNS\n");
        return 2;
    }
    int T = atoi(argv[5]), threads = atoi(argv[6]), runs = atoi(argv[7]);
    cd_error err;
    cd_model *m = NULL;
    cd_tensor *x = NULL, *y = NULL;
    cd_session *s = NULL;
    cd_mc_session *mc = NULL;
    if (cd_model_load(argv[1], NULL, &m, &err) != CD_OK)
        return die("load", &err);
    if (cd_npy_load_f32(argv[2], &x, &err) != CD_OK)
        return die("input", &err);
    cd_session_options so = {.threads = threads};
    if (cd_session_create(m, &so, &s, &err) != CD_OK)
        return die("session", &err);
    cd_dropout_site site = {argv[3], (float)atof(argv[4]), false};
    cd_mc_options mo;
    cd_mc_options_default(&mo);
    mo.samples = T;
    mo.threads = threads;
    mo.n_sites = 1;
    mo.sites = &site;
    if (cd_mc_session_create(m, &mo, &mc, &err) != CD_OK)
        return die("mc session", &err);
    double *det = calloc((size_t)runs, sizeof *det), *smp = calloc((size_t)runs, sizeof *smp);
    const cd_tensor *in[1] = {x};
    /* Interleaved so that load from other processes hits both alike; the
     * first round is a warm-up (plans, caches). */
    for (int r = -1; r < runs; r++) {
        double t0 = now_ms();
        if (cd_session_run(s, 1, NULL, in, 1, NULL, &y, &err) != CD_OK)
            return die("run", &err);
        double t1 = now_ms();
        cd_tensor_free(y);
        y = NULL;
        if (cd_mc_sample(mc, 1, in, 1, NULL, &y, &err) != CD_OK)
            return die("sample", &err);
        double t2 = now_ms();
        cd_tensor_free(y);
        y = NULL;
        if (r >= 0) {
            det[r] = t1 - t0;
            smp[r] = t2 - t1;
        }
    }
    cd_mc_stats st;
    cd_mc_get_stats(mc, &st);
    double d = median(det, runs), mcs = median(smp, runs);
    printf("{\"T\":%d,\"threads\":%d,\"runs\":%d,\"det_ms\":%.3f,\"mc_ms\":%.3f,\"ratio\":%.3f,"
           "\"batched\":%s,\"prefix_steps\":%d,\"suffix_steps\":%d}\n",
           T, threads, runs, d, mcs, mcs / d, st.batched ? "true" : "false", st.prefix_steps,
           st.suffix_steps);
    free(det);
    free(smp);
    cd_mc_session_free(mc);
    cd_session_free(s);
    cd_tensor_free(x);
    cd_model_free(m);
    return 0;
}
