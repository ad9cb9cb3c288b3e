/* PNG/JPEG decoding and encoding, against files written by an independent
 * encoder (PIL, and a hand-rolled PNG writer in Python for 16-bit RGB), and
 * preprocessing against closed forms. */
#define _POSIX_C_SOURCE 200809L
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
    return tu_scratch_create("candor_img");
}

static int teardown(void **state)
{
    CD_UNUSED(state);
    return tu_scratch_remove();
}

static bool have_pil(void)
{
    return system("/usr/bin/python3 -c 'import PIL, numpy' >/dev/null 2>&1") == 0;
}

/* The test pattern shared with the Python side: value of channel c at (x, y). */
static int pattern(int x, int y, int c)
{
    return (x * 7 + y * 3 + c * 50) % 256;
}

static cd_image *pattern_image(int w, int h, int ch)
{
    cd_image *img = NULL;
    assert_int_equal(cd_image_create(w, h, ch, &img, NULL), CD_OK);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < ch; c++)
                img->pixels[((size_t)y * w + x) * ch + c] = (float)pattern(x, y, c);
    return img;
}

static cd_image *load_ok(const char *name)
{
    cd_image *img = NULL;
    cd_error err;
    if (cd_image_load(tu_scratch_path(name), &img, &err) != CD_OK)
        fail_msg("%s: %s", name, err.message);
    return img;
}

/* Max |decoded - expected(x, y, c)| with expected given as 8-bit scale. */
static double max_err(const cd_image *img, int w, int h, int ch, double (*expect)(int, int, int))
{
    assert_int_equal(img->width, w);
    assert_int_equal(img->height, h);
    assert_int_equal(img->channels, ch);
    double m = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < ch; c++) {
                double d = fabs(img->pixels[((size_t)y * w + x) * ch + c] - expect(x, y, c));
                m = d > m ? d : m;
            }
    return m;
}

static double expect_pattern(int x, int y, int c) { return pattern(x, y, c); }

/* ---------------------------------------------------------- own codec */

static void test_own_png_roundtrip(void **state)
{
    CD_UNUSED(state);
    int chans[3] = {1, 3, 4};
    for (int k = 0; k < 3; k++) {
        cd_image *img = pattern_image(37, 21, chans[k]), *back = NULL;
        cd_error err;
        assert_int_equal(cd_image_save_png(tu_scratch_path("own.png"), img, true, &err), CD_OK);
        back = load_ok("own.png");
        assert_true(max_err(back, 37, 21, chans[k], expect_pattern) == 0.0);
        cd_image_free(img);
        cd_image_free(back);
    }
}

static double smooth(int x, int y, int c) { return 40.0 + 2.0 * x + 1.5 * y + 20.0 * c; }

static void test_own_jpeg_roundtrip(void **state)
{
    CD_UNUSED(state);
    int chans[2] = {1, 3};
    for (int k = 0; k < 2; k++) {
        int ch = chans[k];
        cd_image *img = NULL, *back = NULL;
        assert_int_equal(cd_image_create(48, 32, ch, &img, NULL), CD_OK);
        for (int y = 0; y < 32; y++)
            for (int x = 0; x < 48; x++)
                for (int c = 0; c < ch; c++)
                    img->pixels[((size_t)y * 48 + x) * ch + c] = (float)smooth(x, y, c);
        cd_error err;
        assert_int_equal(cd_image_save_jpeg(tu_scratch_path("own.jpg"), img, 95, true, &err),
                         CD_OK);
        back = load_ok("own.jpg");
        /* Lossy: a smooth image at quality 95 stays within a few levels. */
        assert_true(max_err(back, 48, 32, ch, smooth) <= 6.0);
        cd_image_free(img);
        cd_image_free(back);
    }
    cd_image *rgba = pattern_image(4, 4, 4);
    cd_error err;
    assert_int_equal(cd_image_save_jpeg(tu_scratch_path("x.jpg"), rgba, 90, true, &err),
                     CD_ERR_INVALID_ARGUMENT);
    assert_int_equal(cd_image_save_jpeg(tu_scratch_path("x.jpg"), rgba, 101, true, &err),
                     CD_ERR_INVALID_ARGUMENT);
    cd_image_free(rgba);
}

static void test_no_overwrite_and_memory(void **state)
{
    CD_UNUSED(state);
    cd_image *img = pattern_image(10, 9, 3), *a = NULL, *b = NULL;
    cd_error err;
    const char *path = tu_scratch_path("keep.png");
    assert_int_equal(cd_image_save_png(path, img, false, &err), CD_OK);
    assert_int_equal(cd_image_save_png(path, img, false, &err), CD_ERR_IO);
    FILE *fp = fopen(path, "rb");
    uint8_t buf[8192];
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    assert_int_equal(cd_image_load_memory(buf, n, &a, &err), CD_OK);
    assert_int_equal(cd_image_load(path, &b, &err), CD_OK);
    assert_memory_equal(a->pixels, b->pixels, 10 * 9 * 3 * sizeof(float));
    cd_image_free(a);
    cd_image_free(b);
    /* Format comes from the bytes: a PNG named .jpg still loads. */
    const char *renamed = tu_scratch_path("really_png.jpg");
    assert_int_equal(cd_image_save_png(renamed, img, true, &err), CD_OK);
    cd_image_free(load_ok("really_png.jpg"));
    cd_image_free(img);
}

/* ------------------------------------------------ independent encoders */

static const char *PY_WRITE =
    "import numpy as np, struct, zlib\n"
    "from PIL import Image\n"
    "W, H = 23, 17\n"
    "yy, xx = np.mgrid[0:H, 0:W]\n"
    "def pat(c): return ((xx * 7 + yy * 3 + c * 50) % 256).astype(np.uint8)\n"
    "rgb = np.stack([pat(0), pat(1), pat(2)], -1)\n"
    "Image.fromarray(rgb, 'RGB').save('pil_rgb.png')\n"
    "Image.fromarray(pat(0), 'L').save('pil_gray.png')\n"
    "Image.fromarray(np.stack([pat(0), pat(1), pat(2), pat(3)], -1), 'RGBA').save('pil_rgba.png')\n"
    "Image.fromarray(np.stack([pat(0), pat(1)], -1), 'LA').save('pil_la.png')\n"
    "idx = ((xx + yy) % 4).astype(np.uint8)\n"
    "p = Image.fromarray(idx, 'P')\n"
    "p.putpalette([10, 20, 30, 200, 100, 0, 0, 0, 255, 255, 255, 255] + [0] * 756)\n"
    "p.save('pil_pal.png')\n"
    "p.save('pil_pal_trns.png', transparency=1)\n"
    "Image.fromarray(((xx + yy) % 2).astype(bool)).save('pil_1bit.png')\n"
    "g16 = (xx * 2000 + yy * 1000).astype(np.uint16)\n"
    "Image.fromarray(g16).save('pil_g16.png')\n"
    "def chunk(t, d): return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)\n"
    "def png16(name, arr, ctype):\n"
    "    h, w, c = arr.shape\n"
    "    raw = b''.join(b'\\x00' + arr[y].astype('>u2').tobytes() for y in range(h))\n"
    "    ihdr = struct.pack('>IIBBBBB', w, h, 16, ctype, 0, 0, 0)\n"
    "    open(name, 'wb').write(b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))\n"
    "rgb16 = np.stack([xx * 2000 + yy * 1000, xx * 100 + 7, 65535 - yy * 3000], -1)\n"
    "png16('raw_rgb16.png', rgb16, 2)\n"
    "png16('raw_rgba16.png', np.concatenate([rgb16, (rgb16[..., :1] // 2)], -1), 6)\n"
    "sm = np.stack([40 + 2.0 * xx + 1.5 * yy + 20 * c for c in range(3)], -1).round().astype(np.uint8)\n"
    "Image.fromarray(sm, 'RGB').save('pil.jpg', quality=95)\n"
    "Image.fromarray(sm[..., 0], 'L').save('pil_gray.jpg', quality=95)\n"
    "Image.fromarray(sm, 'RGB').save('pil_prog.jpg', quality=95, progressive=True)\n";

enum { PW = 23, PH = 17 };
static const int PALETTE[4][3] = {{10, 20, 30}, {200, 100, 0}, {0, 0, 255}, {255, 255, 255}};
static double expect_pal(int x, int y, int c) { return PALETTE[(x + y) % 4][c]; }
static double expect_pal_trns(int x, int y, int c)
{
    return c == 3 ? ((x + y) % 4 == 1 ? 0 : 255) : expect_pal(x, y, c);
}
static double expect_1bit(int x, int y, int c) { CD_UNUSED(c); return (x + y) % 2 ? 255 : 0; }
static double expect_g16(int x, int y, int c)
{
    CD_UNUSED(c);
    return (x * 2000.0 + y * 1000.0) * 255.0 / 65535.0;
}
static double expect_rgb16(int x, int y, int c)
{
    double v[4] = {x * 2000.0 + y * 1000.0, x * 100.0 + 7, 65535.0 - y * 3000.0,
                   floor((x * 2000.0 + y * 1000.0) / 2)};
    return v[c] * 255.0 / 65535.0;
}
static double expect_la(int x, int y, int c) { return pattern(x, y, c == 3 ? 1 : 0); }
static double expect_smooth(int x, int y, int c) { return round(smooth(x, y, c)); }

static void test_independent_encoders(void **state)
{
    CD_UNUSED(state);
    if (!have_pil())
        skip();
    assert_int_equal(tu_run_python(PY_WRITE), 0);
    struct {
        const char *name;
        int ch;
        double (*expect)(int, int, int);
        double tol;
    } cases[] = {
        {"pil_rgb.png", 3, expect_pattern, 0},
        {"pil_gray.png", 1, expect_pattern, 0},
        {"pil_rgba.png", 4, expect_pattern, 0},
        {"pil_la.png", 4, expect_la, 0},
        {"pil_pal.png", 3, expect_pal, 0},
        {"pil_pal_trns.png", 4, expect_pal_trns, 0},
        {"pil_1bit.png", 1, expect_1bit, 0},
        {"pil_g16.png", 1, expect_g16, 1e-3},
        {"raw_rgb16.png", 3, expect_rgb16, 1e-3},
        {"raw_rgba16.png", 4, expect_rgb16, 1e-3},
        {"pil.jpg", 3, expect_smooth, 6},
        {"pil_gray.jpg", 1, expect_smooth, 6},
        {"pil_prog.jpg", 3, expect_smooth, 6},
    };
    for (size_t i = 0; i < CD_COUNT_OF(cases); i++) {
        cd_image *img = load_ok(cases[i].name);
        double e = max_err(img, PW, PH, cases[i].ch, cases[i].expect);
        if (e > cases[i].tol)
            fail_msg("%s: max error %g > %g", cases[i].name, e, cases[i].tol);
        cd_image_free(img);
    }
}

/* PIL decodes what we encode. */
static void test_pil_reads_ours(void **state)
{
    CD_UNUSED(state);
    if (!have_pil())
        skip();
    cd_image *rgb = pattern_image(31, 12, 3), *gray = pattern_image(31, 12, 1);
    cd_image *rgba = pattern_image(31, 12, 4);
    assert_int_equal(cd_image_save_png(tu_scratch_path("o_rgb.png"), rgb, true, NULL), CD_OK);
    assert_int_equal(cd_image_save_png(tu_scratch_path("o_gray.png"), gray, true, NULL), CD_OK);
    assert_int_equal(cd_image_save_png(tu_scratch_path("o_rgba.png"), rgba, true, NULL), CD_OK);
    assert_int_equal(cd_image_save_jpeg(tu_scratch_path("o.jpg"), rgb, 100, true, NULL), CD_OK);
    assert_int_equal(tu_run_python(
        "import numpy as np, sys\n"
        "from PIL import Image\n"
        "yy, xx = np.mgrid[0:12, 0:31]\n"
        "def pat(c): return (xx * 7 + yy * 3 + c * 50) % 256\n"
        "ok = True\n"
        "for name, mode, n in (('o_rgb.png', 'RGB', 3), ('o_gray.png', 'L', 1), ('o_rgba.png', 'RGBA', 4)):\n"
        "    im = Image.open(name); a = np.asarray(im).astype(int)\n"
        "    if a.ndim == 2: a = a[..., None]\n"
        "    ok = ok and im.mode == mode and a.shape == (12, 31, n)\n"
        "    ok = ok and all((a[..., c] == pat(c)).all() for c in range(n))\n"
        "im = Image.open('o.jpg')\n"
        "ok = ok and im.format == 'JPEG' and im.size == (31, 12) and im.mode == 'RGB'\n"
        "sys.exit(0 if ok else 1)\n"),
        0);
    cd_image_free(rgb);
    cd_image_free(gray);
    cd_image_free(rgba);
}

/* ------------------------------------------------------ corrupt input */

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    *n = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *b = malloc(*n);
    assert_int_equal(fread(b, 1, *n, fp), *n);
    fclose(fp);
    return b;
}

static void expect_fail_prefixes(const uint8_t *b, size_t n)
{
    for (size_t len = 0; len < n; len += 1 + len / 8) {
        cd_image *img = NULL;
        cd_error err;
        cd_status s = cd_image_load_memory(b, len, &img, &err);
        if (s != CD_ERR_PARSE)
            fail_msg("prefix of %zu/%zu bytes gave %s (%s)", len, n, cd_status_name(s),
                     err.message);
        assert_null(img);
    }
}

static void test_corrupt_and_truncated(void **state)
{
    CD_UNUSED(state);
    cd_image *img = pattern_image(40, 30, 3), *out = NULL;
    cd_error err;
    assert_int_equal(cd_image_save_png(tu_scratch_path("c.png"), img, true, NULL), CD_OK);
    assert_int_equal(cd_image_save_jpeg(tu_scratch_path("c.jpg"), img, 90, true, NULL), CD_OK);
    size_t np_, nj;
    uint8_t *png = slurp(tu_scratch_path("c.png"), &np_);
    uint8_t *jpg = slurp(tu_scratch_path("c.jpg"), &nj);
    expect_fail_prefixes(png, np_);
    expect_fail_prefixes(jpg, nj);
    /* Flipped bytes inside the PNG data: CRC or zlib failure. */
    for (size_t off = 40; off < np_ - 12; off += 97) {
        png[off] ^= 0x5a;
        assert_int_equal(cd_image_load_memory(png, np_, &out, &err), CD_ERR_PARSE);
        assert_null(out);
        png[off] ^= 0x5a;
    }
    /* Garbage JPEG body after a valid start marker. */
    uint8_t junk[64];
    memset(junk, 0x41, sizeof junk);
    junk[0] = 0xFF, junk[1] = 0xD8, junk[2] = 0xFF;
    assert_int_equal(cd_image_load_memory(junk, sizeof junk, &out, &err), CD_ERR_PARSE);
    /* Overwrite the JPEG's entropy-coded tail with zeros and 0xFF markers. */
    for (size_t off = nj / 2; off < nj - 2; off++)
        jpg[off] = (off % 3) ? 0xFF : 0xD9;
    assert_int_equal(cd_image_load_memory(jpg, nj, &out, &err), CD_ERR_PARSE);
    /* Not an image at all. */
    const char *text = "hello, this is not an image";
    assert_int_equal(cd_image_load_memory(text, strlen(text), &out, &err), CD_ERR_UNSUPPORTED);
    assert_int_equal(cd_image_load(tu_scratch_path("none.png"), &out, &err), CD_ERR_IO);
    assert_null(out);
    /* The pixel cap is checked from the header, before decoding. */
    cd_image_options cap = {100};
    assert_int_equal(cd_image_load_ex(tu_scratch_path("c.png"), &cap, &out, &err), CD_ERR_LIMIT);
    assert_int_equal(cd_image_load_ex(tu_scratch_path("c.jpg"), &cap, &out, &err), CD_ERR_LIMIT);
    cap.max_pixels = 1200;
    assert_int_equal(cd_image_load_ex(tu_scratch_path("c.png"), &cap, &out, &err), CD_OK);
    cd_image_free(out);
    free(png);
    free(jpg);
    cd_image_free(img);
}

/* Header claiming a 100000 x 100000 PNG must be refused without allocating. */
static void test_huge_header(void **state)
{
    CD_UNUSED(state);
    static const uint8_t head[] = {
        0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
        0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0, 8, 2, 0, 0, 0};
    uint8_t buf[64];
    memcpy(buf, head, sizeof head);
    /* CRC over "IHDR" + data, computed here with the standard polynomial. */
    uint32_t crc = 0xffffffffu;
    for (size_t i = 12; i < 29; i++) {
        crc ^= buf[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
    }
    crc ^= 0xffffffffu;
    buf[29] = (uint8_t)(crc >> 24), buf[30] = (uint8_t)(crc >> 16);
    buf[31] = (uint8_t)(crc >> 8), buf[32] = (uint8_t)crc;
    cd_image *out = NULL;
    cd_error err;
    assert_int_equal(cd_image_load_memory(buf, 33, &out, &err), CD_ERR_LIMIT);
    assert_null(out);
}

/* ------------------------------------------------------- preprocessing */

static float at(const cd_tensor *t, int c, int y, int x)
{
    const int64_t *d = cd_tensor_dims(t);
    return ((const float *)cd_tensor_cdata(t))[((size_t)c * d[2] + y) * d[3] + x];
}

static void test_preprocess_constant(void **state)
{
    CD_UNUSED(state);
    cd_image *img = NULL;
    assert_int_equal(cd_image_create(50, 40, 4, &img, NULL), CD_OK);
    const float rgb[4] = {200, 100, 50, 9};
    for (int i = 0; i < 50 * 40; i++)
        memcpy(img->pixels + i * 4, rgb, sizeof rgb);
    cd_preprocess p;
    cd_preprocess_default(&p);
    p.resize_h = 13;
    p.resize_w = 17;
    p.crop_h = 11;
    p.crop_w = 9;
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    memcpy(p.mean, mean, sizeof mean);
    memcpy(p.std, std, sizeof std);
    cd_tensor *t = NULL;
    cd_error err;
    assert_int_equal(cd_image_to_tensor(img, &p, &t, &err), CD_OK);
    const int64_t *d = cd_tensor_dims(t);
    assert_int_equal(cd_tensor_ndim(t), 4);
    assert_true(d[0] == 1 && d[1] == 3 && d[2] == 11 && d[3] == 9);
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < 11; y++)
            for (int x = 0; x < 9; x++)
                assert_float_equal(at(t, c, y, x), (rgb[c] / 255.0f - mean[c]) / std[c], 1e-5);
    cd_tensor_free(t);
    /* Gray: BT.601 luma of the constant colour. */
    p.color = CD_COLOR_GRAY;
    p.mean[0] = 0.5f;
    p.std[0] = 0.25f;
    assert_int_equal(cd_image_to_tensor(img, &p, &t, &err), CD_OK);
    assert_int_equal(cd_tensor_dims(t)[1], 1);
    double luma = 0.299 * 200 + 0.587 * 100 + 0.114 * 50;
    assert_float_equal(at(t, 0, 5, 5), (luma / 255.0 - 0.5) / 0.25, 1e-5);
    cd_tensor_free(t);
    cd_image_free(img);
}

/* Bilinear interpolation reproduces a linear ramp exactly at the sampled
 * (half-pixel, edge-clamped) source coordinate. */
static double src_coord(int o, int in, int out)
{
    double s = (o + 0.5) * in / out - 0.5;
    return s < 0 ? 0 : s > in - 1 ? in - 1 : s;
}

static void check_ramp_resize(int w, int h, int ow, int oh)
{
    cd_image *img = NULL;
    assert_int_equal(cd_image_create(w, h, 1, &img, NULL), CD_OK);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            img->pixels[y * w + x] = (float)(3.0 * x + 5.0 * y + 1.0);
    cd_preprocess p;
    cd_preprocess_default(&p);
    p.scale = 1;
    p.color = CD_COLOR_GRAY;
    p.resize_h = oh;
    p.resize_w = ow;
    cd_tensor *t = NULL;
    cd_error err;
    assert_int_equal(cd_image_to_tensor(img, &p, &t, &err), CD_OK);
    assert_int_equal(cd_tensor_dims(t)[2], oh);
    assert_int_equal(cd_tensor_dims(t)[3], ow);
    for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++) {
            double e = 3.0 * src_coord(x, w, ow) + 5.0 * src_coord(y, h, oh) + 1.0;
            if (fabs(at(t, 0, y, x) - e) > 1e-3)
                fail_msg("%dx%d->%dx%d at (%d,%d): %g vs %g", w, h, ow, oh, x, y, at(t, 0, y, x), e);
        }
    cd_tensor_free(t);
    cd_image_free(img);
}

static void test_preprocess_ramp(void **state)
{
    CD_UNUSED(state);
    check_ramp_resize(20, 10, 7, 4);   /* downscale */
    check_ramp_resize(5, 6, 13, 17);   /* upscale: edges clamp */
    check_ramp_resize(9, 9, 9, 9);     /* identity */
    check_ramp_resize(1, 8, 3, 8);     /* single column */
}

static void test_preprocess_short_side_and_crop(void **state)
{
    CD_UNUSED(state);
    /* 60 wide, 40 high: short side 20 -> 30x20 (w x h). */
    cd_image *img = NULL;
    assert_int_equal(cd_image_create(60, 40, 3, &img, NULL), CD_OK);
    for (int y = 0; y < 40; y++)
        for (int x = 0; x < 60; x++)
            for (int c = 0; c < 3; c++)
                img->pixels[(y * 60 + x) * 3 + c] = (float)(2.0 * x + 1.0 * y + 10.0 * c);
    cd_preprocess p;
    cd_preprocess_default(&p);
    p.scale = 0;
    p.resize_short = 20;
    cd_tensor *t = NULL;
    cd_error err;
    assert_int_equal(cd_image_to_tensor(img, &p, &t, &err), CD_OK);
    assert_int_equal(cd_tensor_dims(t)[2], 20);
    assert_int_equal(cd_tensor_dims(t)[3], 30);
    cd_tensor_free(t);
    /* Odd aspect: 7 wide x 3 high, short 2 -> floor(2*7/3) = 4 wide. */
    cd_image *small = NULL;
    assert_int_equal(cd_image_create(7, 3, 1, &small, NULL), CD_OK);
    p.resize_short = 2;
    assert_int_equal(cd_image_to_tensor(small, &p, &t, &err), CD_OK);
    assert_int_equal(cd_tensor_dims(t)[2], 2);
    assert_int_equal(cd_tensor_dims(t)[3], 4);
    cd_tensor_free(t);
    cd_image_free(small);
    /* Crop only (no resize): 11 x 6 window from the centre, top = 17, left = 24. */
    p.resize_short = 0;
    p.crop_h = 6;
    p.crop_w = 11;
    assert_int_equal(cd_image_to_tensor(img, &p, &t, &err), CD_OK);
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < 6; y++)
            for (int x = 0; x < 11; x++)
                assert_float_equal(at(t, c, y, x), 2.0 * (x + 24) + (y + 17) + 10.0 * c, 1e-4);
    cd_tensor_free(t);
    /* Crop larger than the image. */
    p.crop_h = 41;
    assert_int_equal(cd_image_to_tensor(img, &p, &t, &err), CD_ERR_SHAPE);
    assert_null(t);
    /* Zero std is refused. */
    p.crop_h = 0;
    p.std[1] = 0;
    assert_int_equal(cd_image_to_tensor(img, &p, &t, &err), CD_ERR_INVALID_ARGUMENT);
    cd_image_free(img);
}

static void test_preprocess_gray_to_rgb(void **state)
{
    CD_UNUSED(state);
    cd_image *img = pattern_image(6, 5, 1);
    cd_tensor *t = NULL;
    assert_int_equal(cd_image_to_tensor(img, NULL, &t, NULL), CD_OK);
    assert_int_equal(cd_tensor_dims(t)[1], 3);
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < 5; y++)
            for (int x = 0; x < 6; x++)
                assert_float_equal(at(t, c, y, x), pattern(x, y, 0) / 255.0, 1e-6);
    cd_tensor_free(t);
    cd_image_free(img);
}

/* Compare against PyTorch's bilinear interpolate (align_corners=False, no
 * antialias) on a random RGB image, when torch is installed. */
static void test_preprocess_vs_torch(void **state)
{
    CD_UNUSED(state);
    if (system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0)
        skip();
    cd_image *img = NULL;
    assert_int_equal(cd_image_create(29, 19, 3, &img, NULL), CD_OK);
    uint64_t seed = 42;
    for (int i = 0; i < 29 * 19 * 3; i++)
        img->pixels[i] = tu_uniform(&seed, 0, 255);
    int64_t dims[3] = {19, 29, 3};
    cd_tensor *raw = tu_tensor_f32(3, dims, img->pixels);
    assert_int_equal(cd_npy_save(tu_scratch_path("img.npy"), raw, NULL), CD_OK);
    cd_preprocess p;
    cd_preprocess_default(&p);
    p.resize_h = 41;
    p.resize_w = 13;
    p.crop_h = 40;
    p.crop_w = 10;
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    memcpy(p.mean, mean, sizeof mean);
    memcpy(p.std, std, sizeof std);
    cd_tensor *t = NULL;
    assert_int_equal(cd_image_to_tensor(img, &p, &t, NULL), CD_OK);
    assert_int_equal(cd_npy_save(tu_scratch_path("ours.npy"), t, NULL), CD_OK);
    assert_int_equal(tu_run_python(
        "import numpy as np, torch, sys\n"
        "import torch.nn.functional as F\n"
        "x = torch.from_numpy(np.load('img.npy')).permute(2, 0, 1)[None].double()\n"
        "y = F.interpolate(x, size=(41, 13), mode='bilinear', align_corners=False)\n"
        "y = y[:, :, 0:40, 1:11] / 255\n"
        "m = torch.tensor([0.485, 0.456, 0.406]).double().view(1, 3, 1, 1)\n"
        "s = torch.tensor([0.229, 0.224, 0.225]).double().view(1, 3, 1, 1)\n"
        "y = ((y - m) / s).numpy()\n"
        "o = np.load('ours.npy')\n"
        "sys.exit(0 if o.shape == y.shape and np.abs(o - y).max() < 1e-4 else 1)\n"),
        0);
    cd_tensor_free(t);
    cd_tensor_free(raw);
    cd_image_free(img);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_own_png_roundtrip),
        cmocka_unit_test(test_own_jpeg_roundtrip),
        cmocka_unit_test(test_no_overwrite_and_memory),
        cmocka_unit_test(test_independent_encoders),
        cmocka_unit_test(test_pil_reads_ours),
        cmocka_unit_test(test_corrupt_and_truncated),
        cmocka_unit_test(test_huge_header),
        cmocka_unit_test(test_preprocess_constant),
        cmocka_unit_test(test_preprocess_ramp),
        cmocka_unit_test(test_preprocess_short_side_and_crop),
        cmocka_unit_test(test_preprocess_gray_to_rgb),
        cmocka_unit_test(test_preprocess_vs_torch),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
