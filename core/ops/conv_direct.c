/* Direct convolution for few input channels (cd_conv_direct_* in
 * conv_fast.h): the first layer of image models (3 channels, 3x3: K = 27
 * products per output; resnet's 7x7: K = 147) and other short products
 * (K <= CD_DIRECT_MAX_K).
 *
 * Why not im2col + sgemm there: with K = 27 the product is thin, so sgemm
 * spends as long zeroing C (beta = 0), packing and re-reading the 12k-column
 * matrix as multiplying, and the epilogue is one more pass over a map that
 * no longer fits in cache (squeezenet's 64 x 111 x 111). Here the output is
 * cut into fixed blocks of DC_PIX consecutive pixels (flat over rows); one
 * block gathers its own K x DC_PIX column block into an L1 buffer, multiplies
 * 8 maps at a time with accumulators held in registers, and applies the
 * epilogue while the block is still in cache. The weights are packed once
 * per plan, 8 maps interleaved per tap. Every output is the sum over
 * k = 0..K-1 in order, inside one block, so the blocks (and the thread
 * count) never change a bit. */
#include "conv_fast.h"

#include <stdbool.h>
#include <string.h>
#if defined(__AVX512F__) || defined(__FMA__)
#include <immintrin.h>
#endif


#define DC_PIX 64 /* pixels per block: a multiple of the micro-kernel width */
#define DC_MAPS 8 /* maps per micro-kernel call */

#if defined(__AVX512F__)
typedef float dc_v __attribute__((vector_size(64)));
#else
typedef float dc_v __attribute__((vector_size(32)));
#endif
#define DC_VW ((int)(sizeof(dc_v) / sizeof(float)))

/* Builds are -std=c11 (no FMA contraction): the fused multiply-add is
 * spelled out where the target has one; elsewhere a multiply and an add. */
#if defined(__AVX512F__)
#define DC_FMA(acc, a, w) ((acc) = _mm512_fmadd_ps((a), _mm512_set1_ps(w), (acc)))
#elif defined(__FMA__)
#define DC_FMA(acc, a, w) ((acc) = _mm256_fmadd_ps((a), _mm256_set1_ps(w), (acc)))
#else
#define DC_FMA(acc, a, w) ((acc) += (w) * (a))
#endif

/* Range [lo, hi) of output columns whose tap at offset off = k*d - pad lands
 * inside [0, in) with stride s. */
static void dc_valid(int64_t off, int64_t s, int64_t in, int64_t out, int64_t *lo, int64_t *hi)
{
    int64_t a = off >= 0 ? 0 : (-off + s - 1) / s;
    int64_t last = in - 1 - off;
    int64_t b = last < 0 ? 0 : last / s + 1;
    *lo = a < out ? a : out;
    *hi = b < out ? b : out;
}

typedef float dc_v8 __attribute__((vector_size(32)));

/* d[i] = x[i * s] for i < n. Stride 2 (first layers) eight at a time: two
 * overlapping loads of x[0..7] and x[7..14] hold the eight even elements,
 * so nothing past x[(n - 1) * 2] is read. */
static void dc_copy_strided(float *d, const float *x, int64_t s, int64_t n)
{
    int64_t i = 0;
    if (s == 2)
        for (; i + 8 <= n; i += 8) {
            dc_v8 lo, hi;
            memcpy(&lo, x + 2 * i, sizeof lo);
            memcpy(&hi, x + 2 * i + 7, sizeof hi);
            dc_v8 v = __builtin_shufflevector(lo, hi, 0, 2, 4, 6, 9, 11, 13, 15);
            memcpy(d + i, &v, sizeof v);
        }
    for (; i < n; i++)
        d[i] = x[i * s];
}

/* col[k][j] = x at tap k of output pixel p0 + j (0 outside the image) for
 * j < n; columns n..DC_PIX-1 are zero. */
static void dc_gather(const float *x, int64_t channels, const cd_win_geom *g, int64_t p0,
                      int64_t n, float *col)
{
    int64_t H = g->in[0], W = g->in[1], OW = g->out[1], K = channels * g->k[0] * g->k[1];
    for (int64_t p = p0; p < p0 + n;) {
        int64_t oh = p / OW, ow0 = p % OW, len = OW - ow0 < p0 + n - p ? OW - ow0 : p0 + n - p;
        float *dst = col + (p - p0);
        for (int64_t c = 0, k = 0; c < channels; c++)
            for (int64_t kh = 0; kh < g->k[0]; kh++) {
                int64_t ih = oh * g->s[0] + kh * g->d[0] - g->pb[0];
                bool inside = ih >= 0 && ih < H;
                const float *xr = inside ? x + (c * H + ih) * W : x;
                for (int64_t kw = 0; kw < g->k[1]; kw++, k++) {
                    float *d = dst + k * DC_PIX;
                    int64_t off = kw * g->d[1] - g->pb[1], a, b;
                    dc_valid(off, g->s[1], W, OW, &a, &b);
                    if (!inside)
                        a = b = ow0;
                    a = a < ow0 ? ow0 : a > ow0 + len ? ow0 + len : a;
                    b = b < a ? a : b > ow0 + len ? ow0 + len : b;
                    for (int64_t ow = ow0; ow < a; ow++)
                        d[ow - ow0] = 0.0f;
                    dc_copy_strided(d + (a - ow0), xr + a * g->s[1] + off, g->s[1], b - a);
                    for (int64_t ow = b; ow < ow0 + len; ow++)
                        d[ow - ow0] = 0.0f;
                }
            }
        p += len;
    }
    for (int64_t k = 0; n < DC_PIX && k < K; k++)
        memset(col + k * DC_PIX + n, 0, (size_t)(DC_PIX - n) * sizeof(float));
}

typedef int32_t dc_vi __attribute__((vector_size(sizeof(dc_v))));

/* y[m * ld + j] = sum_k w[k][m] col[k][j] for DC_MAPS maps (w packed by
 * cd_conv_direct_pack), all DC_PIX columns, two vectors of columns at a
 * time (16 accumulators). With epi, bias (0 without) and ReLU or no
 * activation are applied in registers first, with the arithmetic of the
 * out-buffer path's epilogue (v = acc + b, then v > 0 ? v : 0: all-ones lane
 * masks keep the lanes above zero, the rest become +0), so a whole block
 * goes straight into the output rows (ld = the plane size) without that
 * extra pass; else the raw sums go to a DC_PIX-wide buffer. Inlined into
 * both call sites, where epi is a constant. */
static inline __attribute__((always_inline)) void dc_micro8(const float *col, const float *w,
                                                            int64_t K, bool epi,
                                                            const float *bias, bool relu,
                                                            float *y, int64_t ld)
{
    for (int j = 0; j < DC_PIX; j += 2 * DC_VW) {
        dc_v acc[DC_MAPS][2], zero = {0}; /* no memset: GCC made it a 1 KiB call */
        for (int m = 0; m < DC_MAPS; m++)
            acc[m][0] = acc[m][1] = zero;
        for (int64_t k = 0; k < K; k++) {
            dc_v a0, a1;
            memcpy(&a0, col + k * DC_PIX + j, sizeof a0);
            memcpy(&a1, col + k * DC_PIX + j + DC_VW, sizeof a1);
            for (int m = 0; m < DC_MAPS; m++) {
                float wv = w[k * DC_MAPS + m];
                DC_FMA(acc[m][0], a0, wv);
                DC_FMA(acc[m][1], a1, wv);
            }
        }
        for (int m = 0; m < DC_MAPS; m++) {
            float b = epi && bias ? bias[m] : 0.0f;
            for (int h = 0; h < 2; h++) {
                dc_v v = acc[m][h];
                if (epi) {
                    v = v + b;
                    if (relu)
                        v = (dc_v)((v > zero) & (dc_vi)v);
                }
                memcpy(y + m * ld + j + h * DC_VW, &v, sizeof v);
            }
        }
    }
}

/* y[0..n) = o[0..n): a fixed-size copy (inlined vector moves) for whole
 * blocks; a libc call per map and block had cost as much as the gather. */
static inline void dc_store(float *y, const float *o, int64_t n)
{
    if (n == DC_PIX)
        memcpy(y, o, DC_PIX * sizeof(float));
    else
        for (int64_t i = 0; i < n; i++)
            y[i] = o[i];
}

int64_t cd_conv_direct_blocks(const cd_win_geom *g)
{
    return (g->out[0] * g->out[1] + DC_PIX - 1) / DC_PIX;
}

size_t cd_conv_direct_packed_floats(int64_t K, int64_t maps)
{
    return (size_t)((maps + DC_MAPS - 1) / DC_MAPS * DC_MAPS * K);
}

/* u[group][k][m] = w[group * DC_MAPS + m][k], maps past the last zero: the
 * micro-kernel's eight broadcasts per tap then come from one pointer (with
 * eight row pointers GCC ran out of registers and reloaded them per tap). */
void cd_conv_direct_pack(const float *w, int64_t K, int64_t maps, float *u)
{
    int64_t groups = (maps + DC_MAPS - 1) / DC_MAPS;
    for (int64_t g = 0; g < groups; g++)
        for (int64_t k = 0; k < K; k++)
            for (int64_t m = 0; m < DC_MAPS; m++) {
                int64_t map = g * DC_MAPS + m;
                u[(g * K + k) * DC_MAPS + m] = map < maps ? w[map * K + k] : 0.0f;
            }
}

size_t cd_conv_direct_scratch_floats(void)
{
    return (size_t)(CD_DIRECT_MAX_K + DC_MAPS) * DC_PIX;
}

void cd_conv_direct_block(const float *x, const float *u, const float *bias, const float *res,
                          const cd_epilogue *ep, float *y, int64_t channels, int64_t maps,
                          const cd_win_geom *g, int64_t block, float *scratch)
{
    int64_t sp = g->out[0] * g->out[1], K = channels * g->k[0] * g->k[1];
    int64_t p0 = block * DC_PIX, n = sp - p0 < DC_PIX ? sp - p0 : DC_PIX;
    /* the column block and the raw sums: 42 KiB at K = 160, not on the stack */
    float *col = scratch, *out = scratch + CD_DIRECT_MAX_K * DC_PIX;
    cd_act act = ep ? ep->act : CD_ACT_NONE;
    bool relu = act == CD_ACT_RELU, simple = !res && (act == CD_ACT_NONE || relu);
    dc_gather(x, channels, g, p0, n, col);
    for (int64_t m0 = 0; m0 < maps; m0 += DC_MAPS) {
        int64_t mb = maps - m0 < DC_MAPS ? maps - m0 : DC_MAPS;
        const float *wg = u + m0 * K; /* this group's [K][DC_MAPS] panel */
        if (mb == DC_MAPS && simple && n == DC_PIX) {
            dc_micro8(col, wg, K, true, bias ? bias + m0 : NULL, relu, y + m0 * sp + p0, sp);
            continue;
        }
        /* else the raw sums to out (a last short group's zero maps are not stored) */
        dc_micro8(col, wg, K, false, NULL, false, out, DC_PIX);
        for (int64_t m = 0; m < mb; m++) {
            float *yr = y + (m0 + m) * sp + p0, *o = out + m * DC_PIX;
            if (simple) {
                /* Fixed-length loops the compiler vectorises; the same
                 * v + b and v > 0 ? v : 0 as cd_epilogue_apply. */
                float b = bias ? bias[m0 + m] : 0.0f;
                if (relu)
                    for (int i = 0; i < DC_PIX; i++) {
                        float v = o[i] + b;
                        o[i] = v > 0 ? v : 0.0f;
                    }
                else
                    for (int i = 0; i < DC_PIX; i++)
                        o[i] += b;
                dc_store(yr, o, n);
            } else {
                memcpy(yr, o, (size_t)n * sizeof(float));
                cd_epilogue_apply(ep, yr, bias ? bias + m0 + m : NULL,
                                  res ? res + (m0 + m) * sp + p0 : NULL, 1, n);
            }
        }
    }
}
