#include <cblas.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "ops/op.h"
#include "parallel.h"

void openblas_set_num_threads(int num_threads);

struct cd_pool {
    int n_workers;
    pthread_t *workers;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_cond_t done;
    /* current job, guarded by lock */
    cd_task_fn fn;
    void *arg;
    int n_tasks;
    int next_task;
    int running;      /* tasks claimed but not finished */
    /* Written under lock; read without it while spinning. */
    atomic_ulong generation;
    atomic_int unfinished; /* tasks of the current job not yet finished */
    atomic_bool quit;
};

/* How long a worker polls for the next job, and the caller for the end of
 * the current one, before sleeping on a condition variable. A network's
 * layers post jobs back to back, often microseconds apart, and a futex wake
 * of a sleeping worker costs tens of microseconds on a VM — more than many
 * small layers take. The poll is short so an idle pool stops using the CPU
 * almost at once. */
#define SPIN_NS 100000L

static long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* Gives the core to another runnable thread when there is one (on a loaded
 * machine a poller must not keep the thread it waits for off the CPU), and
 * returns at once when there is none. */
static inline void cpu_relax(void) { sched_yield(); }

/* Polls until *v differs from old (or quit is set), for at most SPIN_NS. */
static void spin_while_ulong(const atomic_ulong *v, unsigned long old, const atomic_bool *quit)
{
    long start = now_ns();
    for (int i = 1;; i++) {
        if (atomic_load_explicit(v, memory_order_acquire) != old ||
            atomic_load_explicit(quit, memory_order_relaxed))
            return;
        cpu_relax();
        if (i % 8 == 0 && now_ns() - start > SPIN_NS)
            return;
    }
}

/* Polls until *v is zero, for at most SPIN_NS. */
static void spin_until_zero(const atomic_int *v)
{
    long start = now_ns();
    for (int i = 1;; i++) {
        if (atomic_load_explicit(v, memory_order_acquire) == 0)
            return;
        cpu_relax();
        if (i % 8 == 0 && now_ns() - start > SPIN_NS)
            return;
    }
}

/* Claims and runs tasks until none is left. Called with the lock held;
 * returns with it held. */
static void drain(cd_pool *p)
{
    while (p->next_task < p->n_tasks) {
        int t = p->next_task++;
        p->running++;
        cd_task_fn fn = p->fn;
        void *arg = p->arg;
        pthread_mutex_unlock(&p->lock);
        fn(arg, t);
        pthread_mutex_lock(&p->lock);
        p->running--;
        atomic_fetch_sub_explicit(&p->unfinished, 1, memory_order_release);
    }
    if (p->running == 0)
        pthread_cond_broadcast(&p->done);
}

static void *worker(void *arg)
{
    cd_pool *p = arg;
    unsigned long seen = 0;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        if (!p->quit && p->generation == seen) { /* poll before sleeping */
            pthread_mutex_unlock(&p->lock);
            spin_while_ulong(&p->generation, seen, &p->quit);
            pthread_mutex_lock(&p->lock);
        }
        while (!p->quit && p->generation == seen)
            pthread_cond_wait(&p->wake, &p->lock);
        if (p->quit)
            break;
        seen = p->generation;
        drain(p);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

cd_status cd_pool_create(int threads, cd_pool **out, cd_error *err)
{
    *out = NULL;
    if (threads <= 1)
        return CD_OK;
    cd_pool *p = calloc(1, sizeof *p);
    if (!p)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory creating a thread pool");
    p->workers = calloc((size_t)threads, sizeof *p->workers);
    if (!p->workers) {
        free(p);
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory creating a thread pool");
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    for (int i = 0; i < threads - 1; i++) {
        if (pthread_create(&p->workers[i], NULL, worker, p) != 0) {
            cd_pool_free(p);
            return cd_fail(err, CD_ERR_INTERNAL, "cannot start worker thread %d", i + 1);
        }
        p->n_workers++;
    }
    *out = p;
    return CD_OK;
}

void cd_pool_free(cd_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->quit = true;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->n_workers; i++)
        pthread_join(p->workers[i], NULL);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p->workers);
    free(p);
}

int cd_pool_threads(const cd_pool *p) { return p ? p->n_workers + 1 : 1; }

void cd_pool_run(cd_pool *p, int n_tasks, cd_task_fn fn, void *arg)
{
    if (!p || n_tasks <= 1) {
        for (int t = 0; t < n_tasks; t++)
            fn(arg, t);
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->fn = fn;
    p->arg = arg;
    p->n_tasks = n_tasks;
    p->next_task = 0;
    p->running = 0;
    atomic_store_explicit(&p->unfinished, n_tasks, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    drain(p);
    if (p->running > 0 || p->next_task < p->n_tasks) {
        pthread_mutex_unlock(&p->lock);
        spin_until_zero(&p->unfinished);
        pthread_mutex_lock(&p->lock);
    }
    while (p->running > 0 || p->next_task < p->n_tasks)
        pthread_cond_wait(&p->done, &p->lock);
    pthread_mutex_unlock(&p->lock);
}

typedef struct range_job {
    cd_range_fn fn;
    void *arg;
    int64_t total, per;
} range_job;

static void range_task(void *arg, int task)
{
    const range_job *j = arg;
    int64_t lo = (int64_t)task * j->per, hi = lo + j->per < j->total ? lo + j->per : j->total;
    j->fn(j->arg, lo, hi);
}

void cd_pool_for(cd_pool *pool, int64_t total, int max_tasks, cd_range_fn fn, void *arg)
{
    if (total <= 0)
        return;
    if (!pool || max_tasks <= 1) {
        fn(arg, 0, total);
        return;
    }
    int64_t tasks = total < max_tasks ? total : max_tasks;
    range_job j = {fn, arg, total, (total + tasks - 1) / tasks};
    cd_pool_run(pool, (int)((total + j.per - 1) / j.per), range_task, &j);
}

void cd_blas_single_thread(void)
{
    openblas_set_num_threads(1);
}

typedef struct gemm_job {
    bool ta, tb, split_rows;
    int64_t m, n, k, block;
    float alpha, beta;
    const float *a, *b;
    float *c;
    int64_t lda, ldb, ldc;
    const cd_gemm_hooks *hooks;
} gemm_job;

static void gemm_block(void *arg, int task)
{
    const gemm_job *j = arg;
    int64_t lo = (int64_t)task * j->block;
    int64_t total = j->split_rows ? j->m : j->n;
    int64_t len = total - lo < j->block ? total - lo : j->block;
    const float *a = j->a, *b = j->b;
    float *c = j->c;
    int64_t m = j->m, n = j->n;
    const cd_gemm_hooks *h = j->hooks;
    if (h && h->before && !j->split_rows)
        h->before(h->arg, 0, j->m, lo, lo + len);
    if (j->split_rows) { /* rows lo.. of op(A) and C */
        a += j->ta ? lo : lo * j->lda;
        c += lo * j->ldc;
        m = len;
    } else { /* columns lo.. of op(B) and C */
        b += j->tb ? lo * j->ldb : lo;
        c += lo;
        n = len;
    }
    cblas_sgemm(CblasRowMajor, j->ta ? CblasTrans : CblasNoTrans,
                j->tb ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)j->k, j->alpha, a,
                (int)j->lda, b, (int)j->ldb, j->beta, c, (int)j->ldc);
    if (h && h->after && j->split_rows)
        h->after(h->arg, lo, lo + len, 0, j->n);
    else if (h && h->after)
        h->after(h->arg, 0, j->m, lo, lo + len);
}

/* Products of fewer multiply-adds than this run as one block. */
#define SGEMM_ONE_BLOCK_MACS 65536.0

/* Block size from the shape only (never from the thread count): an even
 * number of blocks along the longer of m and n when there is more than one,
 * so two (or four) threads get equal shares — "eight blocks of at least
 * 64" gave SqueezeNet's 13x13 layers (169 or 192 long) three blocks, which
 * two threads ran only 1.3x faster than one. At most len / 48 blocks (every
 * row block repacks all of B), at most 8, and sizes multiples of 16:
 * OpenBLAS's AVX-512 small-matrix kernel mallocs a buffer on each call for
 * other widths (and runs slower). nb = 2 always fits (len >= 48), so the
 * search ends. */
static int64_t block_of(int64_t len)
{
    int64_t nb = len / 48;
    nb = nb > 8 ? 8 : nb;
    for (nb += nb % 2; nb >= 2; nb -= 2) {
        int64_t b = ((len + nb - 1) / nb + 15) / 16 * 16;
        if ((len + b - 1) / b == nb)
            return b;
    }
    return (len + 15) / 16 * 16; /* one block */
}

void cd_sgemm(cd_ctx *ctx, bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
              const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
              int64_t ldc)
{
    cd_sgemm_then(ctx, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, NULL);
}

bool cd_sgemm_splits_rows(int64_t m, int64_t n) { return n < m; }

void cd_sgemm_then(cd_ctx *ctx, bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                   const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                   int64_t ldc, const cd_gemm_hooks *hooks)
{
    if (m <= 0 || n <= 0)
        return;
    gemm_job j = {ta, tb, cd_sgemm_splits_rows(m, n), m, n, k, 0, alpha, beta,
                  a,  b,  c, lda, ldb, ldc, hooks};
    if (hooks && hooks->before && j.split_rows)
        hooks->before(hooks->arg, 0, m, 0, n);
    int64_t total = j.split_rows ? m : n;
    /* Products too small to repay a pool round trip (a few microseconds of
     * work: squeeze-excitation 1x1 convolutions on 1x1 maps) stay one block,
     * run by the caller. */
    bool tiny = (double)m * (double)n * (double)k < SGEMM_ONE_BLOCK_MACS;
    j.block = tiny ? total : block_of(total);
    int64_t tasks = (total + j.block - 1) / j.block;
    cd_pool_run(ctx ? ctx->pool : NULL, (int)tasks, gemm_block, &j);
}

cd_status cd_ctx_ensure_pool(cd_ctx *ctx)
{
    int want = ctx->threads > 1 ? ctx->threads : 1;
    if (cd_pool_threads(ctx->pool) == want)
        return CD_OK;
    cd_pool_free(ctx->pool);
    ctx->pool = NULL;
    return cd_pool_create(want, &ctx->pool, ctx->err);
}

void cd_ctx_release(cd_ctx *ctx)
{
    free(ctx->scratch);
    ctx->scratch = NULL;
    ctx->scratch_size = 0;
    cd_pool_free(ctx->pool);
    ctx->pool = NULL;
}
