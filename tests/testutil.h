/* Shared helpers for candor's CMocka tests. */
#ifndef CANDOR_TESTUTIL_H
#define CANDOR_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/graph.h"
#include "core/ops/op.h"

/* Deterministic uniform floats in [lo, hi) from a 64-bit state. */
float tu_uniform(uint64_t *state, float lo, float hi);
/* New float32 tensor filled with uniform values (seeded). Caller frees. */
cd_tensor *tu_random(int ndim, const int64_t *dims, uint64_t seed, float lo, float hi);
/* New tensor from literal values. */
cd_tensor *tu_tensor_f32(int ndim, const int64_t *dims, const float *vals);
cd_tensor *tu_tensor_i64(int ndim, const int64_t *dims, const int64_t *vals);

/* cd_node_init / cd_node_bind that fail the test (with the bind message)
 * instead of returning a status. */
void tu_node_make(cd_node *n, const char *op, int opset, int nin, int nout);
void tu_node_bind(cd_node *n);

/* Runs the node's shape rule and forward kernel. out[] receives new tensors
 * (caller frees). in[i] may be NULL for omitted inputs. Returns the status
 * and leaves the message in err. Inputs are treated as constants for the
 * shape rule when const_inputs is true. */
cd_status tu_run_node(cd_node *n, cd_tensor **in, cd_tensor **out, bool const_inputs,
                      cd_error *err);

/* Checks the node's backward against central finite differences of
 * L = sum_j <w_j, out_j> for random weights w_j, for every float32 input i
 * with check[i] true. Finite differences are taken in float32 on the
 * kernel with step eps, and compared with tolerance
 *   |analytic - numeric| <= atol + rtol * max(|analytic|, |numeric|).
 * When the operator has float64 kernels (forward64/backward64), they are
 * checked too on the same node and inputs: forward64 against the float32
 * forward, backward64 against central differences taken in float64 with
 * relative tolerance 1e-6 (testutil.c, gradcheck64).
 * Returns the largest normalised error found (<= 1 means within tolerance). */
double tu_gradcheck(cd_node *n, cd_tensor **in, const bool *check, float eps, double atol,
                    double rtol);

/* A scratch folder for tests that exchange files with Python: created as
 * /tmp/<prefix>_XXXXXX by tu_scratch_create (0 on success, -1 on failure, the
 * CMocka group-setup convention) and removed with everything in it by
 * tu_scratch_remove. */
int tu_scratch_create(const char *prefix);
int tu_scratch_remove(void);
const char *tu_scratch_dir(void);
/* "<scratch>/<name>"; the result stays valid for the next three calls. */
const char *tu_scratch_path(const char *name);
/* Runs a Python snippet with /usr/bin/python3 in the scratch folder; returns
 * system()'s status. */
int tu_run_python(const char *code);

/* Max |a-b| between two float32 tensors of equal size (asserts same numel). */
double tu_max_abs_diff(const cd_tensor *a, const cd_tensor *b);

#endif
