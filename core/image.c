/* PNG and JPEG decoding and encoding.
 *
 * Both libpng and libjpeg report errors by calling a handler that must not
 * return; their defaults print and (libjpeg) call exit(). We install handlers
 * that record the message and longjmp back to the decoding function, which
 * turns it into CD_ERR_PARSE. Locals changed after setjmp are volatile so
 * the cleanup path sees their current values. libjpeg warnings (corrupt
 * entropy data, premature end of file) are treated as errors: a truncated
 * JPEG must not decode silently into grey rows. */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>

#include "candor/image.h"
#include "atomic_file.h"
#include "internal.h"

#define IMAGE_DEFAULT_MAX_PIXELS ((uint64_t)1 << 28)
#define IMAGE_MAX_FILE_BYTES ((size_t)1 << 30)

static const uint8_t PNG_SIGNATURE[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

/* ------------------------------------------------------------ images */

cd_status cd_image_create(int width, int height, int channels, cd_image **out, cd_error *err)
{
    size_t n;
    *out = NULL;
    if (width <= 0 || height <= 0 || (channels != 1 && channels != 3 && channels != 4))
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT,
                       "image %dx%d with %d channels (need positive sizes, 1/3/4 channels)",
                       width, height, channels);
    if (!cd_mul_size((size_t)width, (size_t)height, &n) ||
        !cd_mul_size(n, (size_t)channels, &n) || !cd_mul_size(n, sizeof(float), &n))
        return cd_fail(err, CD_ERR_LIMIT, "image %dx%d is too large", width, height);
    cd_image *img = calloc(1, sizeof *img);
    float *px = calloc(n, 1);
    if (!img || !px) {
        free(img);
        free(px);
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory for a %dx%d image", width,
                       height);
    }
    img->width = width;
    img->height = height;
    img->channels = channels;
    img->pixels = px;
    *out = img;
    return CD_OK;
}

void cd_image_free(cd_image *img)
{
    if (!img)
        return;
    free(img->pixels);
    free(img);
}

static cd_status check_pixels(const char *name, const char *fmt, uint64_t w, uint64_t h,
                              const cd_image_options *opts, cd_error *err)
{
    uint64_t cap = opts && opts->max_pixels ? opts->max_pixels : IMAGE_DEFAULT_MAX_PIXELS;
    if (w == 0 || h == 0)
        return cd_fail(err, CD_ERR_PARSE, "%s: %s has an empty size %llux%llu", name, fmt,
                       (unsigned long long)w, (unsigned long long)h);
    if (w > INT32_MAX || h > INT32_MAX || w * h > cap)
        return cd_fail(err, CD_ERR_LIMIT, "%s: %s of %llux%llu pixels exceeds the cap of %llu",
                       name, fmt, (unsigned long long)w, (unsigned long long)h,
                       (unsigned long long)cap);
    return CD_OK;
}

/* -------------------------------------------------------------- JPEG */

typedef struct jpeg_trap {
    struct jpeg_error_mgr pub; /* first: libjpeg casts cinfo->err to this */
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
} jpeg_trap;

static void jpeg_trap_exit(j_common_ptr cinfo)
{
    jpeg_trap *t = (jpeg_trap *)cinfo->err;
    t->pub.format_message(cinfo, t->message);
    longjmp(t->jump, 1);
}

static void jpeg_trap_emit(j_common_ptr cinfo, int level)
{
    if (level < 0)
        jpeg_trap_exit(cinfo);
}

static void jpeg_trap_output(j_common_ptr cinfo) { CD_UNUSED(cinfo); }

static void jpeg_trap_init(jpeg_trap *t)
{
    jpeg_std_error(&t->pub);
    t->pub.error_exit = jpeg_trap_exit;
    t->pub.emit_message = jpeg_trap_emit;
    t->pub.output_message = jpeg_trap_output;
    t->message[0] = '\0';
}

static void store_row_u8(cd_image *img, int y, const uint8_t *row)
{
    size_t n = (size_t)img->width * (size_t)img->channels;
    float *dst = img->pixels + (size_t)y * n;
    for (size_t i = 0; i < n; i++)
        dst[i] = (float)row[i];
}

static cd_status decode_jpeg(const uint8_t *b, size_t n, const char *name,
                             const cd_image_options *opts, cd_image **out, cd_error *err)
{
    struct jpeg_decompress_struct cinfo;
    jpeg_trap trap;
    cd_image *volatile img = NULL;
    uint8_t *volatile row = NULL;
    volatile cd_status s = CD_OK; /* assigned between setjmp and a possible longjmp */

    memset(&cinfo, 0, sizeof cinfo);
    jpeg_trap_init(&trap);
    cinfo.err = &trap.pub;
    if (setjmp(trap.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(row);
        cd_image_free(img);
        return cd_fail(err, CD_ERR_PARSE, "%s: corrupt or truncated JPEG: %s", name,
                       trap.message);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, b, (unsigned long)n);
    jpeg_read_header(&cinfo, TRUE);
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK)
        s = cd_fail(err, CD_ERR_UNSUPPORTED, "%s: CMYK JPEG images are not supported", name);
    if (s == CD_OK)
        s = check_pixels(name, "JPEG", cinfo.image_width, cinfo.image_height, opts, err);
    if (s != CD_OK) {
        jpeg_destroy_decompress(&cinfo);
        return s;
    }
    cinfo.out_color_space = cinfo.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    cd_image *im = NULL;
    s = cd_image_create((int)cinfo.output_width, (int)cinfo.output_height,
                        cinfo.output_components, &im, err);
    img = im;
    row = malloc((size_t)cinfo.output_width * (size_t)cinfo.output_components);
    if (s == CD_OK && !row)
        s = cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    if (s != CD_OK) {
        jpeg_destroy_decompress(&cinfo);
        free(row);
        cd_image_free(img);
        return s;
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW rows[1] = {row};
        int y = (int)cinfo.output_scanline;
        if (jpeg_read_scanlines(&cinfo, rows, 1) != 1)
            longjmp(trap.jump, 1); /* cannot happen with a memory source */
        store_row_u8(img, y, row);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(row);
    *out = img;
    return CD_OK;
}

/* --------------------------------------------------------------- PNG */

typedef struct png_src {
    const uint8_t *b;
    size_t n, pos;
    char message[256];
} png_src;

static void png_trap_error(png_structp png, png_const_charp msg)
{
    png_src *src = png_get_error_ptr(png);
    snprintf(src->message, sizeof src->message, "%s", msg ? msg : "error");
    png_longjmp(png, 1);
}

static void png_trap_warning(png_structp png, png_const_charp msg)
{
    CD_UNUSED(png);
    CD_UNUSED(msg);
}

static void png_read_memory(png_structp png, png_bytep dst, png_size_t len)
{
    png_src *src = png_get_io_ptr(png);
    if (len > src->n - src->pos)
        png_error(png, "unexpected end of data");
    memcpy(dst, src->b + src->pos, len);
    src->pos += len;
}

/* Asks libpng for 8- or 16-bit gray, RGB or RGBA samples whatever the file
 * holds: palettes and low bit depths are expanded, tRNS becomes alpha, and
 * gray with alpha becomes RGBA (candor images have 1, 3 or 4 channels). */
static void png_set_transforms(png_structp png, png_infop info)
{
    int color = png_get_color_type(png, info);
    int depth = png_get_bit_depth(png, info);
    bool trns = png_get_valid(png, info, PNG_INFO_tRNS) != 0;
    if (color == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (trns)
        png_set_tRNS_to_alpha(png);
    if (color == PNG_COLOR_TYPE_GRAY_ALPHA || (color == PNG_COLOR_TYPE_GRAY && trns))
        png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
}

static void store_png_rows(cd_image *img, uint8_t *const *rows, int depth)
{
    size_t n = (size_t)img->width * (size_t)img->channels;
    for (int y = 0; y < img->height; y++) {
        float *dst = img->pixels + (size_t)y * n;
        const uint8_t *r = rows[y];
        if (depth == 16)
            for (size_t i = 0; i < n; i++) /* big-endian samples, 65535 -> 255 */
                dst[i] = (float)((unsigned)r[2 * i] << 8 | r[2 * i + 1]) / 257.0f;
        else
            for (size_t i = 0; i < n; i++)
                dst[i] = (float)r[i];
    }
}

typedef struct png_decode {
    png_structp png;
    png_infop info;
    uint8_t *buf;
    uint8_t **rows;
    cd_image *img;
} png_decode;

static void png_decode_free(png_decode *d, bool keep_image)
{
    png_destroy_read_struct(&d->png, d->info ? &d->info : NULL, NULL);
    free(d->buf);
    free(d->rows);
    if (!keep_image)
        cd_image_free(d->img);
    free(d);
}

/* Allocates the 8/16-bit row buffer and the float image after the size
 * check; returns CD_OK or an error without touching libpng. */
static cd_status png_alloc(png_decode *d, const char *name, cd_error *err)
{
    int w = (int)png_get_image_width(d->png, d->info);
    int h = (int)png_get_image_height(d->png, d->info);
    int ch = png_get_channels(d->png, d->info);
    size_t rowbytes = png_get_rowbytes(d->png, d->info), total;
    if (ch != 1 && ch != 3 && ch != 4)
        return cd_fail(err, CD_ERR_INTERNAL, "%s: PNG decoded to %d channels", name, ch);
    if (!cd_mul_size(rowbytes, (size_t)h, &total))
        return cd_fail(err, CD_ERR_LIMIT, "%s: PNG too large", name);
    cd_status s = cd_image_create(w, h, ch, &d->img, err);
    if (s != CD_OK)
        return s;
    d->buf = malloc(total ? total : 1);
    d->rows = malloc((size_t)h * sizeof *d->rows);
    if (!d->buf || !d->rows)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "%s: out of memory", name);
    for (int y = 0; y < h; y++)
        d->rows[y] = d->buf + (size_t)y * rowbytes;
    return CD_OK;
}

/* The decode state lives on the heap: it is updated after setjmp, and heap
 * memory (unlike non-volatile locals) keeps its values across longjmp. */
static cd_status decode_png(const uint8_t *b, size_t n, const char *name,
                            const cd_image_options *opts, cd_image **out, cd_error *err)
{
    png_src src = {b, n, 0, ""};
    /* IHDR is always the first chunk (bytes 16..23 hold width and height);
     * checking it here refuses absurd sizes even when libpng would first
     * fail on later, truncated chunks. */
    if (n >= 24) {
        uint32_t w = (uint32_t)b[16] << 24 | (uint32_t)b[17] << 16 | (uint32_t)b[18] << 8 | b[19];
        uint32_t h = (uint32_t)b[20] << 24 | (uint32_t)b[21] << 16 | (uint32_t)b[22] << 8 | b[23];
        cd_status pre = w && h ? check_pixels(name, "PNG", w, h, opts, err) : CD_OK;
        if (pre != CD_OK)
            return pre;
    }
    png_decode *d = calloc(1, sizeof *d);
    cd_status s;
    if (!d)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    d->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_trap_error,
                                    png_trap_warning);
    if (d->png)
        d->info = png_create_info_struct(d->png);
    if (!d->png || !d->info) {
        png_decode_free(d, false);
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    }
    if (setjmp(png_jmpbuf(d->png))) {
        png_decode_free(d, false);
        return cd_fail(err, CD_ERR_PARSE, "%s: corrupt or truncated PNG: %s", name, src.message);
    }
    png_set_read_fn(d->png, &src, png_read_memory);
    png_read_info(d->png, d->info);
    s = check_pixels(name, "PNG", png_get_image_width(d->png, d->info),
                     png_get_image_height(d->png, d->info), opts, err);
    if (s == CD_OK) {
        png_set_transforms(d->png, d->info);
        s = png_alloc(d, name, err);
    }
    if (s != CD_OK) {
        png_decode_free(d, false);
        return s;
    }
    png_read_image(d->png, d->rows);
    png_read_end(d->png, NULL);
    store_png_rows(d->img, d->rows, png_get_bit_depth(d->png, d->info));
    *out = d->img;
    png_decode_free(d, true);
    return CD_OK;
}

/* ------------------------------------------------------------ loading */

static cd_status decode_any(const uint8_t *b, size_t n, const char *name,
                            const cd_image_options *opts, cd_image **out, cd_error *err)
{
    if (n >= sizeof PNG_SIGNATURE && memcmp(b, PNG_SIGNATURE, sizeof PNG_SIGNATURE) == 0)
        return decode_png(b, n, name, opts, out, err);
    if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF)
        return decode_jpeg(b, n, name, opts, out, err);
    if (n < 8)
        return cd_fail(err, CD_ERR_PARSE, "%s: too short to be an image (%zu bytes)", name, n);
    return cd_fail(err, CD_ERR_UNSUPPORTED,
                   "%s: unknown image format (only PNG and JPEG are supported)", name);
}

cd_status cd_image_load_memory_ex(const void *bytes, size_t size, const cd_image_options *opts,
                                  cd_image **out, cd_error *err)
{
    if (!out || (!bytes && size))
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_image_load_memory: NULL argument");
    *out = NULL;
    return decode_any(bytes, size, "<memory>", opts, out, err);
}

cd_status cd_image_load_memory(const void *bytes, size_t size, cd_image **out, cd_error *err)
{
    return cd_image_load_memory_ex(bytes, size, NULL, out, err);
}

cd_status cd_image_load_ex(const char *path, const cd_image_options *opts, cd_image **out,
                           cd_error *err)
{
    uint8_t *buf;
    size_t n;
    if (!out || !path)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_image_load: NULL argument");
    *out = NULL;
    cd_status s = cd_read_file(path, IMAGE_MAX_FILE_BYTES, &buf, &n, err);
    if (s != CD_OK)
        return s;
    s = decode_any(buf, n, path, opts, out, err);
    free(buf);
    return s;
}

cd_status cd_image_load(const char *path, cd_image **out, cd_error *err)
{
    return cd_image_load_ex(path, NULL, out, err);
}

/* ------------------------------------------------------------ writing */

static uint8_t *quantize(const cd_image *img, cd_error *err)
{
    size_t n = (size_t)img->width * (size_t)img->height * (size_t)img->channels;
    uint8_t *q = malloc(n);
    if (!q) {
        cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        float v = img->pixels[i];
        /* NaN compares false both ways and ends up 0. */
        q[i] = v >= 255.0f ? 255 : v > 0.0f ? (uint8_t)(v + 0.5f) : 0;
    }
    return q;
}

static cd_status check_writable(const char *path, const cd_image *img, bool allow4,
                                cd_error *err)
{
    if (!path || !img || !img->pixels || img->width <= 0 || img->height <= 0)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "image writer: invalid image or path");
    if (img->channels != 1 && img->channels != 3 && !(allow4 && img->channels == 4))
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "%s: cannot write %d-channel image", path,
                       img->channels);
    return CD_OK;
}

static cd_status png_write_stream(FILE *fp, const cd_image *img, const uint8_t *q,
                                  const char *path, cd_error *err)
{
    png_src ctx = {NULL, 0, 0, ""};
    static const int types[5] = {0, PNG_COLOR_TYPE_GRAY, 0, PNG_COLOR_TYPE_RGB,
                                 PNG_COLOR_TYPE_RGB_ALPHA};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, png_trap_error,
                                              png_trap_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return cd_fail(err, CD_ERR_IO, "%s: PNG encoding failed: %s", path, ctx.message);
    }
    png_init_io(png, fp);
    png_set_IHDR(png, info, (png_uint_32)img->width, (png_uint_32)img->height, 8,
                 types[img->channels], PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    size_t stride = (size_t)img->width * (size_t)img->channels;
    for (int y = 0; y < img->height; y++)
        png_write_row(png, q + (size_t)y * stride);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return CD_OK;
}

static cd_status jpeg_write_stream(FILE *fp, const cd_image *img, const uint8_t *q,
                                   int quality, const char *path, cd_error *err)
{
    struct jpeg_compress_struct cinfo;
    jpeg_trap trap;
    memset(&cinfo, 0, sizeof cinfo);
    jpeg_trap_init(&trap);
    cinfo.err = &trap.pub;
    if (setjmp(trap.jump)) {
        jpeg_destroy_compress(&cinfo);
        return cd_fail(err, CD_ERR_IO, "%s: JPEG encoding failed: %s", path, trap.message);
    }
    jpeg_create_compress(&cinfo);
    jpeg_stdio_dest(&cinfo, fp);
    cinfo.image_width = (JDIMENSION)img->width;
    cinfo.image_height = (JDIMENSION)img->height;
    cinfo.input_components = img->channels;
    cinfo.in_color_space = img->channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    size_t stride = (size_t)img->width * (size_t)img->channels;
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row[1] = {(JSAMPROW)(q + (size_t)cinfo.next_scanline * stride)};
        jpeg_write_scanlines(&cinfo, row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    return CD_OK;
}

/* quality < 0 selects PNG. */
static cd_status save_image(const char *path, const cd_image *img, int quality, bool force,
                            cd_error *err)
{
    cd_status s = check_writable(path, img, quality < 0, err);
    if (s != CD_OK)
        return s;
    uint8_t *q = quantize(img, err);
    if (!q)
        return CD_ERR_OUT_OF_MEMORY;
    cd_atomic_file *f;
    s = cd_atomic_open(path, force, &f, err);
    if (s == CD_OK) {
        FILE *fp = cd_atomic_stream(f);
        s = quality < 0 ? png_write_stream(fp, img, q, path, err)
                        : jpeg_write_stream(fp, img, q, quality, path, err);
        if (s == CD_OK)
            s = cd_atomic_commit(f, err);
        else
            cd_atomic_abort(f);
    }
    free(q);
    return s;
}

cd_status cd_image_save_png(const char *path, const cd_image *img, bool force, cd_error *err)
{
    return save_image(path, img, -1, force, err);
}

cd_status cd_image_save_jpeg(const char *path, const cd_image *img, int quality, bool force,
                             cd_error *err)
{
    if (quality == 0)
        quality = 90;
    if (quality < 1 || quality > 100)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "%s: JPEG quality %d outside 1..100",
                       path ? path : "", quality);
    return save_image(path, img, quality, force, err);
}
