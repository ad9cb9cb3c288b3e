/* Counter-based randomness for MC dropout and the sampled dropout kernels. */
#include <string.h>

#include "uncertainty/stochastic.h"

/* SplitMix64's output function: a bijection on 64 bits with full avalanche,
 * so neighbouring counters give unrelated outputs. */
static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

#define GOLDEN_GAMMA 0x9E3779B97F4A7C15ull

/* Key of one (seed, sample, site) stream; elements are counters within it. */
static inline uint64_t stream_key(uint64_t seed, uint64_t sample, uint64_t site)
{
    uint64_t h = mix64(seed + GOLDEN_GAMMA);
    h = mix64(h ^ (sample + GOLDEN_GAMMA));
    return mix64(h ^ site);
}

/* Element e of a stream is SplitMix64's e-th state after the stream key:
 * the generator's own (well-tested) sequence, addressable at random. */
static inline double stream_uniform(uint64_t key, uint64_t element)
{
    uint64_t z = mix64(key + (element + 1) * GOLDEN_GAMMA);
    return (double)(z >> 11) * 0x1.0p-53;
}

double cd_rng_uniform(uint64_t seed, uint64_t sample, uint64_t site, uint64_t element)
{
    return stream_uniform(stream_key(seed, sample, site), element);
}

uint64_t cd_site_key(const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *c = (const unsigned char *)name; c && *c; c++) {
        h ^= *c;
        h *= 0x100000001b3ull;
    }
    return h;
}

int cd_stochastic_site(const cd_stochastic *s, const cd_node *n)
{
    if (!s || !s->nodes || !s->site_of_node)
        return -1;
    /* Compare as integers: n may belong to another model's node array. */
    uintptr_t base = (uintptr_t)s->nodes, at = (uintptr_t)n;
    if (at < base || at >= base + (uintptr_t)s->n_nodes * sizeof *n)
        return -1;
    size_t idx = (size_t)(at - base) / sizeof *n;
    return s->site_of_node[idx];
}

/* Geometry of a site tensor: rows sampled independently, elements per row and
 * the number of consecutive elements that share one draw (channel mode). */
typedef struct site_layout {
    size_t rows, per_row, inner;
} site_layout;

static site_layout layout_of(const cd_stochastic *s, const cd_tensor *x, bool channel)
{
    site_layout l = {1, cd_tensor_numel(x), 1};
    if (s->rows_are_samples && x->ndim >= 1 && x->dims[0] > 0) {
        l.rows = (size_t)x->dims[0];
        l.per_row = l.per_row / l.rows;
    }
    if (channel)
        for (int d = 2; d < x->ndim; d++)
            l.inner *= (size_t)x->dims[d];
    if (l.inner == 0)
        l.inner = 1;
    return l;
}

/* Refuses what the sampler cannot handle, naming the node. ft is the float
 * type of the calling kernel: float32, or float64 in float64 mode. */
static cd_status check_site(const cd_stochastic *s, int site, const cd_node *n,
                            const cd_tensor *x, cd_dtype ft, cd_error *err)
{
    if (site < 0 || !s)
        return cd_node_fail(n, err, CD_ERR_INTERNAL, "not a stochastic site");
    if (x->dtype != ft)
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED, "MC dropout needs %s, got %s",
                            cd_dtype_name(ft), cd_dtype_name(x->dtype));
    float p = s->site_p[site];
    if (!(p >= 0.0f && p < 1.0f))
        return cd_node_fail(n, err, CD_ERR_INVALID_ARGUMENT, "drop probability %g is outside [0, 1)",
                            (double)p);
    return CD_OK;
}

/* The inverted-dropout scale, rounded to float32 in both modes: float64 mode
 * then evaluates the very function the float32 kernels compute. */
static float site_scale(const cd_stochastic *s, int site)
{
    return (float)(1.0 / (1.0 - (double)s->site_p[site])); /* exactly 1 when p = 0 */
}

/* Stream key of row r of a site tensor (see layout_of). */
static uint64_t row_key(const cd_stochastic *s, int site, size_t r)
{
    uint64_t sample = s->sample_offset + (s->rows_are_samples ? r : 0);
    return stream_key(s->seed, sample, s->site_key[site]);
}

/* Whether element e of a row is kept: the one place every mask comes from. */
static inline bool row_keeps(uint64_t key, const site_layout *l, size_t e, double p)
{
    return stream_uniform(key, e / l->inner) >= p;
}

/* One sampler for both float types (the type is fixed per call, so the
 * branches below are predictable). */
static void draw_dropout(const cd_stochastic *s, int site, const cd_tensor *x, cd_tensor *y,
                         cd_tensor *mask)
{
    const double p = s->site_p[site];
    const float scale = site_scale(s, site);
    site_layout l = layout_of(s, x, s->site_channel[site]);
    const bool wide = x->dtype == CD_FLOAT64;
    /* Masks are bool from opset 10 on, X's type before. */
    uint8_t *mb = mask && mask->dtype == CD_BOOL ? mask->data : NULL;
    float *mf = mask && mask->dtype == CD_FLOAT32 ? mask->data : NULL;
    double *md = mask && mask->dtype == CD_FLOAT64 ? mask->data : NULL;
    for (size_t r = 0; r < l.rows; r++) {
        uint64_t key = row_key(s, site, r);
        size_t base = r * l.per_row;
        for (size_t e = 0; e < l.per_row; e++) {
            size_t i = base + e;
            bool keep = row_keeps(key, &l, e, p);
            if (wide)
                cd_f64(y)[i] = keep ? cd_cf64(x)[i] * (double)scale : 0.0;
            else
                cd_f32(y)[i] = keep ? cd_cf32(x)[i] * scale : 0.0f;
            if (mb)
                mb[i] = keep;
            if (mf)
                mf[i] = keep ? 1.0f : 0.0f;
            if (md)
                md[i] = keep ? 1.0 : 0.0;
        }
    }
}

/* gx += gy * keep * scale with draw_dropout's masks, in gy's float type. */
static void draw_dropout_backward(const cd_stochastic *s, int site, const cd_tensor *gy,
                                  cd_tensor *gx)
{
    const double p = s->site_p[site];
    const float scale = site_scale(s, site);
    site_layout l = layout_of(s, gy, s->site_channel[site]);
    const bool wide = gy->dtype == CD_FLOAT64;
    for (size_t r = 0; r < l.rows; r++) {
        uint64_t key = row_key(s, site, r);
        size_t base = r * l.per_row;
        for (size_t e = 0; e < l.per_row; e++) {
            size_t i = base + e;
            if (!row_keeps(key, &l, e, p))
                continue;
            if (wide)
                cd_f64(gx)[i] += cd_cf64(gy)[i] * (double)scale;
            else
                cd_f32(gx)[i] += cd_cf32(gy)[i] * scale;
        }
    }
}

cd_status cd_stochastic_dropout(const cd_stochastic *s, int site, const cd_node *n,
                                const cd_tensor *x, cd_tensor *y, cd_tensor *mask,
                                cd_error *err)
{
    cd_status st = check_site(s, site, n, x, CD_FLOAT32, err);
    if (st == CD_OK)
        draw_dropout(s, site, x, y, mask);
    return st;
}

cd_status cd_stochastic_dropout64(const cd_stochastic *s, int site, const cd_node *n,
                                  const cd_tensor *x, cd_tensor *y, cd_tensor *mask,
                                  cd_error *err)
{
    cd_status st = check_site(s, site, n, x, CD_FLOAT64, err);
    if (st == CD_OK && mask && mask->dtype == CD_FLOAT32)
        st = cd_node_fail(n, err, CD_ERR_INTERNAL, "float64 mode gave a float32 mask");
    if (st == CD_OK)
        draw_dropout(s, site, x, y, mask);
    return st;
}

cd_status cd_stochastic_dropout_backward(const cd_stochastic *s, int site, const cd_node *n,
                                         const cd_tensor *gy, cd_tensor *gx, cd_error *err)
{
    cd_status st = check_site(s, site, n, gy, CD_FLOAT32, err);
    if (st == CD_OK)
        draw_dropout_backward(s, site, gy, gx);
    return st;
}

cd_status cd_stochastic_dropout_backward64(const cd_stochastic *s, int site, const cd_node *n,
                                           const cd_tensor *gy, cd_tensor *gx, cd_error *err)
{
    cd_status st = check_site(s, site, n, gy, CD_FLOAT64, err);
    if (st == CD_OK && gx->dtype != CD_FLOAT64)
        st = cd_node_fail(n, err, CD_ERR_INTERNAL, "float64 mode gave a %s gradient",
                          cd_dtype_name(gx->dtype));
    if (st == CD_OK)
        draw_dropout_backward(s, site, gy, gx);
    return st;
}
