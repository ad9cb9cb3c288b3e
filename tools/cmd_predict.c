/* candor predict MODEL INPUT... [--top K] [--json] [--threads N]
 *                 [--mc T] [--seed S] [--dropout SITE:P[:channel]]... [--level L]
 *                 [--ensemble M1.onnx M2.onnx ... | --member M.onnx ...]
 *                 [--samples FILE.npy] [--csv FILE] [--regression] [--log-variance]
 *                 [--maps DIR [--overlay[=ALPHA]]]
 * The uncertainty options are handled in predict_mc.c. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "inputs.h"
#include "mpi_shard.h"
#include "predict_mc.h"
#include "predict_calib.h"
#include "predict_surrogate.h"
#include "cli_util.h"

static void help(FILE *f)
{
    fprintf(f,
            "usage: candor predict MODEL INPUT... [options]\n\n"
            "Classifies images (JPEG/PNG) or tensors (.npy); INPUT may be a folder (its\n"
            "images and .npy files, sorted by name). Images are preprocessed as the model's\n"
            "sidecar (MODEL.candor.json) says. Softmax is applied to the first output unless\n"
            "the sidecar declares it as probabilities.\n\n"
            "options:\n"
            "  --top K        classes to show per input (default 3)\n"
            "  --json         one JSON document on stdout (array of per-input results)\n"
            "  --threads N    threads (default: all cores)\n\n"
            "uncertainty (docs/uncertainty.md):\n"
            "  --mc T         MC dropout with T samples per input (Dropout nodes + sites)\n"
            "  --seed S       seed of the counter-based generator (default 0)\n"
            "  --dropout SITE:P[:channel]  declare a dropout site after tensor/node SITE\n"
            "                 with probability P (repeatable; channel = Dropout2d)\n"
            "  --ensemble     the leading *.onnx arguments are ensemble members\n"
            "  --member M     add ensemble member M (repeatable)\n"
            "  --level L      interval level (default 0.95)\n"
            "  --samples F    write the sampled probabilities, shape (inputs, samples, K)\n"
            "  --csv F        one row of summary columns per input\n"
            "  --regression   summarize outputs as regression (mean, std, interval)\n"
            "  --log-variance output 1 is a log-variance head (with --regression)\n"
            "  --maps DIR     dense (N, C, H, W) outputs: write per-pixel entropy, mutual\n"
            "                 information, winning-class std and argmax as .npy and PNG\n"
            "  --overlay[=A]  with --maps, also draw the maps over the input (alpha A, 0.5)\n"
            "  --calibration F  apply a calibration file from 'candor calibrate': calibrated\n"
            "                 probabilities, conformal prediction set, abstain-or-predict\n"
            "  --alpha A      with --calibration: conformal miscoverage (default: the file's)\n"
            "  --surrogate F  show which rule of a surrogate tree ('candor surrogate') fires\n"
            "  -h, --help     this help\n");
}

typedef struct predict_opts {
    int top;
    bool json;
    int threads;
    predict_calib *calib; /* --calibration (predict_calib.c) */
} predict_opts;

/* Prints one row of K probabilities. */
static void report_row(const cd_model *m, const char *name, const float *p, int k,
                       const predict_opts *o, bool first)
{
    int top = o->top < k ? o->top : k;
    int idx[64];
    bool used[4096] = {0};
    bool finite = true;
    for (int i = 0; i < k; i++)
        finite = finite && isfinite(p[i]);
    if (top > 64)
        top = 64;
    for (int t = 0; t < top; t++) {
        int best = -1;
        for (int i = 0; i < k && i < 4096; i++)
            if (!used[i] && (best < 0 || p[i] > p[best]))
                best = i;
        idx[t] = best;
        used[best] = true;
    }
    char buf[32];
    if (o->json) {
        printf("%s{\"input\":", first ? "" : ",\n");
        cli_json_str(stdout, name);
        printf(",\"finite\":%s,\"top\":[", finite ? "true" : "false");
        for (int t = 0; t < top; t++) {
            printf("%s{\"class\":%d,\"label\":", t ? "," : "", idx[t]);
            cli_json_str(stdout, cli_label(m, idx[t], buf, sizeof buf));
            printf(",\"probability\":%.6g}", isfinite(p[idx[t]]) ? p[idx[t]] : 0.0);
        }
        printf("],\"probabilities\":[");
        for (int i = 0; i < k; i++)
            printf(i ? ",%.6g" : "%.6g", isfinite(p[i]) ? p[i] : 0.0);
        printf("]}");
        return;
    }
    printf("%s\n", name);
    if (!finite) {
        printf("  WARNING: the model produced NaN/Inf for this input; no prediction\n");
        return;
    }
    for (int t = 0; t < top; t++)
        printf("  %-24s %6.2f%%\n", cli_label(m, idx[t], buf, sizeof buf), 100.0 * p[idx[t]]);
}

static int predict_one(const cd_model *m, cd_session *s, const char *path, const predict_opts *o,
                       bool *first)
{
    cd_error err;
    cd_tensor *x = NULL, *y = NULL;
    const char *kind = cd_model_output_kind(m);
    if (inputs_load_tensor(m, path, &x, &err) != CD_OK ||
        cd_session_run(s, 1, NULL, (const cd_tensor *const *)&x, 1, NULL, &y, &err) != CD_OK) {
        cd_tensor_free(x);
        if (strstr(err.message, path))
            fprintf(stderr, "candor predict: error (%s): %s\n", cd_status_name(err.code),
                    err.message);
        else
            fprintf(stderr, "candor predict: error (%s): %s: %s\n", cd_status_name(err.code),
                    path, err.message);
        return 1;
    }
    int nd = cd_tensor_ndim(y);
    const int64_t *d = cd_tensor_dims(y);
    int64_t rows = nd >= 1 ? d[0] : 1, k = 1;
    for (int i = 1; i < nd; i++)
        k *= d[i];
    int rc = 0;
    if (nd != 2 || k < 1 || k > 4096) {
        fprintf(stderr, "candor predict: %s: output shape is not (N, classes) with at most 4096 "
                        "classes; use 'candor run' for raw outputs\n", path);
        rc = 1;
    } else if (o->calib) {
        rc = predict_calib_print(o->calib, m, path, cd_tensor_data(y), (long long)rows, (int)k,
                                 kind && strcmp(kind, "probabilities") == 0, o->top, o->json,
                                 first);
    } else {
        float *p = cd_tensor_data(y);
        if (!kind || strcmp(kind, "probabilities") != 0)
            softmax_rows(p, (size_t)rows, (size_t)k);
        for (int64_t r = 0; r < rows; r++) {
            char name[4096];
            if (rows > 1)
                snprintf(name, sizeof name, "%s[%lld]", path, (long long)r);
            else
                snprintf(name, sizeof name, "%s", path);
            report_row(m, name, p + r * k, (int)k, o, *first);
            *first = false;
        }
    }
    cd_tensor_free(x);
    cd_tensor_free(y);
    return rc;
}

static bool is_onnx_name(const char *s)
{
    size_t n = strlen(s);
    return n > 5 && strcasecmp(s + n - 5, ".onnx") == 0;
}

/* Hands over to predict_mc.c: models are the first positional argument (or
 * the leading .onnx ones with --ensemble) plus any --member. */
static int predict_uncertain(const predict_opts *o, predict_mc_opts *mo, bool ensemble,
                             int n_members, const char **members, int argc, char **argv)
{
    mo->top = o->top;
    mo->json = o->json;
    mo->threads = o->threads;
    int used = 0;
    while (used < argc && mo->n_models < PMC_MAX && (used == 0 || (ensemble && is_onnx_name(argv[used]))))
        mo->models[mo->n_models++] = argv[used++];
    for (int i = 0; i < n_members && mo->n_models < PMC_MAX; i++)
        mo->models[mo->n_models++] = members[i];
    if (o->top < 1 || o->threads < 0) {
        cli_fail("predict: --top and --threads must be positive integers");
        return 2;
    }
    if (mo->n_models == 0 || argc - used < 1) {
        help(stderr);
        return 2;
    }
    return predict_mc_run(mo, argc - used, argv + used);
}

int cmd_predict(int argc, char **argv)
{
    static const struct option opts[] = {{"top", required_argument, 0, 'k'},
                                         {"json", no_argument, 0, 'j'},
                                         {"threads", required_argument, 0, 't'},
                                         {"help", no_argument, 0, 'h'},
                                         {"mc", required_argument, 0, 'M'},
                                         {"seed", required_argument, 0, 'S'},
                                         {"dropout", required_argument, 0, 'D'},
                                         {"ensemble", no_argument, 0, 'E'},
                                         {"member", required_argument, 0, 'm'},
                                         {"level", required_argument, 0, 'L'},
                                         {"samples", required_argument, 0, 'N'},
                                         {"csv", required_argument, 0, 'C'},
                                         {"regression", no_argument, 0, 'R'},
                                         {"log-variance", no_argument, 0, 'V'},
                                         {"maps", required_argument, 0, 'P'},
                                         {"overlay", optional_argument, 0, 'O'},
                                         {"calibration", required_argument, 0, 'c'},
                                         {"alpha", required_argument, 0, 'a'},
                                         {"surrogate", required_argument, 0, 'U'},
                                         {0, 0, 0, 0}};
    predict_opts o = {.top = 3};
    const char *calib_path = NULL, *surrogate_path = NULL;
    double calib_alpha = 0;
    static predict_mc_opts mo; /* large; one per process */
    memset(&mo, 0, sizeof mo);
    mo.T = 1;
    mo.level = 0.95;
    mo.overlay_alpha = 0.5f;
    bool uncertain = false, ensemble = false;
    int n_members = 0;
    const char *members[PMC_MAX];
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'h': help(stdout); return 0;
        case 'k': o.top = atoi(optarg); break;
        case 'j': o.json = true; break;
        case 't': o.threads = atoi(optarg); break;
        case 'M': mo.T = atoi(optarg); mo.mc = uncertain = true; break;
        case 'S': mo.seed = strtoull(optarg, NULL, 10); break;
        case 'D':
            if (mo.n_sites >= PMC_MAX || predict_mc_parse_site(optarg, &mo.sites[mo.n_sites]))
                return 2;
            mo.n_sites++;
            mo.mc = uncertain = true;
            break;
        case 'E': ensemble = uncertain = true; break;
        case 'm':
            if (n_members >= PMC_MAX)
                return cli_fail("predict: too many --member models"), 2;
            members[n_members++] = optarg;
            uncertain = true;
            break;
        case 'L': mo.level = atof(optarg); break;
        case 'N': mo.samples_path = optarg; uncertain = true; break;
        case 'C': mo.csv_path = optarg; uncertain = true; break;
        case 'R': mo.regression = uncertain = true; break;
        case 'V': mo.log_variance = uncertain = true; break;
        case 'P': mo.maps_dir = optarg; uncertain = true; break;
        case 'O':
            mo.overlay = uncertain = true;
            if (optarg)
                mo.overlay_alpha = (float)atof(optarg);
            break;
        case 'c': calib_path = optarg; break;
        case 'a': calib_alpha = atof(optarg); break;
        case 'U': surrogate_path = optarg; break;
        default: help(stderr); return 2;
        }
    }
    if (surrogate_path && (uncertain || calib_path))
        return cli_fail("predict: --surrogate does not combine with MC/ensemble/calibration options"), 2;
    if (surrogate_path)
        return predict_surrogate_run(surrogate_path, o.json, o.threads, argc - optind, argv + optind);
    if (calib_path && uncertain)
        return cli_fail("predict: --calibration does not combine with MC/ensemble options yet"), 2;
    if (calib_alpha != 0 && (!calib_path || !(calib_alpha > 0 && calib_alpha < 1)))
        return cli_fail("predict: --alpha needs --calibration and a value in (0, 1)"), 2;
    if (calib_path && predict_calib_load(calib_path, calib_alpha, &o.calib))
        return 1;
    mpi_shard_start(); /* mpirun -n N: this rank's share of the inputs (docs/scale-out.md) */
    o.threads = mpi_shard_threads(o.threads);
    if (uncertain)
        return mpi_shard_finish(predict_uncertain(&o, &mo, ensemble, n_members, members,
                                                  argc - optind, argv + optind));
    if (o.top < 1 || o.threads < 0) {
        cli_fail("predict: --top and --threads must be positive integers");
        return 2;
    }
    if (argc - optind < 2) {
        help(stderr);
        return 2;
    }
    cd_error err;
    cd_model *m = NULL;
    cd_session *s = NULL;
    if (cd_model_load(argv[optind], NULL, &m, &err) != CD_OK)
        return cli_fail_err("predict", &err);
    cd_session_options so = {.threads = o.threads};
    if (cd_session_create(m, &so, &s, &err) != CD_OK) {
        cd_model_free(m);
        return cli_fail_err("predict", &err);
    }
    input_list in;
    int failures = 0;
    if (inputs_collect(argc - optind - 1, argv + optind + 1, &in) != 0 || in.count == 0) {
        cli_fail("predict: no inputs found");
        failures = 1;
    }
    size_t from = 0, count = 0; /* this rank's inputs (all of them with one rank) */
    mpi_shard_range((size_t)in.count, &from, &count);
    bool first = from == 0, one = mpi_shard_size() == 1;
    const char *bad_input = NULL;
    mpi_progress prog;
    mpi_progress_begin(&prog, "predict: %zu/%zu", (size_t)in.count, in.count <= 20);
    prog.carriage = isatty(2);
    mpi_shard_capture_begin();
    if (o.json && in.count && mpi_shard_rank() == 0)
        printf("[");
    for (size_t i = from; i < from + count; i++) {
        int f = predict_one(m, s, in.paths[i], &o, &first);
        bad_input = f && !bad_input ? in.paths[i] : bad_input;
        failures += f;
        mpi_progress_step(&prog, i + 1 - from);
    }
    mpi_progress_end(&prog);
    if (!one) { /* rank 0 prints every rank's results, in input order, if all succeeded */
        char *out = NULL, why[1200];
        size_t out_len = 0;
        mpi_shard_capture_end(&out, &out_len);
        snprintf(why, sizeof why, bad_input ? "%d input(s) failed, the first: %s (see above)"
                                            : "setup failed (see above)", failures, bad_input);
        failures = mpi_shard_end_stdout("predict", out, out_len, failures ? why : NULL);
        free(out);
    }
    if (o.json && in.count && mpi_shard_rank() == 0 && (one || !failures))
        printf("]\n");
    int total = in.count;
    inputs_free(&in);
    cd_session_free(s);
    cd_model_free(m);
    predict_calib_free(o.calib);
    if (failures && total > 1 && one)
        fprintf(stderr, "candor predict: %d input(s) failed\n", failures);
    return mpi_shard_finish(failures ? 1 : 0);
}
