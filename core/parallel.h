/* candor's own worker pool and the deterministic parallel GEMM.
 *
 * Why our own pool around single-threaded OpenBLAS instead of OpenBLAS's
 * threads: OpenBLAS partitions a GEMM by its thread count, and its edge
 * kernels then round some outputs differently, so the same input gave
 * different bits with 1 and 2 threads. cd_sgemm cuts every GEMM into blocks
 * chosen from the matrix shape alone and runs each block as one
 * single-threaded OpenBLAS call; the pool only decides which thread runs which
 * block. Results are therefore bit-identical for any thread count, and one
 * setting (the session's threads) governs all parallel work — OpenBLAS is
 * kept at one thread, so there is no oversubscription. */
#ifndef CANDOR_PARALLEL_H
#define CANDOR_PARALLEL_H

#include <stdbool.h>

#include "internal.h"

struct cd_ctx;
typedef struct cd_pool cd_pool;

/* A pool of threads - 1 workers (the caller is the last one). threads <= 1
 * gives a NULL pool (serial). */
cd_status cd_pool_create(int threads, cd_pool **out, cd_error *err);
void cd_pool_free(cd_pool *pool);
int cd_pool_threads(const cd_pool *pool);

typedef void (*cd_task_fn)(void *arg, int task);
/* Runs fn(arg, 0..n_tasks-1), spread over the pool (serially when pool is
 * NULL). Returns when all tasks are done. Not re-entrant for one pool. */
void cd_pool_run(cd_pool *pool, int n_tasks, cd_task_fn fn, void *arg);

typedef void (*cd_range_fn)(void *arg, int64_t lo, int64_t hi);
/* Runs fn over [0, total) cut into at most max_tasks equal ranges (the cut
 * depends on total and max_tasks only, never on the pool), spread over the
 * pool. For independent work such as per-channel or per-plane loops. */
void cd_pool_for(cd_pool *pool, int64_t total, int max_tasks, cd_range_fn fn, void *arg);

/* Row-major C = alpha * op(A) * op(B) + beta * C, op(X) = X or X^T, with the
 * blocking described above. Uses ctx->pool when set. */
void cd_sgemm(struct cd_ctx *ctx, bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
              const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
              int64_t ldc);

/* A block of C: rows [r0, r1) and columns [c0, c1). */
typedef void (*cd_block_fn)(void *arg, int64_t r0, int64_t r1, int64_t c0, int64_t c1);
/* Work cd_sgemm_then runs on the thread that computes a block, so the data
 * stays in its cache: before(arg, block) just before the block's product
 * (e.g. filling the block's columns of op(B)) and after(arg, block) right
 * after it (C's block is final). Either may be NULL. When the GEMM is cut
 * into row blocks (cd_sgemm_splits_rows), every block reads all of op(B):
 * before is then called once, on the caller's thread, with the whole of C
 * before any block runs. */
typedef struct cd_gemm_hooks {
    cd_block_fn before, after;
    void *arg;
} cd_gemm_hooks;
/* Whether cd_sgemm cuts an m x n product into row blocks (else columns). */
bool cd_sgemm_splits_rows(int64_t m, int64_t n);
/* cd_sgemm with hooks (NULL = none). */
void cd_sgemm_then(struct cd_ctx *ctx, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                   float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                   float beta, float *c, int64_t ldc, const cd_gemm_hooks *hooks);

/* Makes OpenBLAS single-threaded (process-wide, idempotent). */
void cd_blas_single_thread(void);



/* Gives ctx a pool for ctx->threads (kept while the count stays the same).
 * cd_plan_run calls it, so every owner of a cd_ctx gets parallel kernels. */
cd_status cd_ctx_ensure_pool(struct cd_ctx *ctx);
/* Frees what a cd_ctx owns (scratch and pool); the struct itself stays. */
void cd_ctx_release(struct cd_ctx *ctx);
#endif
