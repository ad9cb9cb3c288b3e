/* Scale-out of the CLI over MPI ranks (docs/scale-out.md).
 *
 * `mpirun -n N candor predict|calibrate|report|explain ...` splits the input
 * list into N contiguous blocks (rank r gets block r; the first n mod N ranks
 * one input more), each rank runs its block with its own threads, and the
 * per-input results travel to rank 0 in input order, which alone writes the
 * outputs. Contiguous blocks make "concatenate the ranks in rank order" the
 * same as "input order", so no result needs an index.
 *
 * Built without CANDOR_WITH_MPI, or run without an MPI launcher, every
 * function acts as rank 0 of 1: ranges cover everything, captures and
 * gathers are pass-through, and the commands behave exactly as before.
 * Only the CLI links MPI; the library stays MPI-free. */
#ifndef CANDOR_CLI_MPI_SHARD_H
#define CANDOR_CLI_MPI_SHARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <time.h>

/* Joins the MPI job when the process was started by an MPI launcher
 * (mpirun/mpiexec/srun); otherwise does nothing. Safe to call repeatedly.
 * From here on the process must leave through mpi_shard_finish(): any other
 * exit (an early error return) aborts the whole job so no rank waits
 * forever. Returns true when there is more than one rank. */
bool mpi_shard_start(void);
int mpi_shard_rank(void);
int mpi_shard_size(void);

/* This rank's contiguous block [*first, *first + *count) of n items. */
void mpi_shard_range(size_t n, size_t *first, size_t *count);
/* The same over whole units of `unit` items (batches): blocks start on a
 * multiple of unit, so every rank runs exactly the batches a serial run
 * would (BLAS may round a row differently in another batch size). */
void mpi_shard_range_units(size_t n, size_t unit, size_t *first, size_t *count);

/* The thread count for this rank (collective): `requested` when not 0 or
 * with one rank, else the node's cores divided by the ranks on the node (at
 * least 1), so N ranks on one machine do not oversubscribe it. */
int mpi_shard_threads(int requested);

/* Collective failure check. msg NULL = this rank succeeded; else its error
 * (the rank's number is added). Returns the number of failing ranks (the
 * same on every rank); on rank 0, `first` (cap bytes, may be NULL) receives
 * "rank R: msg" of the lowest failing rank. */
int mpi_shard_failures(const char *msg, char *first, size_t cap);

/* Gathers each rank's `len` bytes to rank 0, concatenated in rank order
 * (= input order). On rank 0 *all (malloc'ed, one NUL appended, not counted)
 * and *all_len receive them; elsewhere *all = NULL. Returns 0, or -1 (out
 * of memory, or more than 2 GiB from one rank). */
int mpi_shard_gather(const void *mine, size_t len, char **all, size_t *all_len);

/* Sends what the program prints on stdout into a temporary file until
 * mpi_shard_capture_end(), which returns it (malloc'ed, NUL-terminated) and
 * restores stdout. With one rank both do nothing (*text = NULL): output goes
 * straight to stdout as usual. Returns 0 or -1. */
int mpi_shard_capture_begin(void);
int mpi_shard_capture_end(char **text, size_t *len);

/* The usual end of a sharded command loop whose per-input results were
 * printed on (captured) stdout: checks failures across ranks and, when
 * none failed, writes every rank's text on rank 0's stdout in input order.
 * `failure` is NULL when this rank succeeded, else what went wrong (e.g.
 * "2 input(s) failed, the first: x.png"). Returns the number of failing
 * ranks (0 = all good); rank 0 has then printed "candor CMD: rank R: ..."
 * for the first of them. With one rank: returns failure != NULL. */
int mpi_shard_end_stdout(const char *cmd, char *captured, size_t captured_len,
                         const char *failure);

/* Reads a whole temporary stream (e.g. per-rank CSV rows) into a malloc'ed,
 * NUL-terminated buffer. Returns 0 or -1. */
int mpi_shard_slurp(FILE *f, char **text, size_t *len);

/* Global progress printed by rank 0 only: the other ranks report their
 * counts to it (at most once a second). Every rank must call begin, the
 * steps and end, with the same `quiet` (quiet = nothing printed or sent). */
typedef struct mpi_progress {
    const char *fmt;   /* printf format with two %zu: done, total */
    size_t total;      /* over all ranks */
    size_t local;      /* this rank's count */
    size_t *per_rank;  /* rank 0: the latest count of each rank */
    time_t last;
    int done_ranks;    /* rank 0: ranks that reported their final count */
    bool quiet, carriage; /* carriage: rewrite one terminal line (\r) */
    bool printed_all;
} mpi_progress;

void mpi_progress_begin(mpi_progress *p, const char *fmt, size_t total, bool quiet);
void mpi_progress_step(mpi_progress *p, size_t done_local);
void mpi_progress_end(mpi_progress *p);

/* Collective end of a command: every rank exits with the largest status of
 * all ranks (so rank 0's failure to write fails the job on every rank).
 * Returns rc unchanged with one rank. */
int mpi_shard_finish(int rc);

#endif
