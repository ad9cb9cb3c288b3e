/* ONNX backend conformance runner.
 *
 * For every folder of node/, pytorch-converted/ and pytorch-operator/ under
 * CANDOR_ONNX_TESTS: load model.onnx through the public API, feed each
 * test_data_set_N/input_K.pb, run, and compare with output_K.pb
 * (float: |a-b| <= 1e-5 + 1e-4*|b|, NaN matches NaN; integers and bools
 * exactly; shapes and dtypes must match). The expected outputs come from the
 * ONNX project's reference implementations.
 *
 * A test is SKIPPED (reason printed) when the model uses an operator candor
 * does not implement (the load says CD_ERR_UNSUPPORTED), or its inputs or
 * outputs have types candor does not handle (strings, float16, sequences, or
 * an op refusing a non-float32 tensor). Anything else that goes wrong with a
 * supported model is a FAILURE. Each test runs in a child process so a crash
 * or hang is reported as that test's failure instead of ending the run.
 *
 * Output: a line per skip/failure, then "N passed, N failed, N skipped" and
 * the pass rate over passed+failed, which must reach 95%. The full list
 * (passes included) goes to CANDOR_BINARY_DIR/conformance.txt.
 * CANDOR_CONFORMANCE_FILTER=substring runs only matching tests. */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "candor/candor.h"
#include "core/onnx_io.h"
#include "testutil.h"

#define MAX_TENSORS 32
#define TEST_TIMEOUT_SECONDS 120
#define REASON_SIZE 700

typedef enum verdict { PASS = 'P', FAIL = 'F', SKIP = 'S' } verdict;

typedef struct result {
    verdict v;
    char reason[REASON_SIZE];
} result;

static verdict set(result *r, verdict v, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static verdict set(result *r, verdict v, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof r->reason, fmt, ap);
    va_end(ap);
    r->v = v;
    return v;
}

/* ------------------------------------------------------------------------ */
/* Test data */

typedef struct tensor_set {
    int n;
    cd_tensor *t[MAX_TENSORS];
    int onnx_type[MAX_TENSORS];
} tensor_set;

static void set_free(tensor_set *s)
{
    for (int i = 0; i < s->n; i++)
        cd_tensor_free(s->t[i]);
    s->n = 0;
}

/* Types candor computes with. float16/bfloat16/int16/uint16 files decode to
 * wider types, so a model expecting them is not something candor runs. */
static bool onnx_type_runnable(int onnx_type)
{
    switch (onnx_type) {
    case 1: case 2: case 3: case 6: case 7: case 9: case 11: return true;
    default: return false;
    }
}

/* Reads prefix_K.pb for K = 0, 1, ... into s. Returns SKIP/FAIL on trouble. */
static bool read_tensors(const char *dir, const char *prefix, tensor_set *s, result *r)
{
    char path[2048];
    for (s->n = 0; s->n < MAX_TENSORS; s->n++) {
        snprintf(path, sizeof path, "%s/%s_%d.pb", dir, prefix, s->n);
        if (access(path, F_OK) != 0)
            return true;
        cd_error err;
        int type = 0;
        cd_status st = cd_onnx_read_tensor_file(path, &s->t[s->n], &type, &err);
        if (st == CD_ERR_UNSUPPORTED || (st == CD_OK && !onnx_type_runnable(type))) {
            if (st == CD_OK)
                cd_tensor_free(s->t[s->n]);
            set(r, SKIP, "%s_%d has type %s", prefix, s->n, cd_onnx_type_name(type));
            return false;
        }
        if (st != CD_OK) {
            /* Sequence/optional/map protos are not TensorProtos. */
            set(r, SKIP, "%s_%d is not a tensor (%s)", prefix, s->n, err.message);
            return false;
        }
        s->onnx_type[s->n] = type;
    }
    return true;
}

/* ------------------------------------------------------------------------ */
/* Comparison */

static double value_at(const cd_tensor *t, size_t i)
{
    const void *p = cd_tensor_cdata(t);
    switch (cd_tensor_dtype(t)) {
    case CD_FLOAT32: return ((const float *)p)[i];
    case CD_FLOAT64: return ((const double *)p)[i];
    case CD_INT64: return (double)((const int64_t *)p)[i];
    case CD_INT32: return ((const int32_t *)p)[i];
    case CD_INT8: return ((const int8_t *)p)[i];
    case CD_UINT8:
    case CD_BOOL: return ((const uint8_t *)p)[i];
    default: return NAN;
    }
}

static bool is_float(cd_dtype d) { return d == CD_FLOAT32 || d == CD_FLOAT64; }

static bool close_enough(double a, double b)
{
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b);
    if (isinf(b))
        return a == b;
    return fabs(a - b) <= 1e-5 + 1e-4 * fabs(b);
}

static bool compare(int k, const cd_tensor *got, const cd_tensor *want, result *r)
{
    char gs[128], ws[128];
    int nd = cd_tensor_ndim(got);
    if (!cd_shape_equal(nd, cd_tensor_dims(got), cd_tensor_ndim(want), cd_tensor_dims(want))) {
        set(r, FAIL, "output %d: shape %s, expected %s", k,
            cd_shape_str(nd, cd_tensor_dims(got), gs, sizeof gs),
            cd_shape_str(cd_tensor_ndim(want), cd_tensor_dims(want), ws, sizeof ws));
        return false;
    }
    if (cd_tensor_dtype(got) != cd_tensor_dtype(want)) {
        set(r, FAIL, "output %d: dtype %s, expected %s", k, cd_dtype_name(cd_tensor_dtype(got)),
            cd_dtype_name(cd_tensor_dtype(want)));
        return false;
    }
    size_t n = cd_tensor_numel(want), bad = 0, first = 0;
    bool fl = is_float(cd_tensor_dtype(want));
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double a = value_at(got, i), b = value_at(want, i);
        bool ok = fl ? close_enough(a, b) : a == b;
        if (!ok) {
            if (bad++ == 0)
                first = i;
            if (fabs(a - b) > worst || isnan(a - b))
                worst = fabs(a - b);
        }
    }
    if (bad) {
        set(r, FAIL, "output %d: %zu of %zu values differ (first at %zu: %.9g vs %.9g; max "
            "|diff| %.3g)", k, bad, n, first, value_at(got, first), value_at(want, first),
            worst);
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------------ */
/* One test */

static bool any_non_float32(const tensor_set *a, const tensor_set *b)
{
    for (int i = 0; i < a->n; i++)
        if (a->onnx_type[i] != 1)
            return true;
    for (int i = 0; i < b->n; i++)
        if (b->onnx_type[i] != 1)
            return true;
    return false;
}

/* Distinct op types of the model, for failure reports. */
static void op_summary(const cd_model *m, char *buf, size_t size)
{
    buf[0] = '\0';
    size_t len = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        const char *op = m->nodes[i].op_type;
        bool seen = false;
        for (int j = 0; j < i && !seen; j++)
            seen = strcmp(m->nodes[j].op_type, op) == 0;
        if (!seen && len + strlen(op) + 2 < size)
            len += (size_t)snprintf(buf + len, size - len, "%s%s", len ? "," : "", op);
    }
}

static verdict run_data_set(cd_session *s, const char *dir, result *r)
{
    tensor_set in = {0}, want = {0};
    cd_tensor *got[MAX_TENSORS] = {0};
    if (!read_tensors(dir, "input", &in, r) || !read_tensors(dir, "output", &want, r)) {
        set_free(&in);
        set_free(&want);
        return r->v;
    }
    cd_error err;
    cd_error_clear(&err);
    cd_status st = cd_session_run(s, in.n, NULL, (const cd_tensor *const *)in.t, want.n, NULL,
                                  got, &err);
    if (st == CD_ERR_UNSUPPORTED && any_non_float32(&in, &want))
        set(r, SKIP, "non-float32 data refused: %s", err.message);
    else if (st != CD_OK)
        set(r, FAIL, "run: %s: %s", cd_status_name(st), err.message);
    for (int k = 0; st == CD_OK && k < want.n; k++)
        if (!compare(k, got[k], want.t[k], r))
            break;
    for (int k = 0; k < want.n; k++)
        cd_tensor_free(got[k]);
    set_free(&in);
    set_free(&want);
    return r->v;
}

static int data_set_filter(const struct dirent *d)
{
    return strncmp(d->d_name, "test_data_set_", 14) == 0;
}

static verdict run_model(const cd_model *m, const char *dir, result *r)
{
    for (int i = 0; i < cd_model_input_count(m); i++) {
        cd_dtype dt = cd_model_input_dtype(m, i);
        if (dt == CD_DTYPE_UNDEFINED || dt == CD_FLOAT16)
            return set(r, SKIP, "input '%s' has type %s", cd_model_input_name(m, i),
                       dt == CD_FLOAT16 ? "float16" : "unsupported by candor");
    }
    struct dirent **sets = NULL;
    int n = scandir(dir, &sets, data_set_filter, alphasort);
    if (n <= 0) {
        free(sets);
        return set(r, FAIL, "no test_data_set_* folder");
    }
    cd_session *s = NULL;
    cd_error err;
    cd_session_options so = {1};
    cd_status st = cd_session_create(m, &so, &s, &err);
    if (st != CD_OK)
        set(r, FAIL, "session: %s", err.message);
    else
        r->v = PASS;
    char path[2048];
    for (int i = 0; i < n; i++) {
        if (r->v == PASS) {
            snprintf(path, sizeof path, "%s/%s", dir, sets[i]->d_name);
            if (run_data_set(s, path, r) != PASS) {
                char tmp[REASON_SIZE];
                snprintf(tmp, sizeof tmp, "%s", r->reason);
                snprintf(r->reason, sizeof r->reason, "%s: %s", sets[i]->d_name, tmp);
            }
        }
        free(sets[i]);
    }
    free(sets);
    cd_session_free(s);
    return r->v;
}

static void run_one_test(const char *dir, result *r)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    cd_model *m = NULL;
    cd_error err;
    cd_error_clear(&err);
    r->v = PASS;
    r->reason[0] = '\0';
    cd_status st = cd_model_load(path, NULL, &m, &err);
    if (st == CD_ERR_UNSUPPORTED) {
        set(r, SKIP, "%s", err.message);
        /* Drop the folder prefix from the message: the test name says it. */
        const char *p = strstr(r->reason, "model.onnx: ");
        if (p)
            memmove(r->reason, p + 12, strlen(p + 12) + 1);
        return;
    }
    if (st != CD_OK) {
        set(r, FAIL, "load: %s: %s", cd_status_name(st), err.message);
        return;
    }
    if (run_model(m, dir, r) == FAIL) {
        char ops[200], tmp[REASON_SIZE];
        op_summary(m, ops, sizeof ops);
        snprintf(tmp, sizeof tmp, "%s", r->reason);
        snprintf(r->reason, sizeof r->reason, "[%s] %s", ops, tmp);
    }
    cd_model_free(m);
}

/* Runs one test in a child so crashes and hangs stay contained. */
static void run_isolated(const char *dir, result *r)
{
    int fds[2];
    if (pipe(fds) != 0) {
        set(r, FAIL, "pipe: %s", strerror(errno));
        return;
    }
    fflush(NULL); /* the child must not inherit (and re-emit) buffered output */
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        set(r, FAIL, "fork: %s", strerror(errno));
        return;
    }
    if (pid == 0) {
        close(fds[0]);
        alarm(TEST_TIMEOUT_SECONDS);
        result mine;
        memset(&mine, 0, sizeof mine); /* the whole struct goes down the pipe */
        run_one_test(dir, &mine);
        ssize_t w = write(fds[1], &mine, sizeof mine);
        _exit(w == (ssize_t)sizeof mine ? 0 : 1);
    }
    close(fds[1]);
    result got;
    size_t have = 0;
    while (have < sizeof got) {
        ssize_t k = read(fds[0], (char *)&got + have, sizeof got - have);
        if (k <= 0)
            break;
        have += (size_t)k;
    }
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (have == sizeof got) {
        *r = got;
        r->reason[sizeof r->reason - 1] = '\0';
    } else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) {
        set(r, FAIL, "timed out after %d s", TEST_TIMEOUT_SECONDS);
    } else if (WIFSIGNALED(status)) {
        set(r, FAIL, "crashed (signal %d: %s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    } else {
        set(r, FAIL, "child exited with status %d without a result", WEXITSTATUS(status));
    }
}

/* ------------------------------------------------------------------------ */

/* Tests whose expected outputs cannot be reproduced by any implementation
 * other than the reference itself. Kept short, each with its reason. */
static const struct {
    const char *test;
    const char *reason;
} not_comparable[] = {
    {"node/test_training_dropout", "random dropout mask drawn from the reference's NumPy RNG"},
    {"node/test_training_dropout_default", "random dropout mask drawn from the reference's NumPy RNG"},
    {"node/test_training_dropout_default_mask", "random dropout mask drawn from the reference's NumPy RNG"},
    {"node/test_training_dropout_mask", "random dropout mask drawn from the reference's NumPy RNG"},
};

static const char *not_comparable_reason(const char *label)
{
    for (size_t i = 0; i < CD_COUNT_OF(not_comparable); i++)
        if (strcmp(not_comparable[i].test, label) == 0)
            return not_comparable[i].reason;
    return NULL;
}

static int test_dir_filter(const struct dirent *d) { return strncmp(d->d_name, "test_", 5) == 0; }

static void test_conformance(void **state)
{
    (void)state;
    char root_buf[1024];
    const char *root = getenv("CANDOR_ONNX_TESTS");
    if (!root || !root[0]) {
        const char *src = getenv("CANDOR_SOURCE_DIR");
        snprintf(root_buf, sizeof root_buf, "%s/../shared/onnx-tests", src ? src : ".");
        root = root_buf;
    }
    struct stat sb;
    if (stat(root, &sb) != 0) {
        print_message("ONNX test corpus not found at %s: skipping\n", root);
        skip();
    }
    const char *filter = getenv("CANDOR_CONFORMANCE_FILTER");
    const char *bin = getenv("CANDOR_BINARY_DIR");
    char out_path[1200];
    snprintf(out_path, sizeof out_path, "%s/conformance.txt", bin && bin[0] ? bin : ".");
    FILE *out = fopen(out_path, "w");
    assert_non_null(out);
    static const char *const subs[] = {"node", "pytorch-converted", "pytorch-operator"};
    int passed = 0, failed = 0, skipped = 0;
    for (size_t s = 0; s < CD_COUNT_OF(subs); s++) {
        char sub[1200];
        snprintf(sub, sizeof sub, "%s/%s", root, subs[s]);
        struct dirent **names = NULL;
        int n = scandir(sub, &names, test_dir_filter, alphasort);
        for (int i = 0; i < n; i++) {
            char dir[2400], label[1300];
            snprintf(dir, sizeof dir, "%s/%s", sub, names[i]->d_name);
            snprintf(label, sizeof label, "%s/%s", subs[s], names[i]->d_name);
            free(names[i]);
            if (filter && !strstr(label, filter))
                continue;
            result r;
            const char *nc = not_comparable_reason(label);
            if (nc)
                set(&r, SKIP, "expected output not reproducible: %s", nc);
            else
                run_isolated(dir, &r);
            const char *tag = r.v == PASS ? "PASS" : r.v == FAIL ? "FAIL" : "SKIP";
            passed += r.v == PASS;
            failed += r.v == FAIL;
            skipped += r.v == SKIP;
            fprintf(out, "%s %s%s%s\n", tag, label, r.v == PASS ? "" : ": ", r.reason);
            if (r.v != PASS)
                printf("%s %s: %s\n", tag, label, r.reason);
        }
        free(names);
    }
    int ran = passed + failed;
    double rate = ran ? 100.0 * passed / ran : 0.0;
    fprintf(out, "%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    fprintf(out, "pass rate %.1f%% of %d runnable tests\n", rate, ran);
    fclose(out);
    printf("pass rate %.1f%% of %d runnable tests (full list: %s)\n", rate, ran, out_path);
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    fflush(stdout);
    if (ran == 0)
        fail_msg("no runnable conformance test (%d skipped)", skipped);
    if (rate < 95.0)
        fail_msg("pass rate %.1f%% is below 95%%", rate);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_conformance)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
