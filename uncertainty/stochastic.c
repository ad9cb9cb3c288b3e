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

/* Refuses what the sampler cannot handle, naming the node. */
static cd_status check_site(const cd_stochastic *s, int site, const cd_node *n,
                            const cd_tensor *x, cd_error *err)
{
    if (site < 0 || !s)
        return cd_node_fail(n, err, CD_ERR_INTERNAL, "not a stochastic site");
    if (x->dtype != CD_FLOAT32)
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED, "MC dropout needs float32, got %s",
                            cd_dtype_name(x->dtype));
    float p = s->site_p[site];
    if (!(p >= 0.0f && p < 1.0f))
        return cd_node_fail(n, err, CD_ERR_INVALID_ARGUMENT, "drop probability %g is outside [0, 1)",
                            (double)p);
    return CD_OK;
}

cd_status cd_stochastic_dropout(const cd_stochastic *s, int site, const cd_node *n,
                                const cd_tensor *x, cd_tensor *y, cd_tensor *mask,
                                cd_error *err)
{
    cd_status st = check_site(s, site, n, x, err);
    if (st != CD_OK)
        return st;
    const double p = s->site_p[site];
    const float scale = (float)(1.0 / (1.0 - p)); /* exactly 1 when p = 0 */
    site_layout l = layout_of(s, x, s->site_channel[site]);
    const float *xs = x->data;
    float *ys = y->data;
    /* Masks are bool from opset 10 on, X's type before. */
    uint8_t *mb = mask && mask->dtype == CD_BOOL ? mask->data : NULL;
    float *mf = mask && mask->dtype == CD_FLOAT32 ? mask->data : NULL;
    for (size_t r = 0; r < l.rows; r++) {
        uint64_t sample = s->sample_offset + (s->rows_are_samples ? r : 0);
        uint64_t key = stream_key(s->seed, sample, s->site_key[site]);
        size_t base = r * l.per_row;
        for (size_t e = 0; e < l.per_row; e++) {
            bool keep = stream_uniform(key, e / l.inner) >= p;
            ys[base + e] = keep ? xs[base + e] * scale : 0.0f;
            if (mb)
                mb[base + e] = keep;
            if (mf)
                mf[base + e] = keep ? 1.0f : 0.0f;
        }
    }
    return CD_OK;
}

cd_status cd_stochastic_dropout_backward(const cd_stochastic *s, int site, const cd_node *n,
                                         const cd_tensor *gy, cd_tensor *gx, cd_error *err)
{
    cd_status st = check_site(s, site, n, gy, err);
    if (st != CD_OK)
        return st;
    const double p = s->site_p[site];
    const float scale = (float)(1.0 / (1.0 - p));
    site_layout l = layout_of(s, gy, s->site_channel[site]);
    const float *g = gy->data;
    float *gxs = gx->data;
    for (size_t r = 0; r < l.rows; r++) {
        uint64_t sample = s->sample_offset + (s->rows_are_samples ? r : 0);
        uint64_t key = stream_key(s->seed, sample, s->site_key[site]);
        size_t base = r * l.per_row;
        for (size_t e = 0; e < l.per_row; e++)
            if (stream_uniform(key, e / l.inner) >= p)
                gxs[base + e] += g[base + e] * scale;
    }
    return CD_OK;
}
