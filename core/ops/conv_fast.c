/* Fast convolution kernels: fused epilogue, direct depthwise, im2col and
 * 2-D max pooling (Winograd lives in conv_wino4.c). Each is checked against
 * a naive reference in tests/test_conv_fast.c. */
#include <math.h>
#include <string.h>

#if defined(__FMA__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "conv_fast.h"

/* Epilogue ----------------------------------------------------------------- */

static inline float sigmoid1(float x)
{
    if (x >= 0)
        return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

/* One loop per activation and residual presence so each stays a simple
 * vectorisable loop; comparisons instead of fminf/fmaxf, which GCC leaves
 * as libm calls (Clip's own kernel compares the same way). */
#define EPI_LOOP(EXPR)                                                                      \
    do {                                                                                    \
        if (r)                                                                              \
            for (int64_t i = 0; i < sp; i++) {                                              \
                float v = row[i] + b + r[i];                                                \
                row[i] = (EXPR);                                                            \
            }                                                                               \
        else                                                                                \
            for (int64_t i = 0; i < sp; i++) {                                              \
                float v = row[i] + b;                                                       \
                row[i] = (EXPR);                                                            \
            }                                                                               \
    } while (0)

static inline float clampf(float v, float lo, float hi)
{
    v = v < lo ? lo : v;
    return v > hi ? hi : v;
}

void cd_epilogue_apply(const cd_epilogue *ep, float *y, const float *bias, const float *res,
                       int64_t maps, int64_t sp)
{
    cd_act act = ep ? ep->act : CD_ACT_NONE;
    if (act == CD_ACT_NONE && !bias && !res)
        return;
    float lo = ep ? ep->lo : 0, hi = ep ? ep->hi : 0, alpha = ep ? ep->alpha : 0;
    float beta = ep ? ep->beta : 0;
    for (int64_t m = 0; m < maps; m++) {
        float *row = y + m * sp, b = bias ? bias[m] : 0.0f;
        const float *r = res ? res + m * sp : NULL;
        switch (act) {
        case CD_ACT_NONE: EPI_LOOP(v); break;
        case CD_ACT_RELU: EPI_LOOP(v > 0 ? v : 0.0f); break;
        case CD_ACT_CLIP: EPI_LOOP(clampf(v, lo, hi)); break;
        case CD_ACT_LEAKY_RELU: EPI_LOOP(v >= 0 ? v : alpha * v); break;
        case CD_ACT_HARD_SWISH: EPI_LOOP(v * clampf(v / 6.0f + 0.5f, 0.0f, 1.0f)); break;
        case CD_ACT_SIGMOID: EPI_LOOP(sigmoid1(v)); break;
        case CD_ACT_HARD_SIGMOID: EPI_LOOP(clampf(alpha * v + beta, 0.0f, 1.0f)); break;
        }
    }
}

/* Depthwise ---------------------------------------------------------------- */

/* Range [lo, hi) of output positions whose tap at offset off = k*d - pad
 * lands inside [0, in) with stride s. */
static void valid_range(int64_t off, int64_t s, int64_t in, int64_t out, int64_t *lo,
                        int64_t *hi)
{
    int64_t a = off >= 0 ? 0 : (-off + s - 1) / s;
    int64_t last = in - 1 - off; /* largest o*s allowed */
    int64_t b = last < 0 ? 0 : last / s + 1;
    *lo = a < out ? a : out;
    *hi = b < out ? b : out;
    if (*hi < *lo)
        *hi = *lo;
}

/* Depthwise works on one plane at a time from a zero-padded copy in which
 * every row is split into its s1 column phases (phase ph holds padded
 * columns ph, ph + s1, ...). Every tap of the window then reads a contiguous
 * run: output column ow of tap kw comes from phase (kw*d1) % s1 at index
 * ow + (kw*d1) / s1, whatever the stride. No bounds checks remain in the
 * inner loops, and for the 3x3 and 5x5 windows of the MobileNets all taps
 * of an output row are summed in registers in one pass. */

/* Zeroed floats after the padded plane: the row kernel's 8-wide chunks may
 * read up to 7 past the last output of the last row. */
#define DW_SLACK 16
/* Horizontal strides the depthwise kernel takes (phases per padded row). */
#define CD_WIN_MAX_STRIDE_PHASES CD_DW_MAX_STRIDE

/* Padded rows and columns the outputs read, and the phase row length. */
static void dw_padded_dims(const cd_win_geom *g, int64_t *hp, int64_t *wph)
{
    *hp = (g->out[0] - 1) * g->s[0] + (g->k[0] - 1) * g->d[0] + 1;
    int64_t wp = (g->out[1] - 1) * g->s[1] + (g->k[1] - 1) * g->d[1] + 1;
    *wph = (wp + g->s[1] - 1) / g->s[1];
}

size_t cd_dw_scratch_floats(const cd_win_geom *g)
{
    int64_t hp, wph;
    dw_padded_dims(g, &hp, &wph);
    return (size_t)(hp * wph * g->s[1] + DW_SLACK);
}

/* The padded plane's zeros (rows and columns outside the input, the slack)
 * are the same for every plane of a geometry, so cd_conv_depthwise zeroes
 * the scratch once per call and dw_pad_plane only copies each plane's
 * inside. Per plane, zeroing cost a memset call per border row and two more
 * per row (GCC turns the zero loops into calls): most of the time of the
 * 7x7 and 14x14 planes of MobileNet-v2's last blocks. */
static void dw_pad_zero(const cd_win_geom *g, float *pad)
{
    int64_t hp, wph;
    dw_padded_dims(g, &hp, &wph);
    memset(pad, 0, (size_t)(hp * wph * g->s[1] + DW_SLACK) * sizeof *pad);
}

static void dw_pad_plane(const float *xc, const cd_win_geom *g, float *pad)
{
    int64_t H = g->in[0], W = g->in[1], s1 = g->s[1], hp, wph;
    int64_t lo[CD_WIN_MAX_STRIDE_PHASES], hi[CD_WIN_MAX_STRIDE_PHASES];
    dw_padded_dims(g, &hp, &wph);
    /* phase entries i read input column i*s1 + ph - pb1: [lo, hi) is inside */
    for (int64_t ph = 0; ph < s1; ph++)
        valid_range(ph - g->pb[1], s1, W, wph, &lo[ph], &hi[ph]);
    int64_t r0 = g->pb[0], r1 = H + g->pb[0] < hp ? H + g->pb[0] : hp; /* rows inside */
    for (int64_t r = r0 < 0 ? 0 : r0; r < r1; r++) {
        float *dst = pad + r * s1 * wph;
        const float *src = xc + (r - g->pb[0]) * W;
        for (int64_t ph = 0; ph < s1; ph++) {
            float *d = dst + ph * wph;
            const float *sp = src + ph - g->pb[1];
            if (s1 == 1)
                memcpy(d + lo[ph], sp + lo[ph], (size_t)(hi[ph] - lo[ph]) * sizeof *d);
            else if (s1 == 2)
                for (int64_t i = lo[ph]; i < hi[ph]; i++)
                    d[i] = sp[2 * i];
            else
                for (int64_t i = lo[ph]; i < hi[ph]; i++)
                    d[i] = sp[i * s1];
        }
    }
}

/* The row kernel: outputs in column chunks of one vector (16 floats where
 * the output rows are at least that wide, else 8) for bands of 8 rows at
 * once (then 4, 2, 1 for the rest), every tap accumulated in registers
 * (one independent FMA chain per row hides the latency). A chunk may read
 * up to 15 floats past a row's last output; they land in the next padded
 * row or in the zeroed slack at the end of the scratch, and their lanes are
 * never stored. KH/KW are compile-time constants in the 3x3 and 5x5
 * instances, so the tap loop unrolls.
 *
 * When a row is at least one vector wide its last chunk is shifted left to
 * end at the row's end, overlapping the previous chunk: the overlapped
 * outputs are recomputed with the same taps in the same order (same bits),
 * and every store is a full vector. Partial stores (a variable-length
 * memcpy, i.e. a libc call) remain only for rows narrower than 8.
 *
 * The epilogue is no second pass over the plane: see dw_out below.
 *
 * GCC's auto-vectoriser turned the plain-C form of this loop into scalar
 * code with stack spills, so the chunk is a GCC/Clang vector type (plain
 * arithmetic on it compiles to one AVX-512 or AVX instruction, or pairs of
 * narrower ones); loads and stores go through memcpy, which allows any
 * alignment. */
typedef float dw_v8 __attribute__((vector_size(32)));
typedef float dw_v16 __attribute__((vector_size(64)));
typedef int32_t dw_i8 __attribute__((vector_size(32))); /* lane masks of comparisons */
typedef int32_t dw_i16 __attribute__((vector_size(64)));

/* acc += w * v. ISO C mode keeps GCC from contracting a*b+c into one FMA
 * instruction, so where the target has FMA it is asked for explicitly:
 * half the arithmetic instructions, one rounding instead of two. The
 * kernels are the same for any thread count, so results stay bit-identical
 * across threads either way. Vectors go by pointer: by value they would
 * change the ABI in builds without AVX (GCC warns). */
static inline void dw_fma8(dw_v8 *acc, float w, const dw_v8 *v)
{
#ifdef __FMA__
    *acc = (dw_v8)_mm256_fmadd_ps((__m256)*v, _mm256_set1_ps(w), (__m256)*acc);
#else
    *acc += w * *v;
#endif
}

static inline void dw_fma16(dw_v16 *acc, float w, const dw_v16 *v)
{
#ifdef __AVX512F__
    *acc = (dw_v16)_mm512_fmadd_ps((__m512)*v, _mm512_set1_ps(w), (__m512)*acc);
#else
    *acc += w * *v;
#endif
}

/* What a row kernel needs besides the plane: the epilogue of this plane.
 * Bias + ReLU/Clip/nothing without a residual (MobileNets' depthwise
 * layers) runs in registers before each chunk's store (the *_fused kernel
 * instances); anything else is applied to each band of rows right after it
 * is computed, while it is still in L1. */
typedef struct dw_out {
    const cd_epilogue *ep;
    const float *bias, *res; /* this plane's bias (one value) and residual, or NULL */
    float *y;
    bool fused, band;        /* epilogue in registers / per band (at most one set) */
    float b, lo, hi;         /* fused: bias (0 without), clamp bounds */
} dw_out;

static dw_out dw_out_make(const cd_epilogue *ep, const float *bias, const float *res, float *y)
{
    cd_act act = ep ? ep->act : CD_ACT_NONE;
    dw_out o = {ep, bias, res, y, false, false, bias ? *bias : 0.0f, -INFINITY, INFINITY};
    if (act == CD_ACT_NONE && !bias && !res)
        return o; /* cd_epilogue_apply would do nothing either */
    if (!res && (act == CD_ACT_NONE || act == CD_ACT_RELU || act == CD_ACT_CLIP)) {
        o.fused = true; /* clamping to +-inf changes nothing, NaN included */
        if (act == CD_ACT_RELU)
            o.lo = 0.0f;
        if (act == CD_ACT_CLIP)
            o.lo = ep->lo, o.hi = ep->hi;
    } else {
        o.band = true;
    }
    return o;
}

static void dw_band_epilogue(const dw_out *o, int64_t oh, int64_t rows, int64_t OW)
{
    if (o->band)
        cd_epilogue_apply(o->ep, o->y + oh * OW, o->bias, o->res ? o->res + oh * OW : NULL, 1,
                          rows * OW);
}

/* tap[i]: offset of tap i's run from the start of its output row's padded
 * rows, precomputed so the kernels do no divisions. VT/L: vector type and
 * its lanes. */
#define DW_KERNEL(NAME, NT_, VT, IVT, L, FUSE)                                                         \
    static inline void NAME##_fma(VT *acc, float wv, const float *src)                     \
    {                                                                                       \
        VT v;                                                                               \
        memcpy(&v, src, sizeof v);                                                          \
        dw_fma##L(acc, wv, &v);                                                             \
    }                                                                                       \
    /* cd_epilogue_apply's v + b then clampf(v, lo, hi), lane-wise (vector    \
     * comparisons give all-ones masks; GCC's C has no vector ?:). */                       \
    static inline void NAME##_store(float *y, VT *acc, int64_t nc, float b, float lo,       \
                                    float hi)                                               \
    {                                                                                       \
        if (FUSE) {                                                                         \
            VT z = {0}, v = *acc + b, vlo = lo - z, vhi = hi - z; /* x - 0 == x exactly */ \
            IVT m = v < vlo;                                                                \
            v = (VT)((m & (IVT)vlo) | (~m & (IVT)v));                                       \
            m = v > vhi;                                                                    \
            *acc = (VT)((m & (IVT)vhi) | (~m & (IVT)v));                                    \
        }                                                                                   \
        if (nc == (L))                                                                      \
            memcpy(y, acc, sizeof *acc);                                                    \
        else                                                                                \
            memcpy(y, acc, (size_t)nc * sizeof(float));                                     \
    }                                                                                       \
    /* R (1..8, a constant once inlined) rows starting at output row oh: one   \
     * accumulator per row, R independent chains. */                                        \
    static inline __attribute__((always_inline)) void NAME##_band(                          \
        const float *pad, const float *w, const int64_t *tap, int64_t NT, int64_t rowstep,  \
        int64_t OW, float *yc, int64_t oh, int R, float b, float lo, float hi)              \
    {                                                                                       \
        const int64_t nc = OW < (L) ? OW : (L), last = OW - nc;                             \
        const float *base = pad + oh * rowstep;                                             \
        for (int64_t c = 0; c < OW; c += (L)) {                                             \
            int64_t ow = c < last ? c : last;                                               \
            VT a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, a4 = {0}, a5 = {0}, a6 = {0},        \
               a7 = {0};                                                                    \
            for (int64_t i = 0; i < NT; i++) {                                              \
                const float *src = base + tap[i] + ow;                                      \
                NAME##_fma(&a0, w[i], src);                                                 \
                if (R > 1) NAME##_fma(&a1, w[i], src + rowstep);                            \
                if (R > 2) NAME##_fma(&a2, w[i], src + 2 * rowstep);                        \
                if (R > 3) NAME##_fma(&a3, w[i], src + 3 * rowstep);                        \
                if (R > 4) NAME##_fma(&a4, w[i], src + 4 * rowstep);                        \
                if (R > 5) NAME##_fma(&a5, w[i], src + 5 * rowstep);                        \
                if (R > 6) NAME##_fma(&a6, w[i], src + 6 * rowstep);                        \
                if (R > 7) NAME##_fma(&a7, w[i], src + 7 * rowstep);                        \
            }                                                                               \
            float *y0 = yc + oh * OW + ow;                                                  \
            NAME##_store(y0, &a0, nc, b, lo, hi);                                           \
            if (R > 1) NAME##_store(y0 + OW, &a1, nc, b, lo, hi);                           \
            if (R > 2) NAME##_store(y0 + 2 * OW, &a2, nc, b, lo, hi);                       \
            if (R > 3) NAME##_store(y0 + 3 * OW, &a3, nc, b, lo, hi);                       \
            if (R > 4) NAME##_store(y0 + 4 * OW, &a4, nc, b, lo, hi);                       \
            if (R > 5) NAME##_store(y0 + 5 * OW, &a5, nc, b, lo, hi);                       \
            if (R > 6) NAME##_store(y0 + 6 * OW, &a6, nc, b, lo, hi);                       \
            if (R > 7) NAME##_store(y0 + 7 * OW, &a7, nc, b, lo, hi);                       \
        }                                                                                   \
    }                                                                                       \
    /* A band of R rows at oh, then its epilogue (unless fused); returns R. */               \
    static inline __attribute__((always_inline)) int64_t NAME##_step(                       \
        const float *pad, const float *w, const int64_t *tap, int64_t NT, int64_t rowstep,  \
        int64_t OW, const dw_out *o, int64_t oh, int R)                                     \
    {                                                                                       \
        NAME##_band(pad, w, tap, NT, rowstep, OW, o->y, oh, R, o->b, o->lo, o->hi);         \
        dw_band_epilogue(o, oh, R, OW);                                                     \
        return R;                                                                           \
    }                                                                                       \
    static void NAME(const float *pad, const float *w, const int64_t *tap, int64_t ntap,    \
                     const cd_win_geom *g, int64_t wph, const dw_out *o)                    \
    {                                                                                       \
        const int64_t NT = (NT_), OW = g->out[1], OH = g->out[0];                           \
        int64_t rowstep = g->s[0] * g->s[1] * wph, oh = 0;                                  \
        (void)ntap;                                                                         \
        while (oh + 8 <= OH)                                                                \
            oh += NAME##_step(pad, w, tap, NT, rowstep, OW, o, oh, 8);                      \
        if (oh + 4 <= OH)                                                                   \
            oh += NAME##_step(pad, w, tap, NT, rowstep, OW, o, oh, 4);                      \
        if (oh + 2 <= OH)                                                                   \
            oh += NAME##_step(pad, w, tap, NT, rowstep, OW, o, oh, 2);                      \
        if (oh < OH)                                                                        \
            NAME##_step(pad, w, tap, NT, rowstep, OW, o, oh, 1);                            \
    }
/* One set of instances: dw{8,16}_rows_{3,5,any}SFX (3x3, 5x5 and any taps,
 * 8 and 16 lanes), unfused (SFX empty) and fused (_fused) alike. */
#define DW_KERNEL_SET(SFX, FUSE)                                                            \
    DW_KERNEL(dw8_rows_3##SFX, 9, dw_v8, dw_i8, 8, FUSE)                                    \
    DW_KERNEL(dw8_rows_5##SFX, 25, dw_v8, dw_i8, 8, FUSE)                                   \
    DW_KERNEL(dw8_rows_any##SFX, ntap, dw_v8, dw_i8, 8, FUSE)                               \
    DW_KERNEL(dw16_rows_3##SFX, 9, dw_v16, dw_i16, 16, FUSE)                                \
    DW_KERNEL(dw16_rows_5##SFX, 25, dw_v16, dw_i16, 16, FUSE)                               \
    DW_KERNEL(dw16_rows_any##SFX, ntap, dw_v16, dw_i16, 16, FUSE)
DW_KERNEL_SET(, 0)
DW_KERNEL_SET(_fused, 1)
#undef DW_KERNEL_SET
#undef DW_KERNEL

#if defined(__AVX512F__)
/* 3x3, stride 1 or 2 (both ways), dilation 1 (MobileNets' depthwise layers)
 * without the padded copy: each 16-wide output chunk reads the plane itself
 * with AVX-512 masked loads whose lanes outside the row are zeros, and
 * input rows outside the plane are a zero vector. That is exactly what the
 * padded scratch held, with the same FMAs in the same order (taps kh-major,
 * kw-minor, one chain per output row), so the bits are those of the padded
 * kernels; only the copy (a libc call per row, most of the small planes'
 * time) and the scratch's zeroing are gone. Bands of up to 4 output rows
 * (8 on planes of one chunk per row) share the input rows they read: each
 * row's taps are loaded once and feed every accumulator they belong to; the
 * load masks are computed once per chunk. */
static inline __mmask16 dw3_lanes(int64_t col0, int64_t W)
{
    int64_t lo = col0 < 0 ? -col0 : 0, hi = W - col0 < 16 ? W - col0 : 16;
    if (hi <= lo)
        return 0;
    return (__mmask16)((((uint32_t)1 << hi) - 1) & ~(((uint32_t)1 << lo) - 1));
}

/* The three column taps of one input row for output chunk ow: v[kw] holds
 * x[row][S * (ow + l) + kw - pl] for lanes l (zero outside the row). S = 2
 * takes 33 floats in three masked loads and deinterleaves them with
 * permutes: even lanes for kw 0, odd for kw 1, even from the next float
 * for kw 2. */
static inline __attribute__((always_inline)) void dw3_taps(const float *row, int64_t ow,
                                                           int64_t pl, int S,
                                                           const __mmask16 *mk, __m512 *v)
{
    if (S == 1) {
#pragma GCC unroll 3
        for (int kw = 0; kw < 3; kw++)
            v[kw] = _mm512_maskz_loadu_ps(mk[kw], row + ow + kw - pl);
        return;
    }
    int64_t c0 = 2 * ow - pl;
    __m512 a = _mm512_maskz_loadu_ps(mk[0], row + c0);
    __m512 b = _mm512_maskz_loadu_ps(mk[1], row + c0 + 16);
    __m512 c = _mm512_maskz_loadu_ps(mk[2], row + c0 + 32);
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
                                           28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29,
                                          31);
    const __m512i even2 = _mm512_setr_epi32(2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28,
                                            30, 0);
    const __m512i last = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
                                           16);
    v[0] = _mm512_permutex2var_ps(a, even, b);
    v[1] = _mm512_permutex2var_ps(a, odd, b);
    v[2] = _mm512_permutex2var_ps(_mm512_permutex2var_ps(a, even2, b), last, c);
}

/* The load masks of dw3_taps for output chunk ow, the same for every row:
 * stride 1, the three shifted runs; stride 2, the three loads (the third
 * only needs its first float). */
static inline void dw3_masks(int64_t ow, int64_t pl, int64_t W, int S, __mmask16 *mk)
{
    if (S == 1) {
        for (int kw = 0; kw < 3; kw++)
            mk[kw] = dw3_lanes(ow + kw - pl, W);
        return;
    }
    int64_t c0 = 2 * ow - pl;
    mk[0] = dw3_lanes(c0, W);
    mk[1] = dw3_lanes(c0 + 16, W);
    mk[2] = dw3_lanes(c0 + 32, W) & 1;
}

/* R output rows from oh at stride S (1 or 2; constants once inlined). */
static inline __attribute__((always_inline)) void dw3_band(const float *xc, const float *w,
                                                           const cd_win_geom *g,
                                                           const dw_out *o, int64_t oh, int R,
                                                           int S)
{
    const int64_t H = g->in[0], W = g->in[1], OW = g->out[1], pt = g->pb[0], pl = g->pb[1];
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t ow = 0; ow < OW; ow += 16) {
        int64_t nc = OW - ow < 16 ? OW - ow : 16;
        __m512 acc[8] = {zero, zero, zero, zero, zero, zero, zero, zero};
        __mmask16 mk[3];
        dw3_masks(ow, pl, W, S, mk);
        /* input row S * oh - pt + r feeds output row oh + i at tap kh = r - S * i */
#pragma GCC unroll 17
        for (int r = 0; r < S * (R - 1) + 3; r++) {
            int64_t ih = S * oh - pt + r;
            __m512 v[3] = {zero, zero, zero};
            if (ih >= 0 && ih < H)
                dw3_taps(xc + ih * W, ow, pl, S, mk, v);
#pragma GCC unroll 8
            for (int i = 0; i < R; i++) {
                int kh = r - S * i;
                if (kh < 0 || kh > 2)
                    continue;
#pragma GCC unroll 3
                for (int kw = 0; kw < 3; kw++)
                    acc[i] = _mm512_fmadd_ps(v[kw], _mm512_set1_ps(w[kh * 3 + kw]), acc[i]);
            }
        }
        __mmask16 st = (__mmask16)(((uint32_t)1 << nc) - 1);
#pragma GCC unroll 8
        for (int i = 0; i < R; i++) {
            __m512 a = acc[i];
            if (o->fused) { /* dw16_rows_3_fused's store: v + b, then the clamp */
                __m512 v = _mm512_add_ps(a, _mm512_set1_ps(o->b));
                __m512 lo = _mm512_set1_ps(o->lo), hi = _mm512_set1_ps(o->hi);
                v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, lo, _CMP_LT_OQ), lo);
                a = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, hi, _CMP_GT_OQ), hi);
            }
            /* A masked store is slow (tens of cycles on AMD Zen 4), so a
             * short chunk is stored whole where its extra lanes land in
             * rows of this plane that are stored (and given their
             * epilogue) after it: any later row when a row is one chunk,
             * else (chunks are the outer loop) only rows of later bands. */
            if (nc == 16 || ((OW <= 16 || i == R - 1) &&
                             (oh + i) * OW + ow + 16 <= g->out[0] * OW))
                _mm512_storeu_ps(o->y + (oh + i) * OW + ow, a);
            else
                _mm512_mask_storeu_ps(o->y + (oh + i) * OW + ow, st, a);
        }
    }
}

/* One band of R rows (R, S constants in each instance). */
#define DW3_BAND(R_)                                                                        \
    case R_:                                                                                \
        if (S == 1)                                                                         \
            dw3_band(xc, w, g, o, oh, R_, 1);                                               \
        else                                                                                \
            dw3_band(xc, w, g, o, oh, R_, 2);                                               \
        break;

/* Bands of 4 rows (then single rows) over wide planes; planes of one chunk
 * per row (MobileNets' 14x14 and 7x7) in bands of up to 8 rows, so each
 * input row is loaded about once instead of up to three times. */
static void dw3_plane(const float *xc, const float *w, const cd_win_geom *g, const dw_out *o,
                      int S)
{
    int64_t OH = g->out[0], most = g->out[1] <= 16 ? 8 : 4;
    for (int64_t oh = 0; oh < OH;) {
        int R = (int)(OH - oh < most ? (most == 4 && OH - oh < 4 ? 1 : OH - oh) : most);
        switch (R) {
            DW3_BAND(8)
            DW3_BAND(7)
            DW3_BAND(6)
            DW3_BAND(5)
            DW3_BAND(4)
            DW3_BAND(3)
            DW3_BAND(2)
            DW3_BAND(1)
        default: break;
        }
        dw_band_epilogue(o, oh, R, g->out[1]);
        oh += R;
    }
}
#undef DW3_BAND
#endif

/* Uses spatial dims 0 and 1 of g (H, W); callers guarantee dim 2 is unit
 * and k[0]*k[1] <= CD_DW_MAX_TAPS. */
void cd_conv_depthwise(const float *x, const float *w, const float *bias, const float *res,
                       const cd_epilogue *ep, float *y, int64_t channels, const cd_win_geom *g,
                       float *pad)
{
    int64_t H = g->in[0], W = g->in[1], OH = g->out[0], OW = g->out[1];
    int64_t KH = g->k[0], KW = g->k[1], s1 = g->s[1], hp, wph, tap[CD_DW_MAX_TAPS];
    dw_padded_dims(g, &hp, &wph);
    for (int64_t kh = 0; kh < KH; kh++)
        for (int64_t kw = 0; kw < KW; kw++) {
            int64_t c = kw * g->d[1];
            tap[kh * KW + kw] = (kh * g->d[0] * s1 + c % s1) * wph + c / s1;
        }
    bool wide = OW >= 16, k3 = KH == 3 && KW == 3, k5 = KH == 5 && KW == 5;
#if defined(__AVX512F__)
    if (k3 && g->s[0] == s1 && (s1 == 1 || s1 == 2) && g->d[0] == 1 && g->d[1] == 1) {
        for (int64_t c = 0; c < channels; c++) {
            dw_out o = dw_out_make(ep, bias ? bias + c : NULL, res ? res + c * OH * OW : NULL,
                                   y + c * OH * OW);
            dw3_plane(x + c * H * W, w + c * 9, g, &o, (int)s1);
        }
        return;
    }
#endif
    dw_pad_zero(g, pad);
    for (int64_t c = 0; c < channels; c++) {
        const float *wc = w + c * KH * KW;
        dw_out o = dw_out_make(ep, bias ? bias + c : NULL, res ? res + c * OH * OW : NULL,
                               y + c * OH * OW);
        dw_pad_plane(x + c * H * W, g, pad);
        if (o.fused && k3)
            (wide ? dw16_rows_3_fused : dw8_rows_3_fused)(pad, wc, tap, 9, g, wph, &o);
        else if (o.fused && k5)
            (wide ? dw16_rows_5_fused : dw8_rows_5_fused)(pad, wc, tap, 25, g, wph, &o);
        else if (o.fused)
            (wide ? dw16_rows_any_fused : dw8_rows_any_fused)(pad, wc, tap, KH * KW, g, wph, &o);
        else if (k3)
            (wide ? dw16_rows_3 : dw8_rows_3)(pad, wc, tap, 9, g, wph, &o);
        else if (k5)
            (wide ? dw16_rows_5 : dw8_rows_5)(pad, wc, tap, 25, g, wph, &o);
        else
            (wide ? dw16_rows_any : dw8_rows_any)(pad, wc, tap, KH * KW, g, wph, &o);
    }
}

/* im2col and max pooling over 2-D windows ------------------------------------- */

/* One column-matrix row (tap offsets offh, offw) when stride is 1 and rows
 * keep their width (OW == W, "same" padding): the row is the input plane
 * shifted by offh * W + offw, so it is one memcpy, then zeros for the rows
 * and the few columns whose tap falls outside the plane. Row-by-row copies
 * cost a memcpy and two tiny memset calls per output row (SqueezeNet's
 * 3x3 expand convolutions spent more time in them than copying). */
static inline int64_t clamp64(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* Positions [p0, p1) of that row. */
static void im2col_shift_row(const float *plane, const cd_win_geom *g, int64_t offh,
                             int64_t offw, float *row, int64_t p0, int64_t p1)
{
    int64_t H = g->in[0], W = g->in[1], OH = g->out[0], oh0, oh1;
    valid_range(offh, 1, H, OH, &oh0, &oh1);
    int64_t z0 = clamp64(oh0 * W, p0, p1), z1 = clamp64(oh1 * W, p0, p1);
    memset(row + p0, 0, (size_t)(z0 - p0) * sizeof *row); /* rows above the plane */
    memset(row + z1, 0, (size_t)(p1 - z1) * sizeof *row); /* and below */
    if (oh1 <= oh0)
        return;
    int64_t lo = oh0 * W + (offw < 0 ? -offw : 0), hi = oh1 * W - (offw > 0 ? offw : 0);
    lo = clamp64(lo, p0, p1), hi = clamp64(hi, p0, p1);
    if (hi > lo) /* source index i + offh*W + offw stays inside the plane */
        memcpy(row + lo, plane + lo + offh * W + offw, (size_t)(hi - lo) * sizeof *row);
    int64_t zlo = offw < 0 ? 0 : W - offw, zhi = offw < 0 ? -offw : W; /* columns to zero */
    zlo = zlo < 0 ? 0 : zlo;
    zhi = zhi > W ? W : zhi;
    int64_t r0 = oh0 > p0 / W ? oh0 : p0 / W, r1 = oh1 < (p1 + W - 1) / W ? oh1 : (p1 + W - 1) / W;
    for (int64_t oh = r0; offw != 0 && oh < r1; oh++) {
        int64_t c0 = clamp64(oh * W + zlo, p0, p1), c1 = clamp64(oh * W + zhi, p0, p1);
        for (int64_t i = c0; i < c1; i++)
            row[i] = 0.0f;
    }
}

bool cd_im2col_2d_shifted(const cd_win_geom *g)
{
    return g->s[0] == 1 && g->s[1] == 1 && g->out[1] == g->in[1] && g->k[2] == 1 &&
           g->in[2] == 1;
}

/* Columns [p0, p1) of the shifted-plane im2col matrix with rows ld apart. */
static void im2col_shifted(const float *img, int64_t channels, const cd_win_geom *g, float *col,
                           int64_t ld, int64_t p0, int64_t p1)
{
    int64_t H = g->in[0], W = g->in[1], KH = g->k[0], KW = g->k[1];
    for (int64_t c = 0; c < channels; c++)
        for (int64_t kh = 0; kh < KH; kh++)
            for (int64_t kw = 0; kw < KW; kw++)
                im2col_shift_row(img + c * H * W, g, kh * g->d[0] - g->pb[0],
                                 kw * g->d[1] - g->pb[1], col + ((c * KH + kh) * KW + kw) * ld,
                                 p0, p1);
}

void cd_im2col_2d_cols(const float *img, int64_t channels, const cd_win_geom *g, float *col,
                       int64_t p0, int64_t p1)
{
    im2col_shifted(img, channels, g, col, g->out[0] * g->out[1], p0, p1);
}

void cd_im2col_2d(const float *img, int64_t channels, const cd_win_geom *g, float *col)
{
    cd_im2col_2d_ld(img, channels, g, col, g->out[0] * g->out[1]);
}

void cd_im2col_2d_ld(const float *img, int64_t channels, const cd_win_geom *g, float *col,
                     int64_t ld)
{
    int64_t H = g->in[0], W = g->in[1], OH = g->out[0], OW = g->out[1];
    int64_t KH = g->k[0], KW = g->k[1], s0 = g->s[0], s1 = g->s[1];
    if (s0 == 1 && s1 == 1 && OW == W) {
        im2col_shifted(img, channels, g, col, ld, 0, OH * OW);
        return;
    }
    for (int64_t c = 0; c < channels; c++)
        for (int64_t kh = 0; kh < KH; kh++)
            for (int64_t kw = 0; kw < KW; kw++) {
                float *row = col + ((c * KH + kh) * KW + kw) * ld;
                int64_t offw = kw * g->d[1] - g->pb[1], ow0, ow1;
                valid_range(offw, s1, W, OW, &ow0, &ow1);
                for (int64_t oh = 0; oh < OH; oh++) {
                    float *dst = row + oh * OW;
                    int64_t ih = oh * s0 - g->pb[0] + kh * g->d[0];
                    if (ih < 0 || ih >= H) {
                        memset(dst, 0, (size_t)OW * sizeof *dst);
                        continue;
                    }
                    const float *src = img + (c * H + ih) * W + offw;
                    for (int64_t ow = 0; ow < ow0; ow++)
                        dst[ow] = 0.0f;
                    if (s1 == 1)
                        memcpy(dst + ow0, src + ow0, (size_t)(ow1 - ow0) * sizeof *dst);
                    else if (s1 == 2) /* a constant stride lets GCC vectorise the gather */
                        for (int64_t ow = ow0; ow < ow1; ow++)
                            dst[ow] = src[ow * 2];
                    else
                        for (int64_t ow = ow0; ow < ow1; ow++)
                            dst[ow] = src[ow * s1];
                    for (int64_t ow = ow1; ow < OW; ow++)
                        dst[ow] = 0.0f;
                }
            }
}

void cd_col2im_2d_add(const float *col, int64_t channels, const cd_win_geom *g, float *img)
{
    int64_t H = g->in[0], W = g->in[1], OH = g->out[0], OW = g->out[1];
    int64_t KH = g->k[0], KW = g->k[1], s0 = g->s[0], s1 = g->s[1];
    for (int64_t c = 0; c < channels; c++)
        for (int64_t kh = 0; kh < KH; kh++)
            for (int64_t kw = 0; kw < KW; kw++) {
                const float *row = col + ((c * KH + kh) * KW + kw) * OH * OW;
                int64_t offw = kw * g->d[1] - g->pb[1], ow0, ow1;
                valid_range(offw, s1, W, OW, &ow0, &ow1);
                for (int64_t oh = 0; oh < OH; oh++) {
                    int64_t ih = oh * s0 - g->pb[0] + kh * g->d[0];
                    if (ih < 0 || ih >= H)
                        continue;
                    const float *src = row + oh * OW;
                    float *dst = img + (c * H + ih) * W + offw;
                    for (int64_t ow = ow0; ow < ow1; ow++)
                        dst[ow * s1] += src[ow];
                }
            }
}

/* MaxPool's fold step: v replaces the running max when greater or NaN (NaN
 * propagates, as in the reference MaxPool; ties keep the earlier value). */
static inline float max_fold(float y, float v)
{
    /* written so that GCC emits maxss and a rarely taken NaN test instead of
     * an unpredictable branch on the comparison */
    float m = v > y ? v : y;
    return v != v ? v : m;
}

typedef int32_t mp_v8i __attribute__((vector_size(32)));

/* max_fold on 8 lanes (a bitwise select, so no C++-only vector ?:). */
static inline void max_fold8(dw_v8 *y, const dw_v8 *v)
{
    mp_v8i m = (*v > *y) | (*v != *v), yi, vi;
    memcpy(&yi, y, sizeof yi);
    memcpy(&vi, v, sizeof vi);
    yi = (vi & m) | (yi & ~m);
    memcpy(y, &yi, sizeof yi);
}

/* Columns x[0], x[S], ..., x[7S] as a vector (S = 1 or 2); reads x[0..7S]
 * only (the stride-2 pair of loads overlaps by one float). */
static inline void mp_load(dw_v8 *v, const float *x, int64_t s)
{
    if (s == 1) {
        memcpy(v, x, sizeof *v);
        return;
    }
    dw_v8 a, b;
    memcpy(&a, x, sizeof a);
    memcpy(&b, x + 7, sizeof b);
    *v = __builtin_shufflevector(a, b, 0, 2, 4, 6, 9, 11, 13, 15);
}

/* One output of the window at (oh, ow) over its in-range taps. */
static float maxpool_one(const float *xp, const cd_win_geom *g, int64_t oh, int64_t ow)
{
    float acc = -INFINITY;
    for (int64_t kh = 0; kh < g->k[0]; kh++) {
        int64_t ih = oh * g->s[0] + kh * g->d[0] - g->pb[0];
        if (ih < 0 || ih >= g->in[0])
            continue;
        float h = -INFINITY;
        for (int64_t kw = 0; kw < g->k[1]; kw++) {
            int64_t iw = ow * g->s[1] + kw * g->d[1] - g->pb[1];
            if (iw >= 0 && iw < g->in[1])
                h = max_fold(h, xp[ih * g->in[1] + iw]);
        }
        acc = max_fold(acc, h);
    }
    return acc;
}

/* Output columns [*a, *b) all of whose taps lie inside the row. */
static void maxpool_inner_cols(const cd_win_geom *g, int64_t *a, int64_t *b)
{
    int64_t s = g->s[1], pb = g->pb[1], last = (g->k[1] - 1) * g->d[1];
    *a = (pb + s - 1) / s; /* first ow with ow*s - pb >= 0 */
    if (*a > g->out[1]) /* a begin pad wider than the whole output row */
        *a = g->out[1];
    int64_t lim = g->in[1] + pb - last; /* ow * s < lim: last tap inside */
    *b = lim <= 0 ? 0 : (lim - 1) / s + 1;
    if (*b > g->out[1])
        *b = g->out[1];
    if (*b < *a)
        *b = *a;
}

/* Stride-1/2 rows: each output row in 8-wide chunks, the taps of each input
 * row folded first and the rows then folded in order. That is the reference's
 * row-major order of the in-range taps, so the bits are the same (NaN and
 * signed zeros included). Edge columns with out-of-row taps take the scalar
 * path; the last chunk is moved back to end at b (recomputing a few outputs
 * of the previous one) so no column between a and b is left to it. */
static void maxpool_plane_rows(const float *xp, float *yp, const cd_win_geom *g, int64_t a,
                               int64_t b)
{
    int64_t W = g->in[1], OW = g->out[1], s1 = g->s[1];
    for (int64_t oh = 0; oh < g->out[0]; oh++) {
        float *yr = yp + oh * OW;
        int64_t ow = 0;
        for (; ow < a; ow++)
            yr[ow] = maxpool_one(xp, g, oh, ow);
        for (int64_t c = a; b - a >= 8 && c < b; c += 8) {
            ow = c + 8 <= b ? c : b - 8;
            dw_v8 acc = {-INFINITY, -INFINITY, -INFINITY, -INFINITY,
                         -INFINITY, -INFINITY, -INFINITY, -INFINITY};
            for (int64_t kh = 0; kh < g->k[0]; kh++) {
                int64_t ih = oh * g->s[0] + kh * g->d[0] - g->pb[0];
                if (ih < 0 || ih >= g->in[0])
                    continue;
                const float *xr = xp + ih * W + ow * s1 - g->pb[1];
                dw_v8 h, v;
                mp_load(&h, xr, s1);
                for (int64_t kw = 1; kw < g->k[1]; kw++) {
                    mp_load(&v, xr + kw * g->d[1], s1);
                    max_fold8(&h, &v);
                }
                max_fold8(&acc, &h);
            }
            memcpy(yr + ow, &acc, sizeof acc);
        }
        for (ow = b - a >= 8 ? b : a; ow < OW; ow++)
            yr[ow] = maxpool_one(xp, g, oh, ow);
    }
}

#if defined(__AVX512F__)
/* The same rows 16 wide where a row has at least 16 inner columns: x86's
 * max (v > acc ? v : acc, acc when either is NaN) and then v itself where v
 * is NaN is max_fold exactly, in two instructions and a blend instead of the
 * generic mask arithmetic. Stride 2 takes x[0..15] and x[15..30] (31 floats,
 * nothing past the chunk's last tap) and one permute. */
static inline __m512 mp_load16(const float *x, int64_t s)
{
    if (s == 1)
        return _mm512_loadu_ps(x);
    const __m512i idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 17, 19, 21, 23, 25, 27,
                                          29, 31);
    return _mm512_permutex2var_ps(_mm512_loadu_ps(x), idx, _mm512_loadu_ps(x + 15));
}

static inline __m512 max_fold16(__m512 acc, __m512 v)
{
    return _mm512_mask_mov_ps(_mm512_max_ps(v, acc), _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), v);
}

static void maxpool_plane_rows16(const float *xp, float *yp, const cd_win_geom *g, int64_t a,
                                 int64_t b)
{
    int64_t W = g->in[1], OW = g->out[1], s1 = g->s[1];
    for (int64_t oh = 0; oh < g->out[0]; oh++) {
        float *yr = yp + oh * OW;
        for (int64_t ow = 0; ow < a; ow++)
            yr[ow] = maxpool_one(xp, g, oh, ow);
        for (int64_t c = a; c < b; c += 16) {
            int64_t ow = c + 16 <= b ? c : b - 16;
            __m512 acc = _mm512_set1_ps(-INFINITY);
            for (int64_t kh = 0; kh < g->k[0]; kh++) {
                int64_t ih = oh * g->s[0] + kh * g->d[0] - g->pb[0];
                if (ih < 0 || ih >= g->in[0])
                    continue;
                const float *xr = xp + ih * W + ow * s1 - g->pb[1];
                __m512 h = mp_load16(xr, s1);
                for (int64_t kw = 1; kw < g->k[1]; kw++)
                    h = max_fold16(h, mp_load16(xr + kw * g->d[1], s1));
                acc = max_fold16(acc, h);
            }
            _mm512_storeu_ps(yr + ow, acc);
        }
        for (int64_t ow = b; ow < OW; ow++)
            yr[ow] = maxpool_one(xp, g, oh, ow);
    }
}
#endif

/* The generic order: tap by tap over whole planes (any stride). */
static void maxpool_plane_any(const float *xp, float *yp, const cd_win_geom *g)
{
    int64_t H = g->in[0], W = g->in[1], OH = g->out[0], OW = g->out[1];
    for (int64_t i = 0; i < OH * OW; i++)
        yp[i] = -INFINITY;
    for (int64_t kh = 0; kh < g->k[0]; kh++) {
        int64_t oh0, oh1;
        valid_range(kh * g->d[0] - g->pb[0], g->s[0], H, OH, &oh0, &oh1);
        for (int64_t kw = 0; kw < g->k[1]; kw++) {
            int64_t offw = kw * g->d[1] - g->pb[1], ow0, ow1;
            valid_range(offw, g->s[1], W, OW, &ow0, &ow1);
            for (int64_t oh = oh0; oh < oh1; oh++) {
                const float *xr = xp + (oh * g->s[0] + kh * g->d[0] - g->pb[0]) * W + offw;
                float *yr = yp + oh * OW;
                for (int64_t ow = ow0; ow < ow1; ow++)
                    yr[ow] = max_fold(yr[ow], xr[ow * g->s[1]]);
            }
        }
    }
}

void cd_maxpool_2d(const float *x, float *y, int64_t planes, const cd_win_geom *g)
{
    int64_t in = g->in[0] * g->in[1], out = g->out[0] * g->out[1], a, b;
    maxpool_inner_cols(g, &a, &b);
    for (int64_t p = 0; p < planes; p++) {
#if defined(__AVX512F__)
        if (g->s[1] <= 2 && g->k[1] >= 1 && b - a >= 16)
            maxpool_plane_rows16(x + p * in, y + p * out, g, a, b);
        else
#endif
        if (g->s[1] <= 2 && g->k[1] >= 1)
            maxpool_plane_rows(x + p * in, y + p * out, g, a, b);
        else
            maxpool_plane_any(x + p * in, y + p * out, g);
    }
}
