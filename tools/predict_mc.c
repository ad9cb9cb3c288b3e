/* candor predict --mc / --ensemble: sampled predictions and their summaries. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/atomic_file.h"
#include "inputs.h"
#include "mpi_shard.h"
#include "predict_dense.h"
#include "predict_mc.h"
#include "cli_util.h"

int predict_mc_parse_site(char *arg, cd_dropout_site *site)
{
    /* Split at the last one or two colons: tensor names may contain ':'. */
    char *last = strrchr(arg, ':');
    if (!last || last == arg) {
        fprintf(stderr, "candor predict: --dropout wants SITE:P[:channel], got '%s'\n", arg);
        return -1;
    }
    site->channel = false;
    if (strcmp(last + 1, "channel") == 0 || strcmp(last + 1, "element") == 0) {
        site->channel = strcmp(last + 1, "channel") == 0;
        *last = '\0';
        last = strrchr(arg, ':');
        if (!last || last == arg) {
            fprintf(stderr, "candor predict: --dropout wants SITE:P[:channel]\n");
            return -1;
        }
    }
    char *end = NULL;
    double p = strtod(last + 1, &end);
    if (!end || *end || end == last + 1) {
        fprintf(stderr, "candor predict: --dropout: '%s' is not a probability\n", last + 1);
        return -1;
    }
    *last = '\0';
    site->name = arg;
    site->p = (float)p;
    return 0;
}

typedef struct run_state {
    const predict_mc_opts *o;
    cd_model **models;
    cd_ensemble *ens;
    FILE *csv;
    float *raw;          /* accumulated sampled probabilities for --samples */
    size_t raw_rows, raw_cap;
    int raw_nd;          /* shape of one row's samples: (S, ...) */
    int64_t raw_dims[CD_MAX_DIMS];
    bool first_json;
} run_state;

static void csv_str(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static double finite_or_zero(double v) { return isfinite(v) ? v : 0.0; }

static void json_array(const double *v, int n)
{
    putchar('[');
    for (int i = 0; i < n; i++)
        printf(i ? ",%.9g" : "%.9g", finite_or_zero(v[i]));
    putchar(']');
}

/* A plain-words reading of the summary. */
static void confidence_line(const cd_class_summary *s, const char *label)
{
    double top = s->mean[s->top_class];
    const char *how = s->agreement >= 0.95 && top >= 0.9   ? "confident it is"
                      : s->agreement >= 0.8 && top >= 0.5 ? "fairly confident it is"
                                                            : "uncertain; best guess";
    printf("  confidence: %s \"%s\" (%.0f%% of samples agree", how, label,
           100.0 * s->agreement);
    if (s->predictive_entropy > 1e-3) {
        bool epi = s->mutual_information > 0.5 * s->predictive_entropy;
        printf("; the uncertainty is mostly %s", epi ? "the model's own (epistemic: more data "
                                                       "or a closer training match would help)"
                                                     : "in the input itself (aleatoric)");
    }
    printf(")\n");
}

static void human_class(const run_state *st, const char *name, const cd_class_summary *s)
{
    const predict_mc_opts *o = st->o;
    const cd_model *m = st->models[0];
    char buf[32];
    printf("%s  (%d sample(s): %d model(s) x %d MC)\n", name, s->n_samples, o->n_models, o->T);
    int k = s->n_classes, top = o->top < k ? o->top : k;
    bool *used = calloc((size_t)k, 1);
    for (int t = 0; used && t < top; t++) {
        int best = -1;
        for (int c = 0; c < k; c++)
            if (!used[c] && (best < 0 || s->mean[c] > s->mean[best]))
                best = c;
        used[best] = true;
        printf("  %-24s %6.2f%%  [%g%% interval %6.2f%% - %6.2f%%]\n",
               cli_label(m, best, buf, sizeof buf), 100.0 * s->mean[best], 100.0 * s->level,
               100.0 * s->lower[best], 100.0 * s->upper[best]);
    }
    free(used);
    printf("  entropy %.4f nats = expected %.4f (aleatoric) + MI %.4f (epistemic); "
           "variation ratio %.3f\n",
           s->predictive_entropy, s->expected_entropy, s->mutual_information, s->variation_ratio);
    confidence_line(s, cli_label(m, s->top_class, buf, sizeof buf));
}

static void json_class(run_state *st, const char *name, const cd_class_summary *s)
{
    char buf[32];
    const cd_model *m = st->models[0];
    printf("%s{\"input\":", st->first_json ? "" : ",\n");
    st->first_json = false;
    cli_json_str(stdout, name);
    printf(",\"kind\":\"classification\",\"samples\":%d,\"members\":%d,\"mc_samples\":%d,"
           "\"seed\":%llu,\"level\":%g,\"top_class\":%d,\"label\":",
           s->n_samples, st->o->n_models, st->o->T, (unsigned long long)st->o->seed, s->level,
           s->top_class);
    cli_json_str(stdout, cli_label(m, s->top_class, buf, sizeof buf));
    printf(",\"mean\":");
    json_array(s->mean, s->n_classes);
    printf(",\"std\":");
    json_array(s->std, s->n_classes);
    printf(",\"lower\":");
    json_array(s->lower, s->n_classes);
    printf(",\"upper\":");
    json_array(s->upper, s->n_classes);
    printf(",\"predictive_entropy\":%.9g,\"expected_entropy\":%.9g,\"mutual_information\":%.9g,"
           "\"variation_ratio\":%.9g,\"agreement\":%.9g}",
           s->predictive_entropy, s->expected_entropy, s->mutual_information, s->variation_ratio,
           s->agreement);
}

static void csv_class(run_state *st, const char *name, const cd_class_summary *s)
{
    char buf[32];
    int c = s->top_class;
    csv_str(st->csv, name);
    fprintf(st->csv, ",%d,", c);
    csv_str(st->csv, cli_label(st->models[0], c, buf, sizeof buf));
    fprintf(st->csv, ",%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g\n", s->mean[c], s->lower[c],
            s->upper[c], s->predictive_entropy, s->expected_entropy, s->mutual_information,
            s->variation_ratio, s->agreement);
}

/* Appends one row's samples, of shape dims[0..nd-1] = (S, ...), to the
 * --samples array. */
static int keep_raw(run_state *st, const float *p, int nd, const int64_t *dims)
{
    if (!st->o->samples_path)
        return 0;
    if (nd + 1 > CD_MAX_DIMS)
        return cli_fail("predict: --samples: samples of rank %d are too large", nd);
    if (st->raw_rows && (st->raw_nd != nd || memcmp(st->raw_dims, dims, nd * sizeof *dims))) {
        fprintf(stderr, "candor predict: --samples needs the same sample shape for every input\n");
        return 1;
    }
    st->raw_nd = nd;
    memcpy(st->raw_dims, dims, nd * sizeof *dims);
    size_t block = 1;
    for (int i = 0; i < nd; i++)
        block *= (size_t)dims[i];
    if (st->raw_rows == st->raw_cap) {
        size_t cap = st->raw_cap ? 2 * st->raw_cap : 16;
        float *nr = realloc(st->raw, cap * block * sizeof *nr);
        if (!nr)
            return 1;
        st->raw = nr;
        st->raw_cap = cap;
    }
    memcpy(st->raw + st->raw_rows++ * block, p, block * sizeof *p);
    return 0;
}

static int summarize_class(run_state *st, const char *name, float *p, int64_t s, int64_t k)
{
    cd_class_summary sum;
    cd_error err;
    if (cd_summarize_classification(p, (int)s, (int)k, st->o->level, &sum, &err) != CD_OK)
        return cli_fail_err("predict", &err);
    if (st->o->json)
        json_class(st, name, &sum);
    else
        human_class(st, name, &sum);
    if (st->csv)
        csv_class(st, name, &sum);
    cd_class_summary_free(&sum);
    int64_t dims[2] = {s, k};
    return keep_raw(st, p, 2, dims);
}

static int summarize_regression(run_state *st, const char *name, const float *mu,
                                const float *lv, int64_t s, int64_t d)
{
    cd_regression_summary r;
    cd_error err;
    if (cd_summarize_regression(mu, lv, (int)s, (int)d, st->o->level, &r, &err) != CD_OK)
        return cli_fail_err("predict", &err);
    if (st->o->json) {
        printf("%s{\"input\":", st->first_json ? "" : ",\n");
        st->first_json = false;
        cli_json_str(stdout, name);
        printf(",\"kind\":\"regression\",\"samples\":%d,\"level\":%g,\"mean\":", r.n_samples,
               r.level);
        json_array(r.mean, r.n_outputs);
        printf(",\"std\":");
        json_array(r.std, r.n_outputs);
        printf(",\"lower\":");
        json_array(r.lower, r.n_outputs);
        printf(",\"upper\":");
        json_array(r.upper, r.n_outputs);
        printf(",\"aleatoric_var\":");
        json_array(r.aleatoric_var, r.n_outputs);
        printf(",\"epistemic_var\":");
        json_array(r.epistemic_var, r.n_outputs);
        printf("}");
    } else {
        printf("%s  (%d sample(s))\n", name, r.n_samples);
        for (int j = 0; j < r.n_outputs && j < 32; j++)
            printf("  output %d: %.6g +- %.4g  [%g%% interval %.6g .. %.6g]  aleatoric var "
                   "%.4g, epistemic var %.4g\n",
                   j, r.mean[j], r.std[j], 100.0 * r.level, r.lower[j], r.upper[j],
                   r.aleatoric_var[j], r.epistemic_var[j]);
    }
    cd_regression_summary_free(&r);
    int64_t dims[2] = {s, d};
    return keep_raw(st, mu, 2, dims);
}

/* True when the samples (rows, S, C, H, W) are dense per-pixel outputs. */
static bool is_dense(const run_state *st, int nd)
{
    const char *kind = cd_model_output_kind(st->models[0]);
    return !st->o->regression && strcmp(kind, "regression") != 0 &&
           (nd == 5 || strcmp(kind, "segmentation") == 0);
}

/* Dense outputs: softmax over the class axis, then maps row by row. */
static int summarize_dense_rows(run_state *st, const char *path, const cd_tensor *x,
                                cd_tensor *smp)
{
    const int64_t *d = cd_tensor_dims(smp);
    cd_error err;
    if (cd_tensor_ndim(smp) != 5)
        return cli_fail("predict: %s: segmentation samples must have shape (rows, S, C, H, W)",
                        path);
    if (strcmp(cd_model_output_kind(st->models[0]), "probabilities") != 0 &&
        cd_softmax_axis(smp, 2, &err) != CD_OK)
        return cli_fail_err("predict", &err);
    dense_ctx c = {.o = st->o, .input = x, .first_json = &st->first_json};
    size_t block = (size_t)(d[1] * d[2] * d[3] * d[4]);
    int rc = 0;
    for (int64_t r = 0; r < d[0] && rc == 0; r++) {
        char name[4096];
        if (d[0] > 1)
            snprintf(name, sizeof name, "%s[%lld]", path, (long long)r);
        else
            snprintf(name, sizeof name, "%s", path);
        const float *p = (const float *)cd_tensor_cdata(smp) + r * block;
        rc = predict_dense_row(&c, path, name, r, d[0], p, d + 1);
        if (rc == 0)
            rc = keep_raw(st, p, 4, d + 1);
    }
    return rc;
}

/* One input file: sample, then summarize each of its rows. */
static int predict_input(run_state *st, const char *path)
{
    const predict_mc_opts *o = st->o;
    cd_error err;
    cd_tensor *x = NULL, *smp[2] = {NULL, NULL};
    int n_out = o->log_variance ? 2 : 1;
    if (inputs_load_tensor(st->models[0], path, &x, &err) != CD_OK ||
        cd_ensemble_sample(st->ens, 1, (const cd_tensor *const *)&x, n_out, NULL, smp, &err) !=
            CD_OK) {
        cd_tensor_free(x);
        fprintf(stderr, "candor predict: error (%s): %s: %s\n", cd_status_name(err.code), path,
                err.message);
        return 1;
    }
    const int64_t *d = cd_tensor_dims(smp[0]);
    int nd = cd_tensor_ndim(smp[0]);
    int64_t rows = d[0], s = d[1], k = 1;
    for (int i = 2; i < nd; i++)
        k *= d[i];
    const char *kind = cd_model_output_kind(st->models[0]);
    bool regression = o->regression || strcmp(kind, "regression") == 0;
    int rc = 0;
    if (is_dense(st, nd)) {
        rc = summarize_dense_rows(st, path, x, smp[0]);
        rows = 0;
    } else if (o->maps_dir) {
        fprintf(stderr, "candor predict: %s: --maps needs a dense (N, C, H, W) output\n", path);
        rc = 1;
    } else if (nd != 3 && !regression) {
        fprintf(stderr, "candor predict: %s: samples of shape (rows, S, classes) expected, or "
                        "(rows, S, C, H, W) for segmentation\n", path);
        rc = 1;
    } else if (!regression && strcmp(kind, "probabilities") != 0) {
        cd_softmax_axis(smp[0], -1, &err);
    }
    cd_tensor_free(x);
    for (int64_t r = 0; r < rows && rc == 0; r++) {
        char name[4096];
        if (rows > 1)
            snprintf(name, sizeof name, "%s[%lld]", path, (long long)r);
        else
            snprintf(name, sizeof name, "%s", path);
        float *p = (float *)cd_tensor_data(smp[0]) + (size_t)(r * s * k);
        const float *lv = smp[1] ? (const float *)cd_tensor_cdata(smp[1]) + (size_t)(r * s * k)
                                 : NULL;
        rc = regression ? summarize_regression(st, name, p, lv, s, k)
                        : summarize_class(st, name, p, s, k);
    }
    cd_tensor_free(smp[0]);
    cd_tensor_free(smp[1]);
    return rc;
}

static int save_raw(run_state *st)
{
    if (!st->o->samples_path || !st->raw_rows)
        return 0;
    int64_t dims[CD_MAX_DIMS] = {(int64_t)st->raw_rows};
    memcpy(dims + 1, st->raw_dims, (size_t)st->raw_nd * sizeof *dims);
    cd_tensor *t = NULL;
    cd_error err;
    if (cd_tensor_from_data(CD_FLOAT32, st->raw_nd + 1, dims, st->raw, &t, &err) != CD_OK ||
        cd_npy_save(st->o->samples_path, t, &err) != CD_OK) {
        cd_tensor_free(t);
        return cli_fail_err("predict", &err);
    }
    cd_tensor_free(t);
    return 0;
}

static int open_all(run_state *st)
{
    const predict_mc_opts *o = st->o;
    cd_error err;
    st->models = calloc((size_t)o->n_models, sizeof *st->models);
    if (!st->models)
        return cli_fail("out of memory");
    for (int i = 0; i < o->n_models; i++)
        if (cd_model_load(o->models[i], NULL, &st->models[i], &err) != CD_OK)
            return cli_fail_err("predict", &err);
    cd_mc_options mo;
    cd_mc_options_default(&mo);
    mo.samples = o->T;
    mo.seed = o->seed;
    mo.n_sites = o->n_sites;
    mo.sites = o->sites;
    mo.threads = o->threads;
    /* Without --mc an ensemble is deterministic: Dropout stays the identity. */
    mo.ignore_graph_dropout = mo.ignore_sidecar_sites = !o->mc;
    if (cd_ensemble_create(o->n_models, (const cd_model *const *)st->models, &mo, &st->ens,
                           &err) != CD_OK)
        return cli_fail_err("predict", &err);
    if (o->csv_path) {
        /* With several ranks each collects its rows; rank 0 writes the file. */
        st->csv = mpi_shard_size() > 1 ? tmpfile() : fopen(o->csv_path, "w");
        if (!st->csv)
            return cli_fail("predict: cannot write %s", o->csv_path);
        if (mpi_shard_rank() == 0)
            fprintf(st->csv, "input,top_class,label,mean_probability,lower,upper,entropy,"
                         "expected_entropy,mutual_information,variation_ratio,agreement\n");
    }
    return 0;
}

/* Writes len bytes as the whole file path (temporary file + rename). */
static int write_atomic(const char *path, const char *data, size_t len)
{
    cd_atomic_file *af = NULL;
    cd_error err;
    if (cd_atomic_open(path, true, &af, &err) != CD_OK)
        return cli_fail_err("predict", &err);
    if (fwrite(data, 1, len, cd_atomic_stream(af)) != len) {
        cd_atomic_abort(af);
        return cli_fail("predict: error writing %s", path);
    }
    return cd_atomic_commit(af, &err) != CD_OK ? cli_fail_err("predict", &err) : 0;
}

/* With several ranks (mpi_shard.h), once every rank succeeded: rank 0
 * prints all ranks' stdout text, then writes the CSV (atomically) and the
 * --samples array, all in input order. Returns the number of failures. */
static int mpi_outputs(run_state *st, int failures, const char *bad_input)
{
    const predict_mc_opts *o = st->o;
    char *out = NULL, *csv = NULL, *all = NULL, why[1200];
    size_t out_len = 0, csv_len = 0, all_len = 0;
    mpi_shard_capture_end(&out, &out_len);
    snprintf(why, sizeof why, bad_input ? "%d input(s) failed, the first: %s (see above)"
                                        : "setup failed (see above)", failures, bad_input);
    int rc = mpi_shard_end_stdout("predict", out, out_len, failures ? why : NULL) ? 1 : 0;
    free(out);
    if (!rc && mpi_shard_rank() == 0 && o->json)
        printf("]\n");
    if (!rc && o->csv_path) {
        rc = mpi_shard_slurp(st->csv, &csv, &csv_len) ||
             mpi_shard_gather(csv, csv_len, &all, &all_len);
        if (!rc && all)
            rc = write_atomic(o->csv_path, all, all_len);
        free(csv);
        free(all);
    }
    size_t block = 4;
    for (int i = 0; i < st->raw_nd; i++)
        block *= (size_t)st->raw_dims[i];
    if (!rc && o->samples_path &&
        mpi_shard_gather(st->raw, st->raw_rows * block, &all, &all_len) == 0 && all) {
        free(st->raw);
        st->raw = (float *)(void *)all; /* malloc'ed: suitably aligned for floats */
        st->raw_rows = all_len / block;
        if (all_len % block)
            rc = cli_fail("predict: --samples needs the same sample shape for every input");
        else
            rc = save_raw(st);
    }
    return rc;
}

int predict_mc_run(const predict_mc_opts *o, int n_inputs, char **inputs)
{
    if (o->T < 1)
        return cli_fail("predict: --mc needs at least 1 sample (got %d)", o->T), 2;
    if (!(o->level > 0 && o->level < 1))
        return cli_fail("predict: --level must be in (0, 1)"), 2;
    if (o->overlay && !o->maps_dir)
        return cli_fail("predict: --overlay needs --maps DIR"), 2;
    if (!(o->overlay_alpha >= 0 && o->overlay_alpha <= 1))
        return cli_fail("predict: --overlay alpha must be in [0, 1]"), 2;
    if (o->maps_dir && mkdir(o->maps_dir, 0777) != 0 && errno != EEXIST)
        return cli_fail("predict: cannot create --maps folder %s: %s", o->maps_dir,
                        strerror(errno)), 1;
    run_state st = {.o = o, .first_json = true};
    int failures = open_all(&st);
    input_list in = {0};
    if (!failures && (inputs_collect(n_inputs, inputs, &in) != 0 || in.count == 0))
        failures = cli_fail("predict: no inputs found");
    bool ready = !failures;
    size_t first = 0, count = 0; /* this rank's inputs (all of them with one rank) */
    if (ready)
        mpi_shard_range((size_t)in.count, &first, &count);
    st.first_json = first == 0;
    const char *bad_input = NULL;
    mpi_shard_capture_begin();
    if (ready && o->json && mpi_shard_rank() == 0)
        printf("[");
    for (size_t i = first; ready && i < first + count; i++) { /* a failure does not stop the rest */
        int f = predict_input(&st, in.paths[i]);
        bad_input = f && !bad_input ? in.paths[i] : bad_input;
        failures += f;
    }
    if (mpi_shard_size() > 1) {
        failures = mpi_outputs(&st, failures, bad_input);
    } else {
        if (ready && o->json)
            printf("]\n");
        if (!failures)
            failures = save_raw(&st);
    }
    if (st.csv && fclose(st.csv) != 0)
        failures = cli_fail("predict: error writing %s", o->csv_path);
    inputs_free(&in);
    cd_ensemble_free(st.ens);
    for (int i = 0; st.models && i < o->n_models; i++)
        cd_model_free(st.models[i]);
    free(st.models);
    free(st.raw);
    return failures ? 1 : 0;
}
