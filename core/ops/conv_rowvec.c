/* Row-vectorised direct convolution (cd_conv_rowvec_* in conv_fast.h) for
 * the first layer of the MobileNets: 3 channels, 3x3, stride 2, 112-wide
 * output rows, K = 27 products per output.
 *
 * Why not the gathering direct kernel (conv_direct.c) there: it copies a
 * K x 64 column block per 64 pixels (27 strided copies of 64 floats, with
 * the row and padding bookkeeping per copy) and then re-reads it, and
 * epilogues other than ReLU (mobilenet_v3's HardSwish, mobilenet_v2's
 * Clip) ran as a second pass over the 0.8-1.6 MB output; at K = 27 those
 * cost as much as the products. Here one AVX-512 register holds 16
 * consecutive output columns of one row: for horizontal stride 2 the 16
 * inputs of taps kw = 2e and 2e + 1 are the even and odd elements of the
 * 32 floats at 2 ow0 - pad + 2e, i.e. two loads and one vpermt2ps each
 * (stride 1: one load per tap). Masked loads (zero lanes) stand for the
 * padding columns and read nothing outside the input row; rows in the
 * padding contribute zero vectors. 16 (or, for a last short block, 8) maps
 * accumulate in registers with every weight broadcast from memory, then
 * bias, residual and the activation are applied in registers (Sigmoid as
 * cd_epilogue_apply's pass) before one store per map.
 *
 * Each output is the sum over k = (c * KH + kh) * KW + kw in that order of
 * fused multiply-adds from zero, padding taps included as products with
 * zero: the order and arithmetic of conv_direct.c, so both kernels give the
 * same bits, and any split into rows gives the same bits. */
#include "conv_fast.h"

#include <stdbool.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#define RV_LANES 16 /* output columns per register */
#define RV_MAPS 16  /* maps per block (a last block of <= 8 maps is 8 wide) */
#define RV_MAPS_TAIL 8

/* Width of the map block starting at m0. */
static int64_t rv_block(int64_t maps, int64_t m0)
{
    return maps - m0 <= RV_MAPS_TAIL ? RV_MAPS_TAIL : RV_MAPS;
}

size_t cd_conv_rowvec_packed_floats(int64_t K, int64_t maps)
{
    size_t n = 0;
    for (int64_t m0 = 0; m0 < maps; m0 += rv_block(maps, m0))
        n += (size_t)(rv_block(maps, m0) * K);
    return n;
}

/* u[m0 * K + k * width + m] = w[m0 + m][k] per block of width maps (blocks
 * before m0 are all RV_MAPS wide, so m0 * K is where a block starts), maps
 * past the last zero: a tap's broadcasts come from one short run. */
void cd_conv_rowvec_pack(const float *w, int64_t K, int64_t maps, float *u)
{
    for (int64_t m0 = 0; m0 < maps; m0 += rv_block(maps, m0)) {
        int64_t width = rv_block(maps, m0);
        for (int64_t k = 0; k < K; k++)
            for (int64_t m = 0; m < width; m++)
                u[m0 * K + k * width + m] = m0 + m < maps ? w[(m0 + m) * K + k] : 0.0f;
    }
}

#if defined(__AVX512F__)

bool cd_conv_rowvec_applies(const cd_win_geom *g)
{
    return g->nsp == 2 && g->d[0] == 1 && g->d[1] == 1 && (g->s[1] == 1 || g->s[1] == 2) &&
           g->k[1] <= CD_ROWVEC_MAX_KW;
}

/* Lanes i of a 16-float load at row offset off with 0 <= off + i < W. */
static __mmask16 rv_mask(int64_t off, int64_t W)
{
    int64_t lo = off < 0 ? -off : 0, hi = W - off;
    lo = lo < RV_LANES ? lo : RV_LANES;
    hi = hi < 0 ? 0 : hi > RV_LANES ? RV_LANES : hi;
    if (hi <= lo)
        return 0;
    return (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
}

/* The loads of one 16-column chunk, the same for every channel and window
 * row: offsets and lane masks. Stride 2: pairs (2e, 2e + 1) at
 * 2 ow0 - pad + 2e and 16 further; stride 1: one per tap. */
typedef struct rv_chunk {
    int n;                                /* loads */
    int64_t off[CD_ROWVEC_MAX_KW + 1];
    __mmask16 mask[CD_ROWVEC_MAX_KW + 1];
} rv_chunk;

static void rv_chunk_init(rv_chunk *ck, const cd_win_geom *g, int64_t ow0)
{
    int64_t W = g->in[1], KW = g->k[1], base = ow0 * g->s[1] - g->pb[1];
    ck->n = 0;
    if (g->s[1] == 2)
        for (int64_t e = 0; 2 * e < KW; e++)
            for (int64_t h = 0; h < 2; h++, ck->n++) {
                ck->off[ck->n] = base + 2 * e + RV_LANES * h;
                ck->mask[ck->n] = rv_mask(ck->off[ck->n], W);
            }
    else
        for (int64_t kw = 0; kw < KW; kw++, ck->n++) {
            ck->off[ck->n] = base + kw;
            ck->mask[ck->n] = rv_mask(ck->off[ck->n], W);
        }
}


#define RV_FMA(acc, t, w, MB)                                                               \
    do {                                                                                    \
        _Pragma("GCC unroll 16") for (int m = 0; m < (MB); m++) (acc)[m] =                  \
            _mm512_fmadd_ps((t), _mm512_set1_ps((w)[m]), (acc)[m]);                         \
    } while (0)

/* acc[m] = the raw sums of MB maps (weights w: this block's [K][MB] panel)
 * for the chunk ck of the output row whose window starts at input row ih0.
 * S: horizontal stride (1 or 2); KWC: the window width when a constant
 * (else 0), so that the taps of a window row unroll into straight code;
 * LEFT: some load of the chunk starts left of the row. Branches and short
 * loops per window row had held the multiply-adds to ~60% of the FMA
 * rate. EDGE: some load of the chunk reaches outside the row, so loads are
 * masked (else plain: masked loads cost ~14% of the FMA rate in a
 * stand-alone test of this loop). Inlined with constant MB, S, KWC, EDGE
 * and LEFT. */
static inline __attribute__((always_inline)) void
rv_tile(const float *x, const float *w, int64_t channels, const cd_win_geom *g, int64_t ih0,
        const rv_chunk *ck, int MB, int S, int KWC, bool EDGE, bool LEFT, __m512 *acc)
{
    const int64_t H = g->in[0], W = g->in[1], KH = g->k[0], KW = KWC ? KWC : g->k[1];
    const int64_t NL = S == 2 ? (KW + 1) / 2 * 2 : KW; /* loads per window row */
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4,
                                          2, 0);
    const __m512i odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5,
                                         3, 1);
#pragma GCC unroll 16
    for (int m = 0; m < MB; m++)
        acc[m] = _mm512_setzero_ps();
    for (int64_t c = 0; c < channels; c++)
        for (int64_t kh = 0; kh < KH; kh++) {
            int64_t ih = ih0 + kh;
            /* rows in the padding: all-zero masks load nothing */
            bool inside = ih >= 0 && ih < H;
            const float *row = x + (c * H + (inside ? ih : 0)) * W;
            __mmask16 keep = inside ? (__mmask16)0xffff : 0;
            __m512 t[CD_ROWVEC_MAX_KW + 1];
#pragma GCC unroll 16
            for (int64_t i = 0; i < NL; i++) {
                if (!EDGE) {
                    t[i] = inside ? _mm512_loadu_ps(row + ck->off[i]) : _mm512_setzero_ps();
                    continue;
                }
                __mmask16 mk = ck->mask[i] & keep;
                /* a load starting left of the row (the padding column)
                 * expands row[0 ..] into the mask's lanes instead, so no
                 * pointer ever points before the row */
                if (LEFT && ck->off[i] < 0)
                    t[i] = _mm512_maskz_expandloadu_ps(mk, row);
                else
                    t[i] = _mm512_maskz_loadu_ps(mk, row + ck->off[i]);
            }
#pragma GCC unroll 16
            for (int64_t kw = 0; kw < KW; kw++) {
                __m512 v = t[kw];
                if (S == 2)
                    v = _mm512_permutex2var_ps(t[kw & ~1], kw & 1 ? odd : even, t[kw | 1]);
                RV_FMA(acc, v, w, MB);
                w += MB;
            }
        }
}

/* The epilogue in registers, with cd_epilogue_apply's arithmetic step for
 * step (v = y + b + r, then the activation with its comparisons as lane
 * masks), so the bits are those of the pass; Sigmoid (libm's expf) is left
 * to that pass (pass: the raw sums are stored). */
typedef struct rv_epi {
    cd_act act;
    bool any, pass; /* any: bias, residual or activation; pass: cd_epilogue_apply after */
    __m512 lo, hi, alpha, beta;
} rv_epi;

static void rv_epi_init(rv_epi *e, const cd_epilogue *ep, const float *bias, const float *res)
{
    e->act = ep ? ep->act : CD_ACT_NONE;
    e->any = e->act != CD_ACT_NONE || bias || res;
    e->pass = e->act == CD_ACT_SIGMOID;
    e->lo = _mm512_set1_ps(ep ? ep->lo : 0.0f);
    e->hi = _mm512_set1_ps(ep ? ep->hi : 0.0f);
    e->alpha = _mm512_set1_ps(ep ? ep->alpha : 0.0f);
    e->beta = _mm512_set1_ps(ep ? ep->beta : 0.0f);
}

/* clampf(v, lo, hi): v < lo ? lo : v, then v > hi ? hi : v (NaN stays). */
static inline __m512 rv_clamp(__m512 v, __m512 lo, __m512 hi)
{
    v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, lo, _CMP_LT_OQ), lo);
    return _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, hi, _CMP_GT_OQ), hi);
}

static inline __m512 rv_epi_apply(const rv_epi *e, __m512 v, float b, const float *res,
                                  __mmask16 lanes)
{
    if (!e->any || e->pass)
        return v;
    v = _mm512_add_ps(v, _mm512_set1_ps(b));
    if (res)
        v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(lanes, res));
    const __m512 zero = _mm512_setzero_ps();
    switch (e->act) {
    case CD_ACT_RELU: return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ), v);
    case CD_ACT_CLIP: return rv_clamp(v, e->lo, e->hi);
    case CD_ACT_LEAKY_RELU:
        return _mm512_mask_mov_ps(_mm512_mul_ps(e->alpha, v),
                                  _mm512_cmp_ps_mask(v, zero, _CMP_GE_OQ), v);
    case CD_ACT_HARD_SWISH: {
        __m512 gate = _mm512_add_ps(_mm512_div_ps(v, _mm512_set1_ps(6.0f)),
                                    _mm512_set1_ps(0.5f));
        return _mm512_mul_ps(v, rv_clamp(gate, zero, _mm512_set1_ps(1.0f)));
    }
    case CD_ACT_HARD_SIGMOID:
        return rv_clamp(_mm512_add_ps(_mm512_mul_ps(e->alpha, v), e->beta), zero,
                        _mm512_set1_ps(1.0f));
    default: return v;
    }
}

/* One output row oh, maps [m0, m0 + MB) (mb of them real), all chunks. */
static inline __attribute__((always_inline)) void
rv_row(const float *x, const float *u, const float *bias, const float *res, const rv_epi *e,
       float *y, int64_t channels, int64_t maps, const cd_win_geom *g, int64_t oh, int64_t m0,
       int MB, int S, int KWC)
{
    int64_t OW = g->out[1], sp = g->out[0] * OW, K = channels * g->k[0] * g->k[1];
    int64_t mb = maps - m0 < MB ? maps - m0 : MB, ih0 = oh * g->s[0] - g->pb[0];
    const float *w = u + m0 * K;
    for (int64_t ow0 = 0; ow0 < OW; ow0 += RV_LANES) {
        rv_chunk ck;
        rv_chunk_init(&ck, g, ow0);
        __m512 acc[RV_MAPS];
        bool edge = false;
        for (int i = 0; i < ck.n; i++)
            edge = edge || ck.mask[i] != (__mmask16)0xffff;
        if (ck.off[0] < 0)
            rv_tile(x, w, channels, g, ih0, &ck, MB, S, KWC, true, true, acc);
        else if (edge)
            rv_tile(x, w, channels, g, ih0, &ck, MB, S, KWC, true, false, acc);
        else
            rv_tile(x, w, channels, g, ih0, &ck, MB, S, KWC, false, false, acc);
        int64_t n = OW - ow0 < RV_LANES ? OW - ow0 : RV_LANES;
        __mmask16 lanes = (__mmask16)((1u << n) - 1u);
        /* unrolled with constant indices, so acc stays in registers */
#pragma GCC unroll 16
        for (int m = 0; m < MB; m++) {
            if (m >= mb)
                continue;
            int64_t at = (m0 + m) * sp + oh * OW + ow0;
            __m512 v = rv_epi_apply(e, acc[m], bias ? bias[m0 + m] : 0.0f,
                                    res ? res + at : NULL, lanes);
            if (n == RV_LANES)
                _mm512_storeu_ps(y + at, v);
            else
                _mm512_mask_storeu_ps(y + at, lanes, v);
        }
    }
}

void cd_conv_rowvec_rows(const float *x, const float *u, const float *bias, const float *res,
                         const cd_epilogue *ep, float *y, int64_t channels, int64_t maps,
                         const cd_win_geom *g, int64_t oh0, int64_t oh1)
{
    rv_epi e;
    rv_epi_init(&e, ep, bias, res);
    int64_t OW = g->out[1], sp = g->out[0] * OW;
    for (int64_t oh = oh0; oh < oh1; oh++) {
        /* the window's input rows (channels x KH x W floats) stay in L1
         * across the map blocks and chunks */
        for (int64_t m0 = 0; m0 < maps; m0 += rv_block(maps, m0)) {
            bool wide = rv_block(maps, m0) == RV_MAPS, s2 = g->s[1] == 2, k3 = g->k[1] == 3;
            /* constant window width 3 (the MobileNets), else any */
            if (s2 && k3 && wide)
                rv_row(x, u, bias, res, &e, y, channels, maps, g, oh, m0, RV_MAPS, 2, 3);
            else if (s2 && k3)
                rv_row(x, u, bias, res, &e, y, channels, maps, g, oh, m0, RV_MAPS_TAIL, 2, 3);
            else if (s2 && wide)
                rv_row(x, u, bias, res, &e, y, channels, maps, g, oh, m0, RV_MAPS, 2, 0);
            else if (s2)
                rv_row(x, u, bias, res, &e, y, channels, maps, g, oh, m0, RV_MAPS_TAIL, 2, 0);
            else if (wide)
                rv_row(x, u, bias, res, &e, y, channels, maps, g, oh, m0, RV_MAPS, 1, 0);
            else
                rv_row(x, u, bias, res, &e, y, channels, maps, g, oh, m0, RV_MAPS_TAIL, 1, 0);
        }
        if (e.pass)
            for (int64_t m = 0; m < maps; m++)
                cd_epilogue_apply(ep, y + m * sp + oh * OW, bias ? bias + m : NULL,
                                  res ? res + m * sp + oh * OW : NULL, 1, OW);
    }
}

#else /* no AVX-512: never chosen (cd_conv_rowvec_applies), conv_direct.c serves */

bool cd_conv_rowvec_applies(const cd_win_geom *g)
{
    (void)g;
    return false;
}

void cd_conv_rowvec_rows(const float *x, const float *u, const float *bias, const float *res,
                         const cd_epilogue *ep, float *y, int64_t channels, int64_t maps,
                         const cd_win_geom *g, int64_t oh0, int64_t oh1)
{
    (void)x, (void)u, (void)bias, (void)res, (void)ep, (void)y, (void)channels, (void)maps;
    (void)g, (void)oh0, (void)oh1;
}

#endif
