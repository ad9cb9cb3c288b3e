/* candor bench MODEL [--input X.npy] [--batch N] [--threads N] [--runs N]
 *              [--warmup N] [--json]
 *
 * Times the plain forward pass (cd_session_run) on one input: median and
 * minimum latency, throughput, and the process's peak RSS (getrusage). The
 * input is X.npy (its batch item 0 repeated to --batch items) or, without
 * --input, deterministic pseudo-random values in [-1, 1) of the model's
 * declared input shape (dynamic dims: batch = --batch, others must be fixed). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "candor/image.h"
#include "cli.h"

typedef struct bench_opts {
    const char *model, *input;
    int batch, threads, runs, warmup;
    bool json;
} bench_opts;

static void help(FILE *f)
{
    fprintf(f,
            "usage: candor bench MODEL [options]\n\n"
            "Measures the forward pass: median/min latency, throughput, peak RSS.\n\n"
            "options:\n"
            "  --input FILE.npy   input tensor (item 0 is repeated to the batch size)\n"
            "  --batch N          batch size (default 1)\n"
            "  --threads N        threads for candor and OpenBLAS (default: all cores)\n"
            "  --runs N           timed runs (default 20)\n"
            "  --warmup N         untimed runs first (default 3)\n"
            "  --json             one JSON object on stdout\n"
            "  -h, --help         this help\n");
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static long peak_rss_kib(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : -1;
}

/* User + system CPU time of the whole process (all threads), in ms. */
static double cpu_ms(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int parse_int(const char *s, int lo, int *out)
{
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (!s[0] || *end || v < lo || v > 1000000)
        return -1;
    *out = (int)v;
    return 0;
}

static int parse_args(int argc, char **argv, bench_opts *o)
{
    static const struct option longopts[] = {
        {"input", required_argument, 0, 'i'},  {"batch", required_argument, 0, 'b'},
        {"threads", required_argument, 0, 't'}, {"runs", required_argument, 0, 'r'},
        {"warmup", required_argument, 0, 'w'}, {"json", no_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    *o = (bench_opts){.batch = 1, .runs = 20, .warmup = 3};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'i': o->input = optarg; break;
        case 'b': bad = parse_int(optarg, 1, &o->batch); break;
        case 't': bad = parse_int(optarg, 0, &o->threads); break;
        case 'r': bad = parse_int(optarg, 1, &o->runs); break;
        case 'w': bad = parse_int(optarg, 0, &o->warmup); break;
        case 'j': o->json = true; break;
        case 'h': help(stdout); return 0;
        default: help(stderr); return 2;
        }
        if (bad) {
            fprintf(stderr, "candor bench: bad value '%s' for --%s\n", optarg,
                    longopts[c == 'b' ? 1 : c == 't' ? 2 : c == 'r' ? 3 : 4].name);
            return 2;
        }
    }
    if (optind != argc - 1) {
        help(stderr);
        return 2;
    }
    o->model = argv[optind];
    return -1;
}

/* Shape of input 0 with the batch dim set; fails on other dynamic dims. */
static cd_status input_shape(const cd_model *m, int batch, int *ndim, int64_t *dims,
                             cd_error *err)
{
    cd_status st = cd_model_input_shape(m, 0, ndim, dims, err);
    if (st != CD_OK)
        return st;
    if (*ndim < 1)
        return cli_set_error(err, CD_ERR_INVALID_ARGUMENT,
                             "input '%s' has an unknown rank; pass --input",
                             cd_model_input_name(m, 0));
    dims[0] = batch;
    for (int i = 1; i < *ndim; i++)
        if (dims[i] < 1)
            return cli_set_error(err, CD_ERR_INVALID_ARGUMENT,
                                 "input '%s' dim %d is dynamic; pass --input",
                                 cd_model_input_name(m, 0), i);
    return CD_OK;
}

/* Builds the batch: item 0 of the file repeated, or random values. */
static cd_status make_input(const cd_model *m, const bench_opts *o, cd_tensor **out,
                            cd_error *err)
{
    int ndim;
    int64_t dims[CD_MAX_DIMS];
    cd_tensor *src = NULL;
    cd_status st;
    if (o->input) {
        if ((st = cd_npy_load_f32(o->input, &src, err)) != CD_OK)
            return st;
        ndim = cd_tensor_ndim(src);
        memcpy(dims, cd_tensor_dims(src), (size_t)ndim * sizeof *dims);
        dims[0] = o->batch;
    } else if ((st = input_shape(m, o->batch, &ndim, dims, err)) != CD_OK) {
        return st;
    }
    if ((st = cd_tensor_create(CD_FLOAT32, ndim, dims, out, err)) != CD_OK) {
        cd_tensor_free(src);
        return st;
    }
    float *x = cd_tensor_data(*out);
    size_t total = cd_tensor_numel(*out), item = total / (size_t)o->batch;
    if (src) {
        const float *s = cd_tensor_cdata(src);
        for (int b = 0; b < o->batch; b++)
            memcpy(x + (size_t)b * item, s, item * sizeof *x);
        cd_tensor_free(src);
        return CD_OK;
    }
    uint64_t state = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < total; i++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(state >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
    }
    return CD_OK;
}

/* Wall time of each timed run into times, CPU time per timed run into *cpu. */
static cd_status time_runs(cd_session *s, const cd_tensor *x, const bench_opts *o,
                           double *times, double *cpu, cd_error *err)
{
    double c0 = 0;
    for (int r = 0; r < o->warmup + o->runs; r++) {
        if (r == o->warmup)
            c0 = cpu_ms();
        cd_tensor *y = NULL;
        double t0 = now_ms();
        cd_status st = cd_session_run(s, 1, NULL, &x, 1, NULL, &y, err);
        double t1 = now_ms();
        cd_tensor_free(y);
        if (st != CD_OK)
            return st;
        if (r >= o->warmup)
            times[r - o->warmup] = t1 - t0;
    }
    *cpu = (cpu_ms() - c0) / o->runs;
    return CD_OK;
}

static void report(const bench_opts *o, int threads, double *times, double cpu,
                   long rss_before, long rss_peak)
{
    qsort(times, (size_t)o->runs, sizeof *times, cmp_double);
    double med = o->runs % 2 ? times[o->runs / 2]
                             : (times[o->runs / 2 - 1] + times[o->runs / 2]) / 2;
    double thr = med > 0 ? o->batch * 1000.0 / med : 0;
    if (o->json) {
        printf("{\"runtime\":\"candor\",\"model\":\"%s\",\"batch\":%d,\"threads\":%d,"
               "\"runs\":%d,\"median_ms\":%.4f,\"min_ms\":%.4f,\"cpu_ms_per_run\":%.4f,"
               "\"throughput_per_s\":%.3f,\"rss_before_load_kib\":%ld,\"max_rss_kib\":%ld}\n",
               o->model, o->batch, threads, o->runs, med, times[0], cpu, thr, rss_before,
               rss_peak);
        return;
    }
    printf("model       %s\nbatch       %d\nthreads     %d\nruns        %d (+%d warm-up)\n"
           "median      %.3f ms\nmin         %.3f ms\nCPU         %.3f ms per run (all threads)\n"
           "throughput  %.1f items/s\n"
           "peak RSS    %.1f MiB (%.1f MiB before loading the model)\n",
           o->model, o->batch, threads, o->runs, o->warmup, med, times[0], cpu, thr,
           rss_peak / 1024.0, rss_before / 1024.0);
}

int cmd_bench(int argc, char **argv)
{
    bench_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0)
        return rc;
    long rss_before = peak_rss_kib();
    cd_error err = {0};
    cd_model *m = NULL;
    cd_session *s = NULL;
    cd_tensor *x = NULL;
    double *times = calloc((size_t)o.runs, sizeof *times);
    double cpu = 0;
    cd_session_options so = {.threads = o.threads};
    cd_status st = times ? CD_OK : cli_set_error(&err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    if (st == CD_OK)
        st = cd_model_load(o.model, NULL, &m, &err);
    if (st == CD_OK)
        st = make_input(m, &o, &x, &err);
    if (st == CD_OK)
        st = cd_session_create(m, &so, &s, &err);
    if (st == CD_OK)
        st = time_runs(s, x, &o, times, &cpu, &err);
    if (st == CD_OK)
        report(&o, o.threads > 0 ? o.threads : (int)sysconf(_SC_NPROCESSORS_ONLN), times, cpu,
               rss_before, peak_rss_kib());
    cd_session_free(s);
    cd_tensor_free(x);
    cd_model_free(m);
    free(times);
    return st == CD_OK ? 0 : cli_fail_err("bench", &err);
}
