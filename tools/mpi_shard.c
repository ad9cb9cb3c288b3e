/* MPI scale-out of the CLI commands (see mpi_shard.h, docs/scale-out.md).
 * The state below is per process and only touched by the main thread: the
 * CLI calls MPI from one thread (MPI_THREAD_FUNNELED). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mpi_shard.h"

#ifdef CANDOR_WITH_MPI
#include <mpi.h>
#endif

enum { TAG_PROGRESS = 0xCA1, TAG_DONE = 0xCA2, MSG_CAP = 1024 };

static struct {
    bool started, mpi, finished;
    int rank, size;
    FILE *capture;  /* stdout's temporary home between capture begin/end */
    int saved_stdout;
} g = {.size = 1, .saved_stdout = -1};

#ifdef CANDOR_WITH_MPI
/* Open MPI, PMIx (srun) and MPICH-style launchers set one of these; a plain
 * `candor ...` then never touches MPI (no singleton start-up cost). */
static bool launched_by_mpi(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK",
                                       "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i]))
            return true;
    return false;
}

/* A rank that leaves without mpi_shard_finish() (an early error return)
 * would leave the others blocked in a collective: abort the job instead. */
static void at_exit(void)
{
    fflush(stdout);
    fflush(stderr);
    if (g.finished) {
        MPI_Finalize();
        return;
    }
    fprintf(stderr, "candor: rank %d of %d stopped the job (its error is above)\n", g.rank,
            g.size);
    MPI_Abort(MPI_COMM_WORLD, 1);
}
#endif

bool mpi_shard_start(void)
{
#ifdef CANDOR_WITH_MPI
    if (!g.started && launched_by_mpi()) {
        int provided = 0;
        MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
        MPI_Comm_rank(MPI_COMM_WORLD, &g.rank);
        MPI_Comm_size(MPI_COMM_WORLD, &g.size);
        g.mpi = true;
        atexit(at_exit);
    }
#endif
    g.started = true;
    return g.size > 1;
}

int mpi_shard_rank(void) { return g.rank; }
int mpi_shard_size(void) { return g.size; }

void mpi_shard_range(size_t n, size_t *first, size_t *count)
{
    size_t size = (size_t)g.size, r = (size_t)g.rank;
    size_t base = n / size, extra = n % size;
    *first = r * base + (r < extra ? r : extra);
    *count = base + (r < extra ? 1 : 0);
}

void mpi_shard_range_units(size_t n, size_t unit, size_t *first, size_t *count)
{
    if (unit < 1)
        unit = 1;
    size_t f, c;
    mpi_shard_range((n + unit - 1) / unit, &f, &c);
    *first = f * unit < n ? f * unit : n;
    size_t end = (f + c) * unit < n ? (f + c) * unit : n;
    *count = end - *first;
}

int mpi_shard_threads(int requested)
{
    if (requested != 0 || g.size <= 1)
        return requested;
    int local = 1;
#ifdef CANDOR_WITH_MPI
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g.rank, MPI_INFO_NULL, &node);
    MPI_Comm_size(node, &local);
    MPI_Comm_free(&node);
#endif
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    long t = cores > 0 ? cores / (local > 0 ? local : 1) : 1;
    return t < 1 ? 1 : (int)t;
}

int mpi_shard_failures(const char *msg, char *first, size_t cap)
{
    char mine[MSG_CAP] = "";
    if (msg)
        snprintf(mine, sizeof mine, "rank %d: %s", g.rank, msg);
    if (first && cap)
        snprintf(first, cap, "%s", mine);
    int bad = msg != NULL;
#ifdef CANDOR_WITH_MPI
    if (!g.mpi)
        return bad;
    int total = 0;
    MPI_Allreduce(&bad, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (total == 0)
        return 0;
    char *all = g.rank == 0 ? calloc((size_t)g.size, MSG_CAP) : NULL;
    if (g.rank == 0 && !all) /* cannot collect the texts: still report the count */
        snprintf(mine, sizeof mine, "%d rank(s) failed (out of memory for their messages)",
                 total);
    MPI_Gather(mine, MSG_CAP, MPI_CHAR, all, all ? MSG_CAP : 0, MPI_CHAR, 0, MPI_COMM_WORLD);
    for (int r = 0; all && r < g.size; r++)
        if (all[(size_t)r * MSG_CAP]) {
            if (first && cap)
                snprintf(first, cap, "%.*s", MSG_CAP - 1, all + (size_t)r * MSG_CAP);
            break;
        }
    free(all);
    return total;
#else
    return bad;
#endif
}

int mpi_shard_gather(const void *mine, size_t len, char **all, size_t *all_len)
{
    *all = NULL;
    *all_len = 0;
    if (!g.mpi || g.size <= 1) {
        *all = malloc(len + 1);
        if (!*all)
            return -1;
        if (len)
            memcpy(*all, mine, len);
        (*all)[len] = 0;
        *all_len = len;
        return 0;
    }
#ifdef CANDOR_WITH_MPI
    unsigned long long n = len, *lens = NULL;
    int ok = 1, *counts = NULL, *displs = NULL;
    if (g.rank == 0) {
        lens = malloc((size_t)g.size * sizeof *lens);
        counts = malloc((size_t)g.size * sizeof *counts);
        displs = malloc((size_t)g.size * sizeof *displs);
        ok = lens && counts && displs;
    }
    MPI_Gather(&n, 1, MPI_UNSIGNED_LONG_LONG, lens, 1, MPI_UNSIGNED_LONG_LONG, 0,
               MPI_COMM_WORLD);
    unsigned long long total = 0;
    for (int r = 0; ok && g.rank == 0 && r < g.size; r++) {
        /* MPI counts and displacements are ints: 2 GiB in all at most. */
        ok = total + lens[r] <= (unsigned long long)INT_MAX;
        displs[r] = (int)total;
        counts[r] = (int)lens[r];
        total += lens[r];
    }
    if (ok && g.rank == 0) {
        *all = malloc((size_t)total + 1);
        ok = *all != NULL;
    }
    MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (ok)
        MPI_Gatherv(mine, (int)len, MPI_BYTE, *all, counts, displs, MPI_BYTE, 0,
                    MPI_COMM_WORLD);
    free(lens);
    free(counts);
    free(displs);
    if (!ok) {
        free(*all);
        *all = NULL;
        return -1;
    }
    if (*all) {
        (*all)[total] = 0;
        *all_len = (size_t)total;
    }
    return 0;
#else
    return -1;
#endif
}

int mpi_shard_capture_begin(void)
{
    if (g.size <= 1 || g.capture)
        return 0;
    fflush(stdout);
    g.capture = tmpfile();
    g.saved_stdout = g.capture ? dup(STDOUT_FILENO) : -1;
    if (g.saved_stdout < 0 || dup2(fileno(g.capture), STDOUT_FILENO) < 0) {
        if (g.saved_stdout >= 0)
            close(g.saved_stdout);
        if (g.capture)
            fclose(g.capture);
        g.capture = NULL;
        g.saved_stdout = -1;
        return -1;
    }
    return 0;
}

int mpi_shard_capture_end(char **text, size_t *len)
{
    *text = NULL;
    *len = 0;
    if (!g.capture)
        return 0;
    fflush(stdout);
    dup2(g.saved_stdout, STDOUT_FILENO);
    close(g.saved_stdout);
    g.saved_stdout = -1;
    struct stat st;
    int rc = fstat(fileno(g.capture), &st) == 0 ? 0 : -1;
    size_t n = rc == 0 ? (size_t)st.st_size : 0;
    *text = rc == 0 ? malloc(n + 1) : NULL;
    if (*text && pread(fileno(g.capture), *text, n, 0) == (ssize_t)n) {
        (*text)[n] = 0;
        *len = n;
    } else {
        free(*text);
        *text = NULL;
        rc = -1;
    }
    fclose(g.capture);
    g.capture = NULL;
    return rc;
}

int mpi_shard_end_stdout(const char *cmd, char *captured, size_t captured_len,
                         const char *failure)
{
    if (g.size <= 1) /* serial: everything was printed as it came */
        return failure ? 1 : 0;
    char first[MSG_CAP + 64];
    int bad = mpi_shard_failures(failure, first, sizeof first);
    if (bad) {
        if (g.rank == 0)
            fprintf(stderr, "candor %s: %s; %d rank(s) failed, no output written\n", cmd, first,
                    bad);
        return bad;
    }
    char *all = NULL;
    size_t n = 0;
    if (mpi_shard_gather(captured, captured_len, &all, &n) != 0) {
        if (g.rank == 0)
            fprintf(stderr, "candor %s: could not gather the results on rank 0\n", cmd);
        return 1;
    }
    if (all)
        fwrite(all, 1, n, stdout);
    free(all);
    return 0;
}

/* ------------------------------------------------------------- progress */

static size_t progress_sum(const mpi_progress *p)
{
    if (!p->per_rank)
        return p->local;
    size_t s = 0;
    for (int r = 0; r < g.size; r++)
        s += r == 0 ? p->local : p->per_rank[r];
    return s;
}

static void progress_print(mpi_progress *p, bool force)
{
    time_t now = time(NULL);
    size_t done = progress_sum(p);
    if (p->printed_all || (!force && now == p->last && done != p->total))
        return;
    p->last = now;
    p->printed_all = done == p->total;
    if (p->carriage)
        fputc('\r', stderr);
    fprintf(stderr, p->fmt, done, p->total);
    if (!p->carriage)
        fputc('\n', stderr);
}

void mpi_progress_begin(mpi_progress *p, const char *fmt, size_t total, bool quiet)
{
    *p = (mpi_progress){.fmt = fmt, .total = total, .quiet = quiet, .last = time(NULL)};
    if (!quiet && g.rank == 0 && g.size > 1)
        p->per_rank = calloc((size_t)g.size, sizeof *p->per_rank);
}

#ifdef CANDOR_WITH_MPI
/* Rank 0: takes one progress message (blocking or not); false when none. */
static bool progress_take(mpi_progress *p, bool block)
{
    int flag = 1;
    MPI_Status s;
    if (!block)
        MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &s);
    if (!flag)
        return false;
    unsigned long long v = 0;
    MPI_Recv(&v, 1, MPI_UNSIGNED_LONG_LONG, block ? MPI_ANY_SOURCE : s.MPI_SOURCE,
             block ? MPI_ANY_TAG : s.MPI_TAG, MPI_COMM_WORLD, &s);
    if (p->per_rank && s.MPI_SOURCE > 0 && s.MPI_SOURCE < g.size)
        p->per_rank[s.MPI_SOURCE] = (size_t)v;
    if (s.MPI_TAG == TAG_DONE)
        p->done_ranks++;
    return true;
}

static void progress_send(size_t v, int tag)
{
    unsigned long long x = v;
    MPI_Send(&x, 1, MPI_UNSIGNED_LONG_LONG, 0, tag, MPI_COMM_WORLD);
}
#endif

void mpi_progress_step(mpi_progress *p, size_t done_local)
{
    p->local = done_local;
    if (p->quiet)
        return;
#ifdef CANDOR_WITH_MPI
    if (g.size > 1 && g.rank != 0) {
        time_t now = time(NULL);
        if (now != p->last) {
            p->last = now;
            progress_send(done_local, TAG_PROGRESS);
        }
        return;
    }
    while (g.size > 1 && progress_take(p, false))
        ;
#endif
    progress_print(p, false);
}

void mpi_progress_end(mpi_progress *p)
{
    if (!p->quiet) {
#ifdef CANDOR_WITH_MPI
        if (g.size > 1 && g.rank != 0)
            progress_send(p->local, TAG_DONE);
        while (g.size > 1 && g.rank == 0 && p->done_ranks < g.size - 1) {
            progress_take(p, true);
            progress_print(p, false);
        }
#endif
        if (g.rank == 0 && p->carriage && p->last && p->printed_all)
            fputc('\n', stderr);
    }
    free(p->per_rank);
    p->per_rank = NULL;
}

int mpi_shard_finish(int rc)
{
#ifdef CANDOR_WITH_MPI
    if (g.mpi && !g.finished) {
        int worst = rc;
        MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        g.finished = true;
        return worst;
    }
#endif
    return rc;
}

int mpi_shard_slurp(FILE *f, char **text, size_t *len)
{
    *text = NULL;
    *len = 0;
    long n = fflush(f) == 0 && fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0)
        return -1;
    *text = malloc((size_t)n + 1);
    if (!*text || fread(*text, 1, (size_t)n, f) != (size_t)n) {
        free(*text);
        *text = NULL;
        return -1;
    }
    (*text)[n] = 0;
    *len = (size_t)n;
    return 0;
}
