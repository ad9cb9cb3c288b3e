/* Winograd F(4x4, 3x3) and F(2x2, 3x3), cache-blocked (cd_wino4_* in
 * conv_fast.h; p->m is the output tile size).
 *
 * Every m x m output tile is A^T [(G g G^T) .* (B^T d B)] A for the
 * (m+2) x (m+2) input tile d (Lavin & Gray 2015; interpolation points 0, 1,
 * -1, 2, -2, inf for m = 4, 0, 1, -1, inf for m = 2), so the 9 multiplies
 * per output of a 3x3 window become 36 per 16 outputs (4x fewer) or 16 per 4
 * (2.25x fewer). Across channels the element-wise product is, for each of
 * the (m+2)^2 tile positions xi, a matrix product M[xi] (maps x tiles) =
 * U[xi] (maps x channels) V[xi] (channels x tiles).
 *
 * Why blocked: an earlier F(2,3) transformed the whole layer, wrote and
 * re-read 16x the tile count per channel through memory and handed 16
 * products to OpenBLAS, which re-packed U every call; it lost to im2col.
 * Here the weights are transformed once at plan time straight into the panel
 * layout the micro-kernel reads ([xi][32-map panel][channel][32]), and the
 * work is cut into (tile block, map block) items. One item transforms its
 * input tiles into a private V block that stays in cache (or, with several
 * map blocks, reads the V its tile block got in a first, shared phase), runs
 * the products with the micro-kernel below, and transforms its outputs back
 * into y, applying the epilogue while they are hot.
 *
 * Determinism: items are cut from the shape only, each output value is
 * written by exactly one item, and each sum over channels runs inside one
 * micro-kernel call in a fixed order, so any thread count gives the same
 * bits. Threads pull items from a shared counter (dynamic balance); the
 * thread only decides which scratch slot holds an item's blocks. */
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "../parallel.h"
#include "conv_fast.h"

#define W4_MR 32  /* maps per weight panel: two 16-float vectors */
#define W4_NR 12  /* tiles per micro-kernel call */
#define W4_VL 16  /* floats per vector */

typedef float w4_v16 __attribute__((vector_size(64)));

/* Builds are -std=c11 (no FMA contraction), so the fused multiply-add is
 * spelled out where AVX-512 exists; elsewhere it is a multiply and an add. */
#if defined(__AVX512F__)
#define W4_FMA(acc, a, b) ((acc) = _mm512_fmadd_ps((a), (b), (acc)))
#define W4_SPLAT(s) _mm512_set1_ps(s)
#else
#define W4_FMA(acc, a, b) ((acc) += (a) * (b))
#define W4_SPLAT(s) ((w4_v16){0} + (s))
#endif

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

void cd_wino4_plan_init(cd_wino4_plan *p, int64_t batch, int64_t channels, int64_t maps,
                        const cd_win_geom *g, int tile)
{
    memset(p, 0, sizeof *p);
    p->g = *g;
    p->m = tile == 2 ? 2 : 4;
    p->pos = (p->m + 2) * (p->m + 2);
    p->batch = batch;
    p->channels = channels;
    p->maps = maps;
    p->maps_padded = cdiv(maps, W4_MR) * W4_MR;
    p->th = cdiv(g->out[0], p->m);
    p->tw = cdiv(g->out[1], p->m);
    p->tiles = batch * p->th * p->tw;
    /* A tile block's V[xi] (channels x tiles) should stay in L1 while every
     * weight panel streams past it: about 16 KiB, 12..64 tiles. */
    int64_t tb_max = 4096 / (channels > 0 ? channels : 1);
    tb_max = tb_max < W4_NR ? W4_NR : tb_max > 64 ? 64 : tb_max;
    int64_t nb = cdiv(p->tiles, tb_max), nk = 1, panels = p->maps_padded / W4_MR;
    /* At least 16 items when the layer allows it so two or more threads stay
     * balanced: first split the maps into blocks of >= 64 (they share one
     * input transform, see shared_input), then shrink tile blocks down to 8
     * tiles (each tile block streams all transformed weights once more).
     * Measured: single-panel map blocks with larger tile blocks were slower
     * on resnet18's 14x14 layers. */
    while (nb * nk < 16) {
        if (panels % (2 * nk) == 0 && panels / (2 * nk) >= 2)
            nk *= 2;
        else if (cdiv(p->tiles, nb + 1) >= 8)
            nb++;
        else
            break;
    }
    int64_t tb = cdiv(p->tiles, nb);
    /* Whole tile rows when they come close (fewer, longer runs for the
     * input transform), else whole micro-kernel groups of 4. */
    if (p->tw <= tb + tb / 2) /* round to the nearest whole rows */
        tb = (tb + p->tw / 2) / p->tw > 0 ? (tb + p->tw / 2) / p->tw * p->tw : p->tw;
    else
        tb = cdiv(tb, 4) * 4;
    p->tile_block = tb;
    p->n_tile_blocks = cdiv(p->tiles, tb);
    p->map_block = p->maps_padded / nk;
    p->n_map_blocks = nk;
    /* With several map blocks, each would transform the same input tiles:
     * transform every tile block once first, in channel chunks (about 16
     * units), into a V shared by the map blocks. */
    p->shared_input = nk > 1;
    int64_t cc = cdiv(channels, cdiv(16, p->n_tile_blocks));
    p->channel_chunk = cc > 0 ? cc : 1;
    p->n_channel_chunks = cdiv(channels, p->channel_chunk);
}

/* Floats of the row buffers of w4_input_row / w2_input_row for runs of up
 * to tw tiles: m + 2 contiguous input rows and their vertical transform
 * (m (tw + 1) columns rounded up to 64), the phase-split copy of the latter
 * (rounded up to whole vectors) and slack for the last vector reads. */
static size_t w4_row_floats(const cd_wino4_plan *p)
{
    size_t n = (size_t)(p->m + 2), w = (size_t)(p->m * (p->tw + 1));
    return 2 * n * (size_t)(cdiv((int64_t)w, 64) * 64) +
           n * (size_t)(cdiv((int64_t)w, W4_VL) * W4_VL) + 2 * W4_VL;
}

size_t cd_wino4_weight_floats(const cd_wino4_plan *p)
{
    return (size_t)p->pos * (size_t)p->maps_padded * (size_t)p->channels;
}

/* One worker's blocks: V (unused with shared_input), M, row buffers, one
 * output tile. */
static size_t w4_slot_floats(const cd_wino4_plan *p)
{
    size_t tb = (size_t)p->tile_block;
    return (size_t)p->pos * ((size_t)p->channels * tb + W4_VL) +
           (size_t)p->pos * tb * (size_t)p->map_block + w4_row_floats(p) + W4_VL * W4_VL;
}

size_t cd_wino4_scratch_floats(const cd_wino4_plan *p, int workers)
{
    size_t v = (size_t)p->pos * ((size_t)p->channels * (size_t)p->tile_block + W4_VL);
    return (size_t)(workers > 1 ? workers : 1) * w4_slot_floats(p) +
           (p->shared_input ? (size_t)p->n_tile_blocks * v : 0);
}

/* U = G g G^T, computed in double, with G for F(4x4, 3x3) = [1/4 0 0;
 * -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1] and
 * for F(2x2, 3x3) = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1], packed as
 * u[((xi * panels + k / 32) * channels + c) * 32 + k % 32], zero for the
 * padding maps. The 32 maps of a panel are transformed side by side (loops
 * over them vectorise, and every store run is contiguous): this runs at
 * plan time, and per-map scalar code made it a third of a one-shot
 * resnet18 `candor run`. */
void cd_wino4_weights(const cd_wino4_plan *p, const float *w, float *u)
{
    static const double G4[6][3] = {{0.25, 0, 0},
                                    {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                    {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                    {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                    {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                    {0, 0, 1}};
    static const double G2[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
    const double(*G)[3] = p->m == 2 ? G2 : G4;
    int n = p->m + 2;
    int64_t C = p->channels, panels = p->maps_padded / W4_MR;
    for (int64_t pi = 0; pi < panels; pi++)
        for (int64_t c = 0; c < C; c++) {
            double g[9][W4_MR], t[6][3][W4_MR];
            for (int kk = 0; kk < W4_MR; kk++) {
                int64_t k = pi * W4_MR + kk;
                for (int e = 0; e < 9; e++)
                    g[e][kk] = k < p->maps ? w[(k * C + c) * 9 + e] : 0.0;
            }
            for (int a = 0; a < n; a++)
                for (int j = 0; j < 3; j++)
                    for (int kk = 0; kk < W4_MR; kk++)
                        t[a][j][kk] = G[a][0] * g[j][kk] + G[a][1] * g[3 + j][kk] +
                                      G[a][2] * g[6 + j][kk];
            for (int a = 0; a < n; a++)
                for (int b = 0; b < n; b++) {
                    float *dst = u + ((size_t)((a * n + b) * panels + pi) * (size_t)C +
                                      (size_t)c) * W4_MR;
                    for (int kk = 0; kk < W4_MR; kk++)
                        dst[kk] = (float)(t[a][0][kk] * G[b][0] + t[a][1][kk] * G[b][1] +
                                          t[a][2][kk] * G[b][2]);
                }
        }
}

/* Input transform ----------------------------------------------------------- */

static inline void w4_ld(w4_v16 *d, const float *s) { memcpy(d, s, sizeof *d); }

/* Stores the first n (1..16) lanes of v (a variable-length memcpy became
 * `rep movs`, whose start-up cost dominated the transform). */
static inline void w4_st(float *d, const w4_v16 *v, int64_t n)
{
    if (n == W4_VL) {
        memcpy(d, v, sizeof *v);
        return;
    }
#if defined(__AVX512F__)
    _mm512_mask_storeu_ps(d, (__mmask16)((1u << n) - 1), *v);
#else
    for (int64_t i = 0; i < n; i++)
        d[i] = (*v)[i];
#endif
}

/* Rows y0 .. y0+nrows-1 of plane xc (H x W), columns x0 .. x0+cw-1, into
 * R (row r at R + r * cw), zero outside the plane: the input rows of one
 * tile row, so both transform passes run over plain contiguous rows. */
static inline void win_load_rows(const float *restrict xc, int64_t H, int64_t W, int64_t y0,
                                 int64_t x0, int nrows, int64_t cw, float *restrict R)
{
    int64_t lo = x0 < 0 ? -x0 : 0, hi = W - x0 < cw ? W - x0 : cw; /* in-range columns */
    hi = hi < lo ? lo : hi;
    for (int r = 0; r < nrows; r++) {
        int64_t yy = y0 + r;
        float *row = R + r * cw;
        if (yy < 0 || yy >= H) {
            memset(row, 0, (size_t)cw * sizeof *row);
            continue;
        }
        memset(row, 0, (size_t)lo * sizeof *row);
        memcpy(row + lo, xc + yy * W + x0 + lo, (size_t)(hi - lo) * sizeof *row);
        memset(row + hi, 0, (size_t)(cw - hi) * sizeof *row);
    }
}

/* t = B^T d for F(4x4, 3x3), lane-wise: both passes of w4_input_row. */
static inline __attribute__((always_inline)) void w4_bt(const w4_v16 d[6], w4_v16 t[6])
{
    t[0] = 4.0f * d[0] - 5.0f * d[2] + d[4];
    t[1] = d[3] + d[4] - 4.0f * (d[1] + d[2]);
    t[2] = d[4] - d[3] + 4.0f * (d[1] - d[2]);
    t[3] = d[4] - d[2] + 2.0f * (d[3] - d[1]);
    t[4] = d[4] - d[2] + 2.0f * (d[1] - d[3]);
    t[5] = 4.0f * d[1] - 5.0f * d[3] + d[5];
}

/* t = B^T d for F(2x2, 3x3): both passes of w2_input_row. */
static inline __attribute__((always_inline)) void w2_bt(const w4_v16 d[4], w4_v16 t[4])
{
    t[0] = d[0] - d[2];
    t[1] = d[1] + d[2];
    t[2] = d[2] - d[1];
    t[3] = d[1] - d[3];
}

/* Splits n entries of four column phases out of src (4n floats, readable
 * in whole 64-float chunks): dst[s * ld + j] = src[4j + s]. Stores whole
 * vectors: up to 15 floats past an entry run are clobbered, which lands in
 * the next phase (written after it) or in the caller's padding. */
static void w4_deinterleave(const float *restrict src, int64_t n, float *restrict dst, int64_t ld)
{
#if defined(__AVX512F__)
    for (int ph = 0; ph < 4; ph++) {
        /* lanes 0..7 gather entries 4i + ph of a pair of vectors */
        __m512i idx = _mm512_set_epi32(28 + ph, 24 + ph, 20 + ph, 16 + ph, 12 + ph, 8 + ph,
                                       4 + ph, ph, 28 + ph, 24 + ph, 20 + ph, 16 + ph,
                                       12 + ph, 8 + ph, 4 + ph, ph);
        for (int64_t j = 0; j < n; j += W4_VL) {
            const float *sj = src + 4 * j;
            __m512 lo = _mm512_permutex2var_ps(_mm512_loadu_ps(sj), idx, _mm512_loadu_ps(sj + 16));
            __m512 hi = _mm512_permutex2var_ps(_mm512_loadu_ps(sj + 32), idx,
                                               _mm512_loadu_ps(sj + 48));
            _mm512_storeu_ps(dst + ph * ld + j, _mm512_shuffle_f32x4(lo, hi, 0x44));
        }
    }
#else
    for (int ph = 0; ph < 4; ph++)
        for (int64_t j = 0; j < n; j++)
            dst[ph * ld + j] = src[4 * j + ph];
#endif
}

/* Tiles tj .. tj+ns-1 of tile row ti of one channel plane xc into
 * v[xi * xs + j]. The six input rows are copied zero-padded and
 * contiguous, B^T's vertical pass runs over whole rows, and its result is
 * split into four column phases (phase s holds columns 4j + s), so the
 * horizontal pass also works on whole vectors over j: columns 4j+4 and
 * 4j+5 of tile j are phases 0 and 1 of entry j+1. GCC left the plain-C
 * passes scalar, hence the vector type. buf: w4_row_floats(>= ns) floats. */
static void w4_input_row(const cd_win_geom *g, const float *restrict xc, int64_t ti, int64_t tj,
                         int64_t ns, float *restrict v, size_t xs, bool exact,
                         float *restrict buf)
{
    int64_t H = g->in[0], W = g->in[1], L = ns + 1, n4 = 4 * L;
    int64_t cw = cdiv(n4, 64) * 64, rs = cdiv(n4, W4_VL) * W4_VL;
    float *R = buf, *T = R + 6 * cw, *Q = T + 6 * cw;
    win_load_rows(xc, H, W, 4 * ti - g->pb[0], 4 * tj - g->pb[1], 6, cw, R);
    /* Vertical pass: rows of B^T over the six input rows. */
    for (int64_t i = 0; i < cw; i += W4_VL) {
        w4_v16 d[6], t[6];
        for (int r = 0; r < 6; r++)
            w4_ld(&d[r], R + r * cw + i);
        w4_bt(d, t);
        for (int a = 0; a < 6; a++)
            memcpy(T + a * cw + i, &t[a], sizeof t[a]);
    }
    for (int a = 0; a < 6; a++)
        w4_deinterleave(T + a * cw, L, Q + a * rs, L);
    /* Horizontal pass: the same combinations across the six columns. The
     * last vector may read past the row into the next row or the slack, and
     * unless exact its store clobbers up to 15 floats after the run: those
     * belong to the next run or channel of the same xi row (transformed
     * later by the same thread, see w4_transform) or to the row's padding. */
    for (int a = 0; a < 6; a++) {
        const float *e = Q + a * rs;
        float *o = v + (size_t)(a * 6) * xs;
        for (int64_t j = 0; j < ns; j += W4_VL) {
            w4_v16 q[6], r[6];
            w4_ld(&q[0], e + j);
            w4_ld(&q[1], e + L + j);
            w4_ld(&q[2], e + 2 * L + j);
            w4_ld(&q[3], e + 3 * L + j);
            w4_ld(&q[4], e + j + 1);
            w4_ld(&q[5], e + L + j + 1);
            w4_bt(q, r);
            int64_t n = exact && ns - j < W4_VL ? ns - j : W4_VL;
            for (int b = 0; b < 6; b++)
                w4_st(o + (size_t)b * xs + j, &r[b], n);
        }
    }
}

/* F(2x2, 3x3): like w4_input_row with 4x4 input tiles at stride 2 and
 * B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]: two column phases, and
 * columns 2j+2, 2j+3 of tile j are phases 0 and 1 of entry j+1. */
static void w2_deinterleave(const float *restrict src, int64_t n, float *restrict dst, int64_t ld)
{
#if defined(__AVX512F__)
    for (int ph = 0; ph < 2; ph++) {
        __m512i idx = _mm512_set_epi32(30 + ph, 28 + ph, 26 + ph, 24 + ph, 22 + ph, 20 + ph,
                                       18 + ph, 16 + ph, 14 + ph, 12 + ph, 10 + ph, 8 + ph,
                                       6 + ph, 4 + ph, 2 + ph, ph);
        for (int64_t j = 0; j < n; j += W4_VL) {
            const float *sj = src + 2 * j;
            _mm512_storeu_ps(dst + ph * ld + j, _mm512_permutex2var_ps(_mm512_loadu_ps(sj), idx,
                                                                       _mm512_loadu_ps(sj + 16)));
        }
    }
#else
    for (int ph = 0; ph < 2; ph++)
        for (int64_t j = 0; j < n; j++)
            dst[ph * ld + j] = src[2 * j + ph];
#endif
}

static void w2_input_row(const cd_win_geom *g, const float *restrict xc, int64_t ti, int64_t tj,
                         int64_t ns, float *restrict v, size_t xs, bool exact,
                         float *restrict buf)
{
    int64_t H = g->in[0], W = g->in[1], L = ns + 1, n2 = 2 * L;
    int64_t cw = cdiv(n2, 64) * 64, rs = cdiv(n2, W4_VL) * W4_VL;
    float *R = buf, *T = R + 4 * cw, *Q = T + 4 * cw;
    win_load_rows(xc, H, W, 2 * ti - g->pb[0], 2 * tj - g->pb[1], 4, cw, R);
    for (int64_t i = 0; i < cw; i += W4_VL) {
        w4_v16 d[4], t[4];
        for (int r = 0; r < 4; r++)
            w4_ld(&d[r], R + r * cw + i);
        w2_bt(d, t);
        for (int a = 0; a < 4; a++)
            memcpy(T + a * cw + i, &t[a], sizeof t[a]);
    }
    for (int a = 0; a < 4; a++)
        w2_deinterleave(T + a * cw, L, Q + a * rs, L);
    for (int a = 0; a < 4; a++) {
        const float *e = Q + a * rs;
        float *o = v + (size_t)(a * 4) * xs;
        for (int64_t j = 0; j < ns; j += W4_VL) {
            w4_v16 q[4], r[4];
            w4_ld(&q[0], e + j);
            w4_ld(&q[1], e + L + j);
            w4_ld(&q[2], e + j + 1);
            w4_ld(&q[3], e + L + j + 1);
            w2_bt(q, r);
            int64_t n = exact && ns - j < W4_VL ? ns - j : W4_VL;
            for (int b = 0; b < 4; b++)
                w4_st(o + (size_t)b * xs + j, &r[b], n);
        }
    }
}

/* Calls fn for each run of tiles [t0, t1) that lies in one tile row. */
typedef struct w4_seg {
    int64_t n, ti, tj, ns, first; /* image, tile row, first tile column, count, index - t0 */
} w4_seg;

static int64_t w4_segments(const cd_wino4_plan *p, int64_t t0, int64_t t1, w4_seg *out,
                           int64_t cap)
{
    int64_t tpi = p->th * p->tw, count = 0;
    for (int64_t t = t0; t < t1 && count < cap;) {
        int64_t n = t / tpi, rem = t % tpi, ti = rem / p->tw, tj = rem % p->tw;
        int64_t ns = p->tw - tj < t1 - t ? p->tw - tj : t1 - t;
        out[count++] = (w4_seg){n, ti, tj, ns, t - t0};
        t += ns;
    }
    return count;
}

/* Micro-kernel ---------------------------------------------------------------- */

/* m[r][0..31] = sum_c u[c][0..31] * v[c][r] for r < nr: 32 maps (two
 * vectors) by nr tiles of accumulators, the tile values broadcast. nr is a
 * compile-time constant in every instance, so the accumulators stay in
 * registers. */
static inline __attribute__((always_inline)) void w4_micro(int nr, int64_t C, const float *u,
                                                           const float *v, int64_t ldv,
                                                           float *m, int64_t ldm)
{
    w4_v16 a0[W4_NR], a1[W4_NR];
    for (int r = 0; r < nr; r++)
        a0[r] = a1[r] = (w4_v16){0};
    for (int64_t c = 0; c < C; c++) {
        w4_v16 u0, u1;
        memcpy(&u0, u + c * W4_MR, sizeof u0);
        memcpy(&u1, u + c * W4_MR + W4_VL, sizeof u1);
        const float *vc = v + c * ldv;
        for (int r = 0; r < nr; r++) {
            w4_v16 b = W4_SPLAT(vc[r]);
            W4_FMA(a0[r], u0, b);
            W4_FMA(a1[r], u1, b);
        }
    }
    for (int r = 0; r < nr; r++) {
        memcpy(m + r * ldm, &a0[r], sizeof a0[r]);
        memcpy(m + r * ldm + W4_VL, &a1[r], sizeof a1[r]);
    }
}

typedef void (*w4_micro_fn)(int64_t C, const float *u, const float *v, int64_t ldv, float *m,
                            int64_t ldm);
#define W4_MICRO(N)                                                                         \
    static void w4_micro_##N(int64_t C, const float *u, const float *v, int64_t ldv,        \
                             float *m, int64_t ldm)                                         \
    {                                                                                       \
        w4_micro(N, C, u, v, ldv, m, ldm);                                                  \
    }
W4_MICRO(1)
W4_MICRO(2)
W4_MICRO(3)
W4_MICRO(4)
W4_MICRO(5)
W4_MICRO(6)
W4_MICRO(7)
W4_MICRO(8)
W4_MICRO(9)
W4_MICRO(10)
W4_MICRO(11)
W4_MICRO(12)
#undef W4_MICRO
static const w4_micro_fn w4_micros[W4_NR + 1] = {
    NULL,         w4_micro_1, w4_micro_2, w4_micro_3,  w4_micro_4,  w4_micro_5, w4_micro_6,
    w4_micro_7,   w4_micro_8, w4_micro_9, w4_micro_10, w4_micro_11, w4_micro_12};

/* Output transform ------------------------------------------------------------ */

/* r[0], r[rs], r[2rs], r[3rs] = A^T q for F(4x4, 3x3), lane-wise: both
 * passes of w4_output_tile (the first writes a column of its array). */
static inline __attribute__((always_inline)) void w4_at(const w4_v16 q[6], w4_v16 *r, int rs)
{
    w4_v16 p12 = q[1] + q[2], m12 = q[1] - q[2], p34 = q[3] + q[4], m34 = q[3] - q[4];
    r[0] = q[0] + p12 + p34;
    r[rs] = m12 + 2.0f * m34;
    r[2 * rs] = p12 + 4.0f * p34;
    r[3 * rs] = m12 + 8.0f * m34 + q[5];
}

/* o = A^T m A for 16 maps at once (vectors over maps): m[xi] at mt + xi * xs,
 * o[a*4+b][16] out, with A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0;
 * 0 1 -1 8 -8 1]. */
static void w4_output_tile(const float *mt, size_t xs, float *o)
{
    w4_v16 w[4][6];
    for (int s = 0; s < 6; s++) {
        w4_v16 q[6];
        for (int i = 0; i < 6; i++)
            memcpy(&q[i], mt + (size_t)(i * 6 + s) * xs, sizeof q[i]);
        w4_at(q, &w[0][s], 6);
    }
    for (int a = 0; a < 4; a++) {
        w4_v16 r[4];
        w4_at(w[a], r, 1);
        memcpy(o + (a * 4) * W4_VL, r, sizeof r);
    }
}

/* r[0], r[rs] = A^T q for F(2x2, 3x3): both passes of w2_output_tile. */
static inline __attribute__((always_inline)) void w2_at(const w4_v16 q[4], w4_v16 *r, int rs)
{
    r[0] = q[0] + q[1] + q[2];
    r[rs] = q[1] - q[2] - q[3];
}

/* F(2x2, 3x3): o = A^T m A with A^T = [1 1 1 0; 0 1 -1 -1], 16 maps at
 * once; o[a*2+b][16] out. */
static void w2_output_tile(const float *mt, size_t xs, float *o)
{
    w4_v16 w[2][4];
    for (int s = 0; s < 4; s++) {
        w4_v16 q[4];
        for (int i = 0; i < 4; i++)
            memcpy(&q[i], mt + (size_t)(i * 4 + s) * xs, sizeof q[i]);
        w2_at(q, &w[0][s], 4);
    }
    for (int a = 0; a < 2; a++) {
        w4_v16 r[2];
        w2_at(w[a], r, 1);
        memcpy(o + (a * 2) * W4_VL, r, sizeof r);
    }
}

/* o[16][16] transposed in place: after it, row l holds map l's 4x4 output
 * tile, so each output row is one short contiguous copy instead of 16
 * scalar stores per map and tile. With AVX-512: four rounds of two-source
 * permutes swapping the off-diagonal blocks of 8, 4, 2, 1. */
static void w4_transpose16(float *o)
{
#if defined(__AVX512F__)
    /* Round q swaps blocks of b = 8 >> q: rows i and i + b (i & b == 0)
     * become lo: i's first, (i + b)'s first, ...; hi: the second halves. */
    static const int32_t perm[4][2][W4_VL] = {
        {{0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23},
         {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31}},
        {{0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27},
         {4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31}},
        {{0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29},
         {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31}},
        {{0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30},
         {1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31}}};
    __m512 r[W4_VL];
    for (int i = 0; i < W4_VL; i++)
        r[i] = _mm512_loadu_ps(o + i * W4_VL);
    for (int q = 0; q < 4; q++) {
        int b = 8 >> q;
        __m512i ml = _mm512_loadu_si512(perm[q][0]), mh = _mm512_loadu_si512(perm[q][1]);
        for (int i = 0; i < W4_VL; i++)
            if ((i & b) == 0) {
                __m512 a = r[i], c = r[i + b];
                r[i] = _mm512_permutex2var_ps(a, ml, c);
                r[i + b] = _mm512_permutex2var_ps(a, mh, c);
            }
    }
    for (int i = 0; i < W4_VL; i++)
        _mm512_storeu_ps(o + i * W4_VL, r[i]);
#else
    for (int i = 0; i < W4_VL; i++)
        for (int c = i + 1; c < W4_VL; c++) {
            float t = o[i * W4_VL + c];
            o[i * W4_VL + c] = o[c * W4_VL + i];
            o[c * W4_VL + i] = t;
        }
#endif
}

/* Work items ------------------------------------------------------------------ */

#define W4_MAX_SEGS 80 /* a tile block (<= 64 tiles) spans at most 65 tile rows */

typedef struct w4_job {
    const cd_wino4_plan *p;
    const float *u, *x, *bias, *res;
    const cd_epilogue *ep;
    float *y, *scratch, *shared; /* shared: V of every tile block (shared_input) */
    size_t slot;
    int phase; /* 0: shared input transform units, 1: (tile block, map block) items */
    int64_t items;
    atomic_llong next;
} w4_job;

/* Tile range of tile block bt. */
static void w4_block(const cd_wino4_plan *p, int64_t bt, int64_t *t0, int64_t *t1)
{
    *t0 = bt * p->tile_block;
    *t1 = *t0 + p->tile_block < p->tiles ? *t0 + p->tile_block : p->tiles;
}

/* Floats of one tile block's V: [xi][channels][tiles], each xi row followed
 * by one vector of padding (see w4_input_row). */
static size_t w4_v_xi(const cd_wino4_plan *p, int64_t nt)
{
    return (size_t)(p->channels * nt + W4_VL);
}

/* Channels c0..c1-1 of tile block t0..t1 into v (V of the block). Channels,
 * then runs, in increasing order: unless exact, each run's stores may
 * clobber the start of the next run or channel, which come later. */
static void w4_transform(const w4_job *j, int64_t t0, int64_t t1, int64_t c0, int64_t c1,
                         float *v, bool exact, float *buf)
{
    const cd_wino4_plan *p = j->p;
    const cd_win_geom *g = &p->g;
    int64_t C = p->channels, nt = t1 - t0, plane = g->in[0] * g->in[1];
    w4_seg seg[W4_MAX_SEGS];
    int64_t nseg = w4_segments(p, t0, t1, seg, W4_MAX_SEGS);
    for (int64_t c = c0; c < c1; c++)
        for (int64_t i = 0; i < nseg; i++) {
            const w4_seg *sg = &seg[i];
            (p->m == 2 ? w2_input_row : w4_input_row)(g, j->x + (sg->n * C + c) * plane,
                                                      sg->ti, sg->tj, sg->ns,
                                                      v + c * nt + sg->first,
                                                      w4_v_xi(p, nt), exact, buf);
        }
}

/* The row buffers in worker slot s: after its V and M blocks. */
static float *w4_slot_rows(const cd_wino4_plan *p, float *s)
{
    return s + (size_t)p->pos * w4_v_xi(p, p->tile_block) +
           (size_t)p->pos * (size_t)(p->tile_block * p->map_block);
}

/* Shared input transform: unit = (tile block, channel chunk). Chunks run on
 * different threads, so their stores are exact. */
static void w4_unit(const w4_job *j, int64_t unit, float *s)
{
    const cd_wino4_plan *p = j->p;
    int64_t bt = unit / p->n_channel_chunks, ch = unit % p->n_channel_chunks, t0, t1;
    int64_t c0 = ch * p->channel_chunk;
    int64_t c1 = c0 + p->channel_chunk < p->channels ? c0 + p->channel_chunk : p->channels;
    w4_block(p, bt, &t0, &t1);
    float *v = j->shared + (size_t)bt * (size_t)p->pos * w4_v_xi(p, p->tile_block);
    w4_transform(j, t0, t1, c0, c1, v, true, w4_slot_rows(p, s));
}

/* The epilogue fused into the output tiles (no residual; bias and/or ReLU
 * or Clip): applied to the 16-map vectors of a tile before they are stored,
 * with cd_epilogue_apply's arithmetic per value (v = y + b with b = 0
 * without a bias, then v > 0 ? v : 0 or the clamp v < lo ? lo : v,
 * v > hi ? hi : v), so the bits are those of the separate pass it replaces.
 * Vector comparisons give all-ones lane masks; GCC's C has no vector ?:. */
typedef int32_t w4_i16 __attribute__((vector_size(64)));

typedef struct w4_epi {
    bool on;      /* fused here; else the segment pass (or nothing) */
    cd_act act;   /* CD_ACT_NONE, CD_ACT_RELU or CD_ACT_CLIP */
    float lo, hi; /* Clip bounds */
} w4_epi;

static w4_epi w4_epi_make(const w4_job *j)
{
    cd_act act = j->ep ? j->ep->act : CD_ACT_NONE;
    w4_epi e = {false, act, 0.0f, 0.0f};
    if (j->res || (act == CD_ACT_NONE && !j->bias))
        return e; /* a residual: the segment pass; nothing: nothing at all */
    if (act == CD_ACT_CLIP)
        e.lo = j->ep->lo, e.hi = j->ep->hi;
    e.on = act == CD_ACT_NONE || act == CD_ACT_RELU || act == CD_ACT_CLIP;
    return e;
}

/* m ? a : b per lane, into *v. Vectors go by pointer: by value they would
 * change the ABI in builds without AVX-512 (GCC's -Wpsabi). */
static inline void w4_select(w4_v16 *v, w4_i16 m, const w4_v16 *a, const w4_v16 *b)
{
    *v = (w4_v16)((m & (w4_i16)*a) | (~m & (w4_i16)*b));
}

/* o[0..npos) (16 maps each) += b, then the activation. */
static void w4_epi_apply(const w4_epi *e, float *o, int npos, const w4_v16 *b)
{
    w4_v16 z = {0}, lo = e->lo - z, hi = e->hi - z; /* x - 0 == x: broadcasts */
    for (int i = 0; i < npos; i++) {
        w4_v16 v;
        memcpy(&v, o + i * W4_VL, sizeof v);
        v = v + *b;
        if (e->act == CD_ACT_RELU) {
            w4_select(&v, v > z, &v, &z);
        } else if (e->act == CD_ACT_CLIP) {
            w4_select(&v, v < lo, &lo, &v);
            w4_select(&v, v > hi, &hi, &v);
        }
        memcpy(o + i * W4_VL, &v, sizeof v);
    }
}

static void w4_item(const w4_job *j, int64_t item, float *s)
{
    const cd_wino4_plan *p = j->p;
    const cd_win_geom *g = &p->g;
    int64_t C = p->channels, K = p->maps;
    int64_t OH = g->out[0], OW = g->out[1], osp = OH * OW;
    int64_t bt = item / p->n_map_blocks, bk = item % p->n_map_blocks, t0, t1;
    w4_block(p, bt, &t0, &t1);
    int64_t nt = t1 - t0, k0 = bk * p->map_block, kb = p->map_block;
    int64_t k1 = k0 + kb < K ? k0 + kb : K;
    size_t vxs = w4_v_xi(p, nt), mxs = (size_t)(nt * kb);
    float *v = s, *m = v + (size_t)p->pos * w4_v_xi(p, p->tile_block), *buf = w4_slot_rows(p, s);
    float *o = buf + w4_row_floats(p);
    w4_seg seg[W4_MAX_SEGS];
    int64_t nseg = w4_segments(p, t0, t1, seg, W4_MAX_SEGS);

    if (p->shared_input)
        v = j->shared + (size_t)bt * (size_t)p->pos * w4_v_xi(p, p->tile_block);
    else
        w4_transform(j, t0, t1, 0, C, v, false, buf);

    int64_t panels = kb / W4_MR;
    size_t ups = (size_t)(p->maps_padded / W4_MR) * (size_t)C * W4_MR; /* per xi */
    for (int xi = 0; xi < p->pos; xi++) {
        const float *vx = v + xi * vxs;
        for (int64_t pi = 0; pi < panels; pi++) {
            const float *up = j->u + (size_t)xi * ups + (size_t)(k0 / W4_MR + pi) * (size_t)C * W4_MR;
            float *mp = m + xi * mxs + pi * W4_MR;
            /* Equal calls (14 tiles: 7 + 7, not 12 + 2): a narrow call has too
             * few accumulators to hide the FMA latency. */
            for (int64_t r = 0, n; r < nt; r += n) {
                int64_t calls = cdiv(nt - r, W4_NR);
                n = cdiv(nt - r, calls);
                w4_micros[n](C, up, vx + r, nt, mp + r * kb, kb);
            }
        }
    }

    int64_t mt = p->m;
    w4_epi epi = w4_epi_make(j);
    for (int64_t i = 0; i < nseg; i++) {
        const w4_seg *sg = &seg[i];
        int64_t rows = OH - mt * sg->ti < mt ? OH - mt * sg->ti : mt;
        for (int64_t jj = 0; jj < sg->ns; jj++) {
            int64_t tt = sg->first + jj, ox = mt * (sg->tj + jj);
            int64_t cols = OW - ox < mt ? OW - ox : mt;
            for (int64_t kg = k0; kg < k1; kg += W4_VL) {
                int64_t nl = k1 - kg < W4_VL ? k1 - kg : W4_VL;
                float *yk = j->y + (sg->n * K + kg) * osp + mt * sg->ti * OW + ox;
                w4_v16 bv = {0}; /* this group's biases (0 without: see w4_epi) */
                if (epi.on && j->bias)
                    memcpy(&bv, j->bias + kg, (size_t)nl * sizeof(float));
                if (mt == 2) {
                    w2_output_tile(m + tt * kb + (kg - k0), mxs, o);
                    if (epi.on)
                        w4_epi_apply(&epi, o, 4, &bv);
                    for (int64_t l = 0; l < nl; l++, yk += osp)
                        for (int64_t a = 0; a < rows; a++)
                            for (int64_t b = 0; b < cols; b++)
                                yk[a * OW + b] = o[(a * 2 + b) * W4_VL + l];
                    continue;
                }
                w4_output_tile(m + tt * kb + (kg - k0), mxs, o);
                if (epi.on)
                    w4_epi_apply(&epi, o, 16, &bv);
                w4_transpose16(o);
                for (int64_t l = 0; l < nl; l++, yk += osp)
                    for (int64_t a = 0; a < rows; a++) {
                        const float *src = o + l * W4_VL + a * 4;
                        if (cols == 4)
                            memcpy(yk + a * OW, src, 4 * sizeof *yk);
                        else
                            for (int64_t b = 0; b < cols; b++)
                                yk[a * OW + b] = src[b];
                    }
            }
        }
        /* Else the epilogue over this segment's output rows, still in cache. */
        if (epi.on)
            continue;
        int64_t ox = mt * sg->tj, len = OW - ox < mt * sg->ns ? OW - ox : mt * sg->ns;
        for (int64_t k = k0; k < k1; k++)
            for (int64_t a = 0; a < rows; a++) {
                int64_t off = (sg->n * K + k) * osp + (mt * sg->ti + a) * OW + ox;
                cd_epilogue_apply(j->ep, j->y + off, j->bias ? j->bias + k : NULL,
                                  j->res ? j->res + off : NULL, 1, len);
            }
    }
}

static void w4_worker(void *arg, int task)
{
    w4_job *j = arg;
    float *s = j->scratch + (size_t)task * j->slot;
    for (;;) {
        int64_t item = (int64_t)atomic_fetch_add(&j->next, 1);
        if (item >= j->items)
            break;
        if (j->phase == 0)
            w4_unit(j, item, s);
        else
            w4_item(j, item, s);
    }
}

static void w4_phase(struct cd_pool *pool, w4_job *j, int phase, int64_t items)
{
    j->phase = phase;
    j->items = items;
    atomic_store(&j->next, 0);
    int64_t workers = cd_pool_threads(pool);
    cd_pool_run(pool, (int)(workers < items ? workers : items), w4_worker, j);
}

void cd_wino4_run(struct cd_pool *pool, const cd_wino4_plan *p, const float *u, const float *x,
                  const float *bias, const float *res, const cd_epilogue *ep, float *y,
                  float *scratch)
{
    int workers = cd_pool_threads(pool);
    w4_job j = {p, u, x, bias, res, ep, y, scratch, NULL, w4_slot_floats(p), 0, 0, 0};
    j.shared = scratch + (size_t)workers * j.slot;
    atomic_init(&j.next, 0);
    if (p->shared_input)
        w4_phase(pool, &j, 0, p->n_tile_blocks * p->n_channel_chunks);
    w4_phase(pool, &j, 1, p->n_tile_blocks * p->n_map_blocks);
}
