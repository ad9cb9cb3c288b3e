/* Timing helpers shared by the single-file benchmarks (explain_cost.c,
 * mc_cost.c), which are built by their scripts with a plain `cc`: hence a
 * header of static inline functions instead of another source file. The
 * includer defines _POSIX_C_SOURCE (clock_gettime) before any system header. */
#ifndef CANDOR_BENCH_UTIL_H
#define CANDOR_BENCH_UTIL_H

#include <stdlib.h>
#include <time.h>

static inline double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n-1]; sorts v. */
static inline double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#endif
