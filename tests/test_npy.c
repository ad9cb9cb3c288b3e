/* .npy reading/writing: round trips, files written by NumPy, files NumPy
 * must read back, and malformed headers. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "candor/image.h"

static int setup(void **state)
{
    CD_UNUSED(state);
    return tu_scratch_create("candor_npy");
}

static int teardown(void **state)
{
    CD_UNUSED(state);
    return tu_scratch_remove();
}

static bool have_numpy(void)
{
    return system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0;
}

/* ------------------------------------------------------------ round trips */

static void roundtrip(cd_dtype dtype, int ndim, const int64_t *dims)
{
    cd_tensor *t = NULL, *back = NULL;
    cd_error err;
    assert_int_equal(cd_tensor_create(dtype, ndim, dims, &t, &err), CD_OK);
    uint8_t *b = cd_tensor_data(t);
    size_t nb = cd_tensor_nbytes(t);
    for (size_t i = 0; i < nb; i++)
        b[i] = dtype == CD_BOOL ? (uint8_t)(i % 2) : (uint8_t)(i * 37 + 11);
    const char *path = tu_scratch_path("rt.npy");
    assert_int_equal(cd_npy_save(path, t, &err), CD_OK);
    assert_int_equal(cd_npy_load(path, &back, &err), CD_OK);
    assert_int_equal(cd_tensor_dtype(back), dtype);
    assert_int_equal(cd_tensor_ndim(back), ndim);
    for (int i = 0; i < ndim; i++)
        assert_int_equal(cd_tensor_dims(back)[i], dims[i]);
    assert_int_equal(cd_tensor_nbytes(back), nb);
    if (nb)
        assert_memory_equal(cd_tensor_data(back), b, nb);
    cd_tensor_free(t);
    cd_tensor_free(back);
}

static void test_roundtrip(void **state)
{
    CD_UNUSED(state);
    int64_t d3[3] = {2, 3, 4}, d1[1] = {7}, d0[1] = {0}, dz[2] = {0, 3};
    roundtrip(CD_FLOAT32, 3, d3);
    roundtrip(CD_FLOAT64, 1, d1);
    roundtrip(CD_INT64, 3, d3);
    roundtrip(CD_INT32, 1, d1);
    roundtrip(CD_UINT8, 3, d3);
    roundtrip(CD_INT8, 1, d1);
    roundtrip(CD_BOOL, 3, d3);
    roundtrip(CD_FLOAT32, 0, d0); /* scalar */
    roundtrip(CD_FLOAT32, 2, dz); /* empty */
}

static void test_header_alignment(void **state)
{
    CD_UNUSED(state);
    int64_t dims[2] = {3, 5};
    cd_tensor *t = tu_random(2, dims, 1, -1, 1);
    const char *path = tu_scratch_path("align.npy");
    assert_int_equal(cd_npy_save(path, t, NULL), CD_OK);
    FILE *fp = fopen(path, "rb");
    uint8_t pre[10];
    assert_int_equal(fread(pre, 1, 10, fp), 10);
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fclose(fp);
    size_t hlen = pre[8] | (size_t)pre[9] << 8;
    assert_int_equal((10 + hlen) % 64, 0); /* data 64-byte aligned as numpy does */
    assert_int_equal((size_t)size, 10 + hlen + 15 * 4);
    cd_tensor_free(t);
}

static void test_atomic_no_overwrite(void **state)
{
    CD_UNUSED(state);
    int64_t dims[1] = {4};
    cd_tensor *t = tu_random(1, dims, 2, 0, 1), *back = NULL;
    const char *path = tu_scratch_path("keep.npy");
    cd_error err;
    assert_int_equal(cd_npy_save_ex(path, t, false, &err), CD_OK);
    cd_tensor *t2 = tu_random(1, dims, 3, 0, 1);
    assert_int_equal(cd_npy_save_ex(path, t2, false, &err), CD_ERR_IO);
    assert_non_null(strstr(err.message, "exists"));
    assert_int_equal(cd_npy_load(path, &back, &err), CD_OK);
    assert_memory_equal(cd_tensor_data(back), cd_tensor_data(t), 16);
    cd_tensor_free(back);
    assert_int_equal(cd_npy_save_ex(path, t2, true, &err), CD_OK);
    assert_int_equal(cd_npy_load(path, &back, &err), CD_OK);
    assert_memory_equal(cd_tensor_data(back), cd_tensor_data(t2), 16);
    cd_tensor_free(back);
    /* A folder that does not exist: fails cleanly. */
    assert_int_equal(cd_npy_save(tu_scratch_path("no/such/dir/x.npy"), t, &err), CD_ERR_IO);
    /* No temporary files are left behind. */
    DIR *d = opendir(tu_scratch_dir());
    struct dirent *e;
    while ((e = readdir(d)))
        assert_null(strstr(e->d_name, ".tmp."));
    closedir(d);
    cd_tensor_free(t);
    cd_tensor_free(t2);
}

/* ------------------------------------------------------- NumPy interop */

static void check_arange(const char *name, cd_dtype want, bool to_f32, int ndim,
                         const int64_t *dims, double a, double b)
{
    cd_tensor *t = NULL;
    cd_error err;
    cd_status s = cd_npy_load_ex(tu_scratch_path(name), NULL, to_f32, &t, &err);
    if (s != CD_OK)
        fail_msg("%s: %s", name, err.message);
    assert_int_equal(cd_tensor_dtype(t), want);
    assert_int_equal(cd_tensor_ndim(t), ndim);
    for (int i = 0; i < ndim; i++)
        assert_int_equal(cd_tensor_dims(t)[i], dims[i]);
    size_t n = cd_tensor_numel(t);
    for (size_t i = 0; i < n; i++) {
        double expect = a * (double)i + b, got = 0;
        switch (cd_tensor_dtype(t)) {
        case CD_FLOAT32: got = ((float *)cd_tensor_data(t))[i]; break;
        case CD_FLOAT64: got = ((double *)cd_tensor_data(t))[i]; break;
        case CD_INT64: got = (double)((int64_t *)cd_tensor_data(t))[i]; break;
        case CD_INT32: got = ((int32_t *)cd_tensor_data(t))[i]; break;
        case CD_UINT8: got = ((uint8_t *)cd_tensor_data(t))[i]; break;
        case CD_BOOL: got = ((uint8_t *)cd_tensor_data(t))[i]; expect = (double)(i % 2); break;
        default: fail();
        }
        if (fabs(got - expect) > 1e-6 * (1 + fabs(expect)))
            fail_msg("%s[%zu] = %g, expected %g", name, i, got, expect);
    }
    cd_tensor_free(t);
}

static void test_numpy_written(void **state)
{
    CD_UNUSED(state);
    if (!have_numpy())
        skip();
    assert_int_equal(tu_run_python(
        "import numpy as np\n"
        "from numpy.lib import format as F\n"
        "a = (np.arange(24) * 0.5 - 3).reshape(2, 3, 4)\n"
        "np.save('f4.npy', a.astype('<f4'))\n"
        "np.save('f8.npy', a.astype('<f8'))\n"
        "np.save('be.npy', a.astype('>f4'))\n"
        "np.save('u1.npy', np.arange(200, dtype=np.uint8).reshape(10, 20))\n"
        "np.save('i8.npy', (np.arange(6, dtype=np.int64) * -7 + 5).reshape(6, 1))\n"
        "np.save('i4.npy', np.arange(5, dtype=np.int32) * 3)\n"
        "np.save('b1.npy', np.arange(9) % 2 == 1)\n"
        "np.save('scalar.npy', np.float32(2.5))\n"
        "np.save('fortran.npy', np.asfortranarray(a.astype('<f4')))\n"
        "np.save('c8.npy', np.zeros(3, dtype=np.complex64))\n"
        "for v in (2, 3):\n"
        "    with open('v%d.npy' % v, 'wb') as f:\n"
        "        F.write_array(f, a.astype('<f4'), version=(v, 0))\n"),
        0);
    int64_t d3[3] = {2, 3, 4}, du[2] = {10, 20}, di[2] = {6, 1}, d5[1] = {5}, d9[1] = {9};
    check_arange("f4.npy", CD_FLOAT32, false, 3, d3, 0.5, -3);
    check_arange("f8.npy", CD_FLOAT64, false, 3, d3, 0.5, -3);
    check_arange("f8.npy", CD_FLOAT32, true, 3, d3, 0.5, -3);
    check_arange("be.npy", CD_FLOAT32, false, 3, d3, 0.5, -3);
    check_arange("u1.npy", CD_UINT8, false, 2, du, 1, 0);
    check_arange("u1.npy", CD_FLOAT32, true, 2, du, 1, 0);
    check_arange("i8.npy", CD_INT64, false, 2, di, -7, 5);
    check_arange("i8.npy", CD_FLOAT32, true, 2, di, -7, 5);
    check_arange("i4.npy", CD_INT32, false, 1, d5, 3, 0);
    check_arange("b1.npy", CD_BOOL, false, 1, d9, 0, 0);
    check_arange("scalar.npy", CD_FLOAT32, false, 0, NULL, 0, 2.5);
    check_arange("v2.npy", CD_FLOAT32, false, 3, d3, 0.5, -3);
    check_arange("v3.npy", CD_FLOAT32, false, 3, d3, 0.5, -3);
    cd_tensor *t = NULL;
    cd_error err;
    assert_int_equal(cd_npy_load(tu_scratch_path("fortran.npy"), &t, &err), CD_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.message, "Fortran"));
    assert_int_equal(cd_npy_load(tu_scratch_path("c8.npy"), &t, &err), CD_ERR_UNSUPPORTED);
    assert_null(t);
}

static void test_numpy_reads_ours(void **state)
{
    CD_UNUSED(state);
    if (!have_numpy())
        skip();
    int64_t dims[3] = {2, 3, 5};
    cd_tensor *t = NULL, *l = NULL;
    assert_int_equal(cd_tensor_create(CD_FLOAT32, 3, dims, &t, NULL), CD_OK);
    float *p = cd_tensor_data(t);
    for (int i = 0; i < 30; i++)
        p[i] = 0.25f * (float)i - 1.0f;
    int64_t ld[1] = {4};
    assert_int_equal(cd_tensor_create(CD_INT64, 1, ld, &l, NULL), CD_OK);
    int64_t *q = cd_tensor_data(l);
    for (int i = 0; i < 4; i++)
        q[i] = (int64_t)i * 1000000000000LL - 3;
    assert_int_equal(cd_npy_save(tu_scratch_path("ours.npy"), t, NULL), CD_OK);
    assert_int_equal(cd_npy_save(tu_scratch_path("ours_i8.npy"), l, NULL), CD_OK);
    assert_int_equal(tu_run_python(
        "import numpy as np, sys\n"
        "a = np.load('ours.npy')\n"
        "ok = a.dtype == np.float32 and a.shape == (2, 3, 5) and a.flags.c_contiguous\n"
        "ok = ok and np.array_equal(a.ravel(), np.arange(30, dtype=np.float32) * 0.25 - 1)\n"
        "b = np.load('ours_i8.npy')\n"
        "ok = ok and b.dtype == np.int64 and b.shape == (4,)\n"
        "ok = ok and list(b) == [i * 10**12 - 3 for i in range(4)]\n"
        "sys.exit(0 if ok else 1)\n"),
        0);
    cd_tensor_free(t);
    cd_tensor_free(l);
}

/* ------------------------------------------------------- bad headers */

/* Builds a 1.0 file around header text (padded, newline-terminated) and
 * data_len bytes of zeros, then parses it from memory. */
static cd_status load_crafted(const char *dict, size_t data_len, const cd_npy_options *opts,
                              cd_error *err)
{
    size_t dl = strlen(dict), hl = (10 + dl + 1 + 63) / 64 * 64 - 10;
    size_t total = 10 + hl + data_len;
    uint8_t *b = calloc(total, 1);
    memcpy(b, "\x93NUMPY\x01\x00", 8);
    b[8] = (uint8_t)(hl & 0xff);
    b[9] = (uint8_t)(hl >> 8);
    memset(b + 10, ' ', hl);
    memcpy(b + 10, dict, dl);
    b[10 + hl - 1] = '\n';
    cd_tensor *t = NULL;
    cd_status s = cd_npy_load_memory_ex(b, total, opts, false, &t, err);
    if (s == CD_OK)
        assert_non_null(t);
    else
        assert_null(t);
    cd_tensor_free(t);
    free(b);
    return s;
}

static void test_bad_headers(void **state)
{
    CD_UNUSED(state);
    cd_error err;
    const char *ok = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    assert_int_equal(load_crafted(ok, 24, NULL, &err), CD_OK);
    assert_int_equal(load_crafted("{\"descr\": \"<f4\", \"shape\": (6,), \"fortran_order\": False}",
                                  24, NULL, &err), CD_OK);
    /* Data length must match exactly. */
    assert_int_equal(load_crafted(ok, 23, NULL, &err), CD_ERR_PARSE);
    assert_int_equal(load_crafted(ok, 25, NULL, &err), CD_ERR_PARSE);
    assert_int_equal(load_crafted(ok, 0, NULL, &err), CD_ERR_PARSE);
    /* Huge shapes are refused from the header alone, before allocation. */
    assert_int_equal(load_crafted("{'descr': '<f4', 'fortran_order': False, 'shape': "
                                  "(1099511627776, 1099511627776), }", 0, NULL, &err),
                     CD_ERR_LIMIT);
    assert_int_equal(load_crafted("{'descr': '<f4', 'fortran_order': False, 'shape': "
                                  "(4611686018427387904, 4611686018427387904), }", 0, NULL, &err),
                     CD_ERR_LIMIT);
    assert_int_equal(load_crafted("{'descr': '<f4', 'fortran_order': False, 'shape': "
                                  "(3000000000,), }", 0, NULL, &err), CD_ERR_LIMIT);
    assert_int_equal(load_crafted("{'descr': '<f4', 'fortran_order': False, 'shape': "
                                  "(99999999999999999999,), }", 0, NULL, &err), CD_ERR_PARSE);
    cd_npy_options small = {5};
    assert_int_equal(load_crafted(ok, 24, &small, &err), CD_ERR_LIMIT);
    const char *bad[] = {
        "{'descr': '<f4', 'fortran_order': False}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), 'extra': 1}",
        "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (6,)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (6)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (-6,)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2 3,)}",
        "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (6,)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (6,)} junk",
        "['descr', '<f4']",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (6,",
        "",
    };
    for (size_t i = 0; i < CD_COUNT_OF(bad); i++)
        if (load_crafted(bad[i], 24, NULL, &err) != CD_ERR_PARSE)
            fail_msg("accepted bad header %zu: %s", i, bad[i]);
    assert_int_equal(load_crafted("{'descr': '<f4', 'fortran_order': True, 'shape': (6,)}", 24,
                                  NULL, &err), CD_ERR_UNSUPPORTED);
    assert_int_equal(load_crafted("{'descr': '<f2', 'fortran_order': False, 'shape': (6,)}", 12,
                                  NULL, &err), CD_ERR_UNSUPPORTED);
    assert_int_equal(load_crafted("{'descr': [('a', '<f4')], 'fortran_order': False, "
                                  "'shape': (6,)}", 24, NULL, &err), CD_ERR_UNSUPPORTED);
    assert_int_equal(load_crafted("{'descr': '|b1', 'fortran_order': False, 'shape': (2,)}", 2,
                                  NULL, &err), CD_OK);
}

static void test_bad_preamble(void **state)
{
    CD_UNUSED(state);
    cd_error err;
    cd_tensor *t = NULL;
    uint8_t junk[16] = "\x93NUMPX\x01\x00\x10\x00";
    assert_int_equal(cd_npy_load_memory(junk, sizeof junk, &t, &err), CD_ERR_PARSE);
    uint8_t v9[16] = "\x93NUMPY\x09\x00\x10\x00";
    assert_int_equal(cd_npy_load_memory(v9, sizeof v9, &t, &err), CD_ERR_UNSUPPORTED);
    uint8_t longhdr[16] = "\x93NUMPY\x02\x00\xff\xff\xff\x7f";
    assert_int_equal(cd_npy_load_memory(longhdr, sizeof longhdr, &t, &err), CD_ERR_PARSE);
    uint8_t shorthdr[16] = "\x93NUMPY\x01\x00\xff\x00";
    assert_int_equal(cd_npy_load_memory(shorthdr, sizeof shorthdr, &t, &err), CD_ERR_PARSE);
    assert_int_equal(cd_npy_load_memory(junk, 5, &t, &err), CD_ERR_PARSE);
    assert_int_equal(cd_npy_load_memory(NULL, 0, &t, &err), CD_ERR_PARSE);
    assert_null(t);
    assert_int_equal(cd_npy_load(tu_scratch_path("missing.npy"), &t, &err), CD_ERR_IO);
}

/* Every prefix of a valid file must fail cleanly, from disk too. */
static void test_truncated_files(void **state)
{
    CD_UNUSED(state);
    int64_t dims[2] = {4, 5};
    cd_tensor *t = tu_random(2, dims, 9, -1, 1), *back = NULL;
    const char *path = tu_scratch_path("full.npy");
    assert_int_equal(cd_npy_save(path, t, NULL), CD_OK);
    FILE *fp = fopen(path, "rb");
    uint8_t buf[512];
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    assert_int_equal(n, 128 + 80);
    for (size_t len = 0; len < n; len += 7) {
        cd_error err;
        const char *cut = tu_scratch_path("cut.npy");
        fp = fopen(cut, "wb");
        fwrite(buf, 1, len, fp);
        fclose(fp);
        cd_status s = cd_npy_load(cut, &back, &err);
        assert_int_not_equal(s, CD_OK);
        assert_null(back);
        assert_int_equal(cd_npy_load_memory(buf, len, &back, &err), CD_ERR_PARSE);
    }
    cd_tensor_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_header_alignment),
        cmocka_unit_test(test_atomic_no_overwrite),
        cmocka_unit_test(test_numpy_written),
        cmocka_unit_test(test_numpy_reads_ours),
        cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_bad_preamble),
        cmocka_unit_test(test_truncated_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
