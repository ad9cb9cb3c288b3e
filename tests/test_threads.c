/* One cd_model shared by 8 threads, each with its own session running
 * different inputs: every result must be bit-identical to the same input run
 * serially beforehand (issue 8, acceptance 4; CI also runs it under
 * ThreadSanitizer with -DCANDOR_TSAN=ON).
 *
 * Model, in order of preference: $CANDOR_THREADS_MODEL; a parity model in
 * the build tree (MobileNetV3-small, many op kinds, not under TSan where it is
 * slow); pytorch-converted/test_Conv2d_depthwise_padded from the ONNX corpus;
 * the small CNN of the fuzz seed corpus, which is always in the repository. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "candor/candor.h"
#include "testutil.h"

#define N_THREADS 8
#define RUNS_PER_THREAD 3
#define N_JOBS (N_THREADS * RUNS_PER_THREAD)

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif

typedef struct job {
    cd_tensor *input;
    cd_tensor *expected; /* serial result */
} job;

typedef struct shared {
    const cd_model *model;
    job jobs[N_JOBS];
    pthread_barrier_t start;
} shared;

typedef struct worker {
    shared *sh;
    int index;
    int mismatches;
    int failures;
    char message[CD_ERROR_MESSAGE_SIZE];
} worker;

static bool readable(const char *path) { return path && access(path, R_OK) == 0; }

/* Picks the model (see the header comment); writes its path into buf. */
static bool pick_model(char *buf, size_t n)
{
    const char *env = getenv("CANDOR_THREADS_MODEL");
    const char *bin = getenv("CANDOR_BINARY_DIR");
    const char *tests = getenv("CANDOR_ONNX_TESTS");
    const char *src = getenv("CANDOR_SOURCE_DIR");
    if (readable(env)) {
        snprintf(buf, n, "%s", env);
        return true;
    }
    if (bin && !UNDER_TSAN) {
        snprintf(buf, n, "%s/parity/mobilenet_v3_small.onnx", bin);
        if (readable(buf))
            return true;
    }
    if (tests) {
        snprintf(buf, n, "%s/pytorch-converted/test_Conv2d_depthwise_padded/model.onnx", tests);
        if (readable(buf))
            return true;
    }
    snprintf(buf, n, "%s/tests/fuzz/corpus/fuzz_onnx_run/small_cnn.onnx", src ? src : "..");
    return readable(buf);
}

/* Deterministic input k for the model's first input (dynamic dims = 1). */
static cd_tensor *make_input(const cd_model *m, int k)
{
    int nd = -1;
    int64_t dims[CD_MAX_DIMS];
    assert_int_equal(cd_model_input_shape(m, 0, &nd, dims, NULL), CD_OK);
    assert_true(nd >= 1);
    for (int d = 0; d < nd; d++)
        if (dims[d] < 1)
            dims[d] = 1;
    return tu_random(nd, dims, 1000u + (uint64_t)k, -2.0f, 2.0f);
}

static cd_status run_once(cd_session *s, const cd_tensor *x, cd_tensor **y, cd_error *err)
{
    return cd_session_run(s, 1, NULL, &x, 1, NULL, y, err);
}

/* Threads alternate between 1 and 2 intra-op threads, so a session's own
 * pool is exercised too; job k always uses the same count as its serial run. */
static int threads_for(int k) { return 1 + (k % 2); }

static void *worker_main(void *arg)
{
    worker *w = arg;
    shared *sh = w->sh;
    cd_session *s = NULL;
    cd_error err = {0};
    cd_session_options so = {.threads = threads_for(w->index)};
    cd_status st = cd_session_create(sh->model, &so, &s, &err);
    pthread_barrier_wait(&sh->start); /* all threads start running together */
    for (int r = 0; st == CD_OK && r < RUNS_PER_THREAD; r++) {
        job *j = &sh->jobs[r * N_THREADS + w->index];
        cd_tensor *y = NULL;
        st = run_once(s, j->input, &y, &err);
        if (st != CD_OK)
            break;
        if (cd_tensor_nbytes(y) != cd_tensor_nbytes(j->expected) ||
            memcmp(cd_tensor_cdata(y), cd_tensor_cdata(j->expected), cd_tensor_nbytes(y)) != 0)
            w->mismatches++;
        cd_tensor_free(y);
    }
    if (st != CD_OK) {
        w->failures++;
        snprintf(w->message, sizeof w->message, "%s", err.message);
    }
    cd_session_free(s);
    return NULL;
}

static void test_shared_model_eight_threads(void **state)
{
    (void)state;
    char path[4096];
    if (!pick_model(path, sizeof path)) {
        print_message("no model found; skipping\n");
        skip();
    }
    print_message("model: %s\n", path);
    cd_error err = {0};
    cd_model *m = NULL;
    assert_int_equal(cd_model_load(path, NULL, &m, &err), CD_OK);

    shared sh = {.model = m};
    /* Serial reference: job k on a fresh session with the thread count the
     * concurrent run will use (k % N_THREADS is its worker). */
    for (int k = 0; k < N_JOBS; k++) {
        cd_session *s = NULL;
        cd_session_options so = {.threads = threads_for(k % N_THREADS)};
        sh.jobs[k].input = make_input(m, k);
        assert_int_equal(cd_session_create(m, &so, &s, &err), CD_OK);
        cd_status st = run_once(s, sh.jobs[k].input, &sh.jobs[k].expected, &err);
        if (st != CD_OK)
            print_message("serial run failed: %s\n", err.message);
        assert_int_equal(st, CD_OK);
        cd_session_free(s);
    }
    /* Different inputs really give different outputs (else the test is moot). */
    assert_memory_not_equal(cd_tensor_cdata(sh.jobs[0].expected),
                            cd_tensor_cdata(sh.jobs[1].expected),
                            cd_tensor_nbytes(sh.jobs[0].expected));

    pthread_t tid[N_THREADS];
    worker w[N_THREADS];
    assert_int_equal(pthread_barrier_init(&sh.start, NULL, N_THREADS), 0);
    for (int t = 0; t < N_THREADS; t++) {
        w[t] = (worker){.sh = &sh, .index = t};
        assert_int_equal(pthread_create(&tid[t], NULL, worker_main, &w[t]), 0);
    }
    int mismatches = 0, failures = 0;
    for (int t = 0; t < N_THREADS; t++) {
        pthread_join(tid[t], NULL);
        mismatches += w[t].mismatches;
        failures += w[t].failures;
        if (w[t].failures)
            print_message("thread %d failed: %s\n", t, w[t].message);
    }
    pthread_barrier_destroy(&sh.start);
    for (int k = 0; k < N_JOBS; k++) {
        cd_tensor_free(sh.jobs[k].input);
        cd_tensor_free(sh.jobs[k].expected);
    }
    cd_model_free(m);
    assert_int_equal(failures, 0);
    assert_int_equal(mismatches, 0);
}

/* Loading is independent per thread too: 8 threads load, run and free the
 * same file concurrently and agree bit for bit. */
static void *load_and_run(void *arg)
{
    worker *w = arg;
    const char *path = (const char *)w->sh;
    cd_error err = {0};
    cd_model *m = NULL;
    cd_session *s = NULL;
    cd_session_options so = {.threads = 1};
    cd_tensor *y = NULL;
    if (cd_model_load(path, NULL, &m, &err) == CD_OK && cd_session_create(m, &so, &s, &err) == CD_OK) {
        cd_tensor *x = make_input(m, 7);
        if (run_once(s, x, &y, &err) == CD_OK) {
            memcpy(w->message, cd_tensor_cdata(y),
                   cd_tensor_nbytes(y) < sizeof w->message ? cd_tensor_nbytes(y) : sizeof w->message);
            w->mismatches = (int)cd_tensor_nbytes(y);
        } else {
            w->failures = 1;
        }
        cd_tensor_free(x);
        cd_tensor_free(y);
    } else {
        w->failures = 1;
    }
    cd_session_free(s);
    cd_model_free(m);
    return NULL;
}

static void test_concurrent_loads(void **state)
{
    (void)state;
    char path[4096];
    if (!pick_model(path, sizeof path))
        skip();
    pthread_t tid[N_THREADS];
    worker w[N_THREADS];
    for (int t = 0; t < N_THREADS; t++) {
        memset(&w[t], 0, sizeof w[t]);
        w[t].sh = (shared *)(void *)path;
        assert_int_equal(pthread_create(&tid[t], NULL, load_and_run, &w[t]), 0);
    }
    for (int t = 0; t < N_THREADS; t++)
        pthread_join(tid[t], NULL);
    for (int t = 0; t < N_THREADS; t++) {
        assert_int_equal(w[t].failures, 0);
        assert_int_equal(w[t].mismatches, w[0].mismatches);
        assert_memory_equal(w[t].message, w[0].message, sizeof w[0].message);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_model_eight_threads),
        cmocka_unit_test(test_concurrent_loads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
