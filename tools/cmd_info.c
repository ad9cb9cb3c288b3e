/* candor info MODEL [--shape NAME=1x3x224x224]... [--json] */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_util.h"

static void help(FILE *f)
{
    fprintf(f,
            "usage: candor info MODEL [--shape [NAME=]DIMS]... [--json]\n\n"
            "Describes an ONNX model: inputs and outputs with shapes, opset, producer,\n"
            "operator histogram, parameter count, Dropout nodes, and for concrete input\n"
            "shapes the multiply-accumulates (MACs) and planned activation memory.\n\n"
            "options:\n"
            "  --shape [NAME=]DIMS  input shape for the cost estimate, e.g. 1x3x224x224\n"
            "                       (default: declared shape, dynamic dimensions = 1)\n"
            "  --json               machine-readable output on stdout\n"
            "  -h, --help           this help\n");
}

static int parse_dims(const char *s, int *ndim, int64_t *dims)
{
    *ndim = 0;
    while (*s) {
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s || v < 0 || *ndim >= CD_MAX_DIMS)
            return -1;
        dims[(*ndim)++] = v;
        s = end;
        if (*s == 'x' || *s == ',')
            s++;
        else if (*s)
            return -1;
    }
    return *ndim > 0 ? 0 : -1;
}

typedef struct op_count {
    const char *op;
    int count;
} op_count;

static int histogram(const cd_model *m, op_count *h, int cap)
{
    int n = 0;
    for (int i = 0; i < cd_model_node_count(m); i++) {
        const char *op = cd_model_node_op_type(m, i);
        int k = 0;
        while (k < n && strcmp(h[k].op, op) != 0)
            k++;
        if (k == n && n < cap)
            h[n++] = (op_count){op, 0};
        if (k < n)
            h[k].count++;
    }
    return n;
}

static void print_shape(FILE *f, int ndim, const int64_t *dims)
{
    fputc('[', f);
    for (int d = 0; d < ndim; d++)
        fprintf(f, d ? ",%lld" : "%lld", (long long)dims[d]);
    fputc(']', f);
}

int cmd_info(int argc, char **argv)
{
    static const struct option opts[] = {{"shape", required_argument, 0, 's'},
                                         {"json", no_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    bool json = false;
    const char *shape_args[16];
    int n_shape_args = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') {
            help(stdout);
            return 0;
        } else if (c == 'j') {
            json = true;
        } else if (c == 's' && n_shape_args < 16) {
            shape_args[n_shape_args++] = optarg;
        } else {
            help(stderr);
            return 2;
        }
    }
    if (optind != argc - 1) {
        help(stderr);
        return 2;
    }
    const char *path = argv[optind];
    cd_error err;
    cd_model *m = NULL;
    if (cd_model_load(path, NULL, &m, &err) != CD_OK)
        return cli_fail_err("info", &err);

    int n_in = cd_model_input_count(m), n_out = cd_model_output_count(m);
    int ndims[64] = {0};
    int64_t dims[64][CD_MAX_DIMS];
    const int64_t *dimp[64];
    int rc = 0;
    if (n_in > 64) {
        cd_model_free(m);
        return cli_fail("info: model has too many inputs (%d)", n_in);
    }
    for (int i = 0; i < n_in; i++) {
        cd_model_input_shape(m, i, &ndims[i], dims[i], NULL);
        for (int d = 0; d < ndims[i]; d++)
            if (dims[i][d] < 0)
                dims[i][d] = 1;
        dimp[i] = dims[i];
    }
    for (int k = 0; k < n_shape_args; k++) {
        const char *arg = shape_args[k], *eq = strchr(arg, '=');
        int idx = 0;
        if (eq) {
            idx = -1;
            for (int i = 0; i < n_in; i++)
                if (strlen(cd_model_input_name(m, i)) == (size_t)(eq - arg) &&
                    strncmp(cd_model_input_name(m, i), arg, (size_t)(eq - arg)) == 0)
                    idx = i;
            arg = eq + 1;
        }
        if (idx < 0 || idx >= n_in || parse_dims(arg, &ndims[idx], dims[idx]) != 0) {
            cd_model_free(m);
            return cli_fail("info: bad --shape '%s' (expected [NAME=]DIMS like 1x3x224x224)",
                            shape_args[k]);
        }
    }
    cd_model_cost cost = {0};
    cd_error cost_err;
    bool have_cost = n_in <= 64 &&
                     cd_model_estimate_cost(m, n_in, ndims, dimp, &cost, &cost_err) == CD_OK;

    op_count hist[256];
    int n_ops = histogram(m, hist, 256);
    int n_dropout = 0;
    for (int i = 0; i < cd_model_node_count(m); i++)
        n_dropout += strcmp(cd_model_node_op_type(m, i), "Dropout") == 0;

    FILE *f = stdout;
    if (json) {
        fprintf(f, "{\"model\":");
        cli_json_str(f, path);
        fprintf(f, ",\"opset\":%d,\"producer\":", cd_model_opset(m));
        cli_json_str(f, cd_model_producer(m) ? cd_model_producer(m) : "");
        fprintf(f, ",\"nodes\":%d,\"parameters\":%llu,\"inputs\":[", cd_model_node_count(m),
                (unsigned long long)cd_model_parameter_count(m));
        for (int i = 0; i < n_in; i++) {
            int nd;
            int64_t dd[CD_MAX_DIMS];
            cd_model_input_shape(m, i, &nd, dd, NULL);
            fprintf(f, "%s{\"name\":", i ? "," : "");
            cli_json_str(f, cd_model_input_name(m, i));
            fprintf(f, ",\"dtype\":\"%s\",\"shape\":", cd_dtype_name(cd_model_input_dtype(m, i)));
            print_shape(f, nd < 0 ? 0 : nd, dd);
            fputc('}', f);
        }
        fprintf(f, "],\"outputs\":[");
        for (int i = 0; i < n_out; i++) {
            int nd;
            int64_t dd[CD_MAX_DIMS];
            cd_model_output_shape(m, i, &nd, dd, NULL);
            fprintf(f, "%s{\"name\":", i ? "," : "");
            cli_json_str(f, cd_model_output_name(m, i));
            fprintf(f, ",\"shape\":");
            print_shape(f, nd < 0 ? 0 : nd, dd);
            fputc('}', f);
        }
        fprintf(f, "],\"ops\":{");
        for (int k = 0; k < n_ops; k++) {
            fprintf(f, "%s", k ? "," : "");
            cli_json_str(f, hist[k].op);
            fprintf(f, ":%d", hist[k].count);
        }
        fprintf(f, "},\"dropout_nodes\":[");
        for (int i = 0, first = 1; i < cd_model_node_count(m); i++)
            if (strcmp(cd_model_node_op_type(m, i), "Dropout") == 0) {
                fprintf(f, "%s", first ? "" : ",");
                cli_json_str(f, cd_model_node_name(m, i));
                first = 0;
            }
        fprintf(f, "]");
        if (have_cost) {
            fprintf(f, ",\"cost\":{\"input_shapes\":[");
            for (int i = 0; i < n_in; i++) {
                fprintf(f, "%s", i ? "," : "");
                print_shape(f, ndims[i], dims[i]);
            }
            fprintf(f, "],\"macs\":%llu,\"activation_bytes\":%llu,\"constant_bytes\":%llu,"
                       "\"runtime_steps\":%d}",
                    (unsigned long long)cost.macs, (unsigned long long)cost.activation_bytes,
                    (unsigned long long)cost.constant_bytes, cost.runtime_steps);
        } else {
            fprintf(f, ",\"cost\":null,\"cost_error\":");
            cli_json_str(f, cost_err.message);
        }
        fprintf(f, "}\n");
    } else {
        fprintf(f, "model      %s\nopset      %d\nproducer   %s\nnodes      %d\nparameters %llu\n",
                path, cd_model_opset(m), cd_model_producer(m) ? cd_model_producer(m) : "",
                cd_model_node_count(m), (unsigned long long)cd_model_parameter_count(m));
        for (int i = 0; i < n_in; i++) {
            int nd;
            int64_t dd[CD_MAX_DIMS];
            cd_model_input_shape(m, i, &nd, dd, NULL);
            fprintf(f, "input      %s %s ", cd_model_input_name(m, i),
                    cd_dtype_name(cd_model_input_dtype(m, i)));
            print_shape(f, nd < 0 ? 0 : nd, dd);
            fprintf(f, "  (-1 = dynamic)\n");
        }
        for (int i = 0; i < n_out; i++) {
            int nd;
            int64_t dd[CD_MAX_DIMS];
            cd_model_output_shape(m, i, &nd, dd, NULL);
            fprintf(f, "output     %s ", cd_model_output_name(m, i));
            print_shape(f, nd < 0 ? 0 : nd, dd);
            fputc('\n', f);
        }
        fprintf(f, "operators ");
        for (int k = 0; k < n_ops; k++)
            fprintf(f, " %s x%d", hist[k].op, hist[k].count);
        fprintf(f, "\ndropout    %d node(s)%s\n", n_dropout,
                n_dropout ? " (MC dropout ready)" : "");
        if (have_cost) {
            fprintf(f, "cost at   ");
            for (int i = 0; i < n_in; i++) {
                fputc(' ', f);
                print_shape(f, ndims[i], dims[i]);
            }
            fprintf(f, "\n  MACs               %.3f G\n  activations        %.2f MiB\n"
                       "  weights/constants  %.2f MiB\n  runtime steps      %d\n",
                    (double)cost.macs / 1e9, (double)cost.activation_bytes / 1048576.0,
                    (double)cost.constant_bytes / 1048576.0, cost.runtime_steps);
        } else {
            fprintf(f, "cost       unavailable: %s\n", cost_err.message);
        }
    }
    cd_model_free(m);
    return rc;
}
