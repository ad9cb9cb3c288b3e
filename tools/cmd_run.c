/* candor run MODEL INPUT.npy [-o OUTPUT.npy]
 *            [--input NAME=FILE]... [--output NAME=FILE]... [--threads N] [--force] */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define MAX_IO 32

static void help(FILE *f)
{
    fprintf(f,
            "usage: candor run MODEL [INPUT.npy] [-o OUTPUT.npy] [options]\n\n"
            "Runs the model on raw tensors (.npy, C order; float64/integer data is\n"
            "converted to the input's type when that is float32) and writes raw outputs.\n"
            "Without -o/--output, prints each output's shape and summary statistics.\n\n"
            "options:\n"
            "  -o, --out FILE         write the first graph output to FILE (.npy)\n"
            "  --input NAME=FILE      bind graph input NAME (repeatable)\n"
            "  --output NAME=FILE     write tensor NAME (any graph tensor, repeatable)\n"
            "  --threads N            threads (default: all cores)\n"
            "  --force                overwrite existing output files\n"
            "  --json                 print a JSON summary of the outputs on stdout\n"
            "  -h, --help             this help\n");
}

typedef struct binding {
    char *name; /* NULL = positional */
    const char *file;
} binding;

static int split_binding(const char *arg, binding *b, const char *what)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg || !eq[1]) {
        cli_fail("run: %s '%s' must be NAME=FILE", what, arg);
        return -1;
    }
    b->name = strndup(arg, (size_t)(eq - arg));
    b->file = eq + 1;
    return b->name ? 0 : -1;
}

static void summarize(FILE *f, const char *name, const cd_tensor *t, bool json, bool first)
{
    const int64_t *d = cd_tensor_dims(t);
    size_t n = cd_tensor_numel(t);
    double mn = INFINITY, mx = -INFINITY, sum = 0;
    size_t nonfinite = 0;
    if (cd_tensor_dtype(t) == CD_FLOAT32) {
        const float *p = cd_tensor_cdata(t);
        for (size_t i = 0; i < n; i++) {
            if (!isfinite(p[i])) {
                nonfinite++;
                continue;
            }
            mn = fmin(mn, p[i]);
            mx = fmax(mx, p[i]);
            sum += p[i];
        }
    }
    size_t finite = n - nonfinite;
    if (json) {
        fprintf(f, "%s{\"name\":\"%s\",\"dtype\":\"%s\",\"shape\":[", first ? "" : ",", name,
                cd_dtype_name(cd_tensor_dtype(t)));
        for (int i = 0; i < cd_tensor_ndim(t); i++)
            fprintf(f, i ? ",%lld" : "%lld", (long long)d[i]);
        fprintf(f, "],\"nonfinite\":%zu", nonfinite);
        if (finite)
            fprintf(f, ",\"min\":%.9g,\"max\":%.9g,\"mean\":%.9g", mn, mx, sum / (double)finite);
        fputc('}', f);
        return;
    }
    fprintf(f, "%s %s [", name, cd_dtype_name(cd_tensor_dtype(t)));
    for (int i = 0; i < cd_tensor_ndim(t); i++)
        fprintf(f, i ? ",%lld" : "%lld", (long long)d[i]);
    fprintf(f, "]");
    if (finite)
        fprintf(f, " min %.6g max %.6g mean %.6g", mn, mx, sum / (double)finite);
    if (nonfinite)
        fprintf(f, "  WARNING: %zu non-finite value(s)", nonfinite);
    fputc('\n', f);
}

/* Loads an input .npy, converting to the graph input's dtype when it is float32. */
static cd_status load_input(const cd_model *m, const char *name, const char *file,
                            cd_tensor **out, cd_error *err)
{
    cd_dtype want = CD_FLOAT32;
    for (int i = 0; i < cd_model_input_count(m); i++)
        if (!name ? i == 0 : strcmp(cd_model_input_name(m, i), name) == 0)
            want = cd_model_input_dtype(m, i);
    if (want == CD_FLOAT32 || want == CD_DTYPE_UNDEFINED)
        return cd_npy_load_f32(file, out, err);
    return cd_npy_load(file, out, err);
}

int cmd_run(int argc, char **argv)
{
    static const struct option opts[] = {{"out", required_argument, 0, 'o'},
                                         {"input", required_argument, 0, 'i'},
                                         {"output", required_argument, 0, 'O'},
                                         {"threads", required_argument, 0, 't'},
                                         {"force", no_argument, 0, 'f'},
                                         {"json", no_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    binding ins[MAX_IO] = {0}, outs[MAX_IO] = {0};
    int n_in = 0, n_out = 0, threads = 0, c, rc = 1;
    bool force = false, json = false;
    const char *first_out = NULL;
    optind = 1;
    while ((c = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
        switch (c) {
        case 'h': help(stdout); return 0;
        case 'o': first_out = optarg; break;
        case 'i':
            if (n_in >= MAX_IO || split_binding(optarg, &ins[n_in], "--input") != 0)
                goto usage;
            n_in++;
            break;
        case 'O':
            if (n_out >= MAX_IO || split_binding(optarg, &outs[n_out], "--output") != 0)
                goto usage;
            n_out++;
            break;
        case 't':
            threads = atoi(optarg);
            if (threads < 1) {
                cli_fail("run: --threads must be a positive integer");
                goto usage;
            }
            break;
        case 'f': force = true; break;
        case 'j': json = true; break;
        default: goto usage;
        }
    }
    if (optind >= argc)
        goto usage;
    const char *model_path = argv[optind++];
    for (; optind < argc; optind++) {
        if (n_in >= MAX_IO)
            goto usage;
        ins[n_in++] = (binding){NULL, argv[optind]};
    }
    if (first_out && n_out < MAX_IO) {
        for (int k = n_out; k > 0; k--)
            outs[k] = outs[k - 1];
        outs[0] = (binding){NULL, first_out};
        n_out++;
    }

    cd_error err;
    cd_model *m = NULL;
    cd_session *s = NULL;
    cd_tensor *in_t[MAX_IO] = {0}, *out_t[MAX_IO] = {0};
    const char *in_names[MAX_IO], *out_names[MAX_IO];
    if (cd_model_load(model_path, NULL, &m, &err) != CD_OK) {
        cli_fail_err("run", &err);
        goto done;
    }
    if (n_in == 0) {
        cli_fail("run: no input given (pass INPUT.npy or --input NAME=FILE)");
        goto done;
    }
    for (int i = 0; i < n_in; i++) {
        in_names[i] = ins[i].name ? ins[i].name : cd_model_input_name(m, i);
        if (!in_names[i]) {
            cli_fail("run: the model has %d input(s), %d given", cd_model_input_count(m), n_in);
            goto done;
        }
        if (load_input(m, in_names[i], ins[i].file, &in_t[i], &err) != CD_OK) {
            cli_fail_err("run", &err);
            goto done;
        }
    }
    int n_fetch = n_out ? n_out : cd_model_output_count(m);
    if (n_fetch > MAX_IO)
        n_fetch = MAX_IO;
    for (int j = 0; j < n_fetch; j++)
        out_names[j] = j < n_out && outs[j].name ? outs[j].name : cd_model_output_name(m, j);
    cd_session_options so = {.threads = threads};
    if (cd_session_create(m, &so, &s, &err) != CD_OK ||
        cd_session_run(s, n_in, in_names, (const cd_tensor *const *)in_t, n_fetch, out_names,
                       out_t, &err) != CD_OK) {
        cli_fail_err("run", &err);
        goto done;
    }
    for (int j = 0; j < n_out; j++)
        if (cd_npy_save_ex(outs[j].file, out_t[j], force, &err) != CD_OK) {
            cli_fail_err("run", &err);
            goto done;
        }
    if (json)
        printf("{\"outputs\":[");
    for (int j = 0; j < n_fetch; j++)
        summarize(n_out && !json ? stderr : stdout, out_names[j], out_t[j], json, j == 0);
    if (json)
        printf("]}\n");
    rc = 0;
done:
    for (int i = 0; i < MAX_IO; i++) {
        cd_tensor_free(in_t[i]);
        cd_tensor_free(out_t[i]);
        free(ins[i].name);
        free(outs[i].name);
    }
    cd_session_free(s);
    cd_model_free(m);
    return rc;
usage:
    help(stderr);
    for (int i = 0; i < MAX_IO; i++) {
        free(ins[i].name);
        free(outs[i].name);
    }
    return 2;
}
