/* Packed 1x1 convolution, stride 1, no padding, group 1 (cd_pack1x1_* in
 * conv_fast.h): y[m][p] = sum_c W[m][c] x[c][p] per image.
 *
 * Why not sgemm: mobilenet_v2's 1x1 layers are many small products (C, M
 * 16..1280, 7x7..112x112 pixels). Through OpenBLAS every call re-packed the
 * weights, packed the image, zeroed C (beta = 0) and ran the epilogue as a
 * later pass; those side passes took about a third of the products' time.
 * Here the weights are packed once at plan time into map groups of up to 12
 * maps, [group][channel][width], and the register-blocked micro-kernel below
 * holds 32 pixels (two 16-float vectors) by up to 12 maps of accumulators:
 * per channel it loads the 32 pixels, broadcasts each map's weight and does
 * 2 FMAs per map. Its rows are 32 consecutive pixels of one map, so it
 * writes straight into y (no zeroing, no transpose), and it reads whole
 * 32-pixel sub-blocks straight from the image (rows a plane apart): the only
 * copy is a plane's last partial sub-block, zero-filled. Small planes whose
 * pixel count wastes many lanes (7x7: 49 of 64) use maps mode instead:
 * 32-map weight panels in the lanes, up to 12 pixels broadcast, the result
 * stored transposed.
 *
 * Work items are (image, pixel block, map chunk), cut from the shape only;
 * each output value is one micro-kernel call summing all channels in order,
 * so any thread count gives the same bits. Threads pull items from a shared
 * counter; the thread decides only which scratch slot packs the block.
 *
 * Bias, residual and ReLU/Clip are applied to the accumulators before the
 * stores (p1_epi); other activations run as a pass over each block. */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "../parallel.h"
#include "conv_fast.h"

#define P1_NR 12 /* maps per micro-kernel call (broadcast operands) */
#define P1_VL 16 /* floats per vector */
#define P1_PX 32 /* pixels per sub-block: two vectors */

typedef float p1_v16 __attribute__((vector_size(64)));

/* Builds are -std=c11 (no FMA contraction): the fused multiply-add is
 * spelled out where AVX-512 exists; elsewhere a multiply and an add. */
#if defined(__AVX512F__)
#define P1_FMA(acc, a, b) ((acc) = _mm512_fmadd_ps((a), (b), (acc)))
#define P1_SPLAT(s) _mm512_set1_ps(s)
#else
#define P1_FMA(acc, a, b) ((acc) += (a) * (b))
#define P1_SPLAT(s) ((p1_v16){0} + (s))
#endif

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* First map of group g: widths differ by at most one (16 maps are 8 + 8,
 * not 12 + 4: a narrow call has too few accumulators to hide FMA latency). */
static int64_t p1_group_start(const cd_pack1x1_plan *p, int64_t g)
{
    return g * p->maps / p->groups;
}

/* Slots a row of sp pixels takes in 32-pixel sub-blocks (16 for a last
 * short one). */
static int64_t p1_pixel_slots(int64_t sp)
{
    int64_t tail = sp % P1_PX;
    return sp - tail + (tail == 0 ? 0 : tail <= P1_VL ? P1_VL : P1_PX);
}

/* Maps mode: 32-map panels by up to 12 pixels, for small planes. */
static void p1_plan_maps(cd_pack1x1_plan *p)
{
    p->groups = cdiv(p->maps, P1_PX);
    int64_t nb = 1, nk = 1;
    /* At least 16 items: first map chunks down to one panel (every chunk
     * reads the plane once more, from cache), then pixel blocks of >= 12. */
    while (p->batch * nb * nk < 16) {
        if (p->groups / (nk * 2) >= 1)
            nk *= 2;
        else if (cdiv(p->sp, nb + 1) >= P1_NR)
            nb++;
        else
            break;
    }
    p->pix_block = cdiv(p->sp, nb);
    p->n_pix_blocks = cdiv(p->sp, p->pix_block);
    p->n_map_chunks = nk;
}

void cd_pack1x1_plan_init(cd_pack1x1_plan *p, int64_t batch, int64_t channels, int64_t maps,
                          int64_t sp)
{
    memset(p, 0, sizeof *p);
    p->batch = batch;
    p->channels = channels;
    p->maps = maps;
    p->sp = sp;
    /* Pixels in vector lanes waste the slots past a plane's end (7x7: 49 of
     * 64, 23%, on a third of mobilenet_v2's 1x1 work); maps in vector lanes
     * waste the padding of the last 32-map panel and cost a transposed
     * store of the outputs. Maps mode when it wastes 10 points less. */
    double px_waste = 1.0 - (double)sp / (double)p1_pixel_slots(sp);
    double map_waste = 1.0 - (double)maps / (double)(cdiv(maps, P1_PX) * P1_PX);
    p->maps_mode = px_waste > map_waste + 0.1;
    if (p->maps_mode) {
        p1_plan_maps(p);
        return;
    }
    p->groups = cdiv(maps, P1_NR);
    /* A pixel block of x (channels x block) should stay in L2 while
     * every weight group streams past it: 32 Ki floats, 32..1024 pixels. */
    int64_t cap = 32768 / (channels > 0 ? channels : 1) / P1_PX * P1_PX;
    cap = cap < P1_PX ? P1_PX : cap > 1024 ? 1024 : cap;
    int64_t nb = cdiv(sp, cap), nk = 1;
    /* At least 16 items so two or more threads stay balanced: first
     * shorter pixel blocks while they keep >= 128 pixels (each streams all
     * weights once more), then map chunks of >= 2 groups (each reads its
     * pixel block once more), then blocks down to 32 pixels. */
    while (batch * nb * nk < 16) {
        if (cdiv(sp, nb + 1) >= 128)
            nb++;
        else if (p->groups / (nk * 2) >= 2)
            nk *= 2;
        else if (cdiv(sp, nb + 1) >= P1_PX)
            nb++;
        else
            break;
    }
    /* Whole 32-pixel sub-blocks except at the end of an image. */
    int64_t pb = cdiv(cdiv(sp, nb), P1_PX) * P1_PX;
    p->pix_block = pb;
    p->n_pix_blocks = cdiv(sp, pb);
    p->n_map_chunks = nk;
}

size_t cd_pack1x1_weight_floats(const cd_pack1x1_plan *p)
{
    int64_t maps = p->maps_mode ? p->groups * P1_PX : p->maps;
    return (size_t)maps * (size_t)p->channels;
}

/* w: [maps][channels] -> u: group g at u + channels * first map of g, laid
 * out [channel][width]: the maps one micro-kernel call broadcasts are
 * adjacent for each channel. */
void cd_pack1x1_weights(const cd_pack1x1_plan *p, const float *w, float *u)
{
    int64_t C = p->channels;
    if (p->maps_mode) { /* [panel][channel][32], zero past the last map */
        for (int64_t g = 0; g < p->groups; g++)
            for (int64_t c = 0; c < C; c++)
                for (int64_t r = 0; r < P1_PX; r++) {
                    int64_t m = g * P1_PX + r;
                    u[(g * C + c) * P1_PX + r] = m < p->maps ? w[m * C + c] : 0.0f;
                }
        return;
    }
    for (int64_t g = 0; g < p->groups; g++) {
        int64_t m0 = p1_group_start(p, g), nr = p1_group_start(p, g + 1) - m0;
        float *ug = u + C * m0;
        for (int64_t c = 0; c < C; c++)
            for (int64_t r = 0; r < nr; r++)
                ug[c * nr + r] = w[(m0 + r) * C + c];
    }
}

/* One worker's packed partial sub-block (channels x up to 32 pixel slots)
 * and the bounce buffer for its rows. */
static size_t p1_slot_floats(const cd_pack1x1_plan *p)
{
    return (size_t)p->channels * P1_PX + (size_t)P1_NR * P1_PX;
}

size_t cd_pack1x1_scratch_floats(const cd_pack1x1_plan *p, int workers)
{
    return (size_t)(workers > 1 ? workers : 1) * p1_slot_floats(p);
}

/* Micro-kernel ---------------------------------------------------------------- */

/* The epilogue the pixel-mode micro-kernel applies in registers before its
 * stores: bias, then residual, then ReLU or Clip or nothing, with
 * cd_epilogue_apply's arithmetic (v = y + b + r in that order, b = 0 without
 * a bias; ReLU as v > 0 ? v : 0, Clip as clampf), so the bits are those of
 * the separate pass it replaces (5.7% of mobilenet_v2 as that pass). Other
 * activations keep the pass. */
typedef enum p1_epi_mode {
    P1_EPI_OFF = 0, /* store the sums as they are */
    P1_EPI_NONE,    /* bias and/or residual, no activation */
    P1_EPI_RELU,
    P1_EPI_CLIP
} p1_epi_mode;

typedef struct p1_epi {
    p1_epi_mode mode;
    float lo, hi;      /* Clip bounds */
    const float *bias; /* the call's first map's bias (rows follow), or NULL */
    const float *res;  /* residual at the call's first output, rows ldy apart, or NULL */
} p1_epi;

typedef int32_t p1_i16 __attribute__((vector_size(64)));

/* s in every lane, exactly (0 + s would turn -0 into +0; s - 0 keeps it).
 * Macros and pointers, not vector arguments or returns: without AVX-512
 * (Debug builds) those change the ABI and GCC warns (-Wpsabi). */
#define P1_SPLAT_EXACT(s) ((s) - (p1_v16){0})

/* cd_epilogue_apply's per-value steps on one vector (GCC's C has no
 * vector ?:, so selects are masks: comparisons give all-ones lanes). */
static inline __attribute__((always_inline)) void p1_epi_vec(const p1_epi *e, p1_v16 *acc,
                                                             const p1_v16 *b, const float *res)
{
    p1_v16 v = *acc + *b;
    if (res) {
        p1_v16 r;
        memcpy(&r, res, sizeof r);
        v = v + r;
    }
    if (e->mode == P1_EPI_RELU) {
        p1_i16 m = v > (p1_v16){0};
        v = (p1_v16)(m & (p1_i16)v);
    } else if (e->mode == P1_EPI_CLIP) {
        p1_v16 lo = P1_SPLAT_EXACT(e->lo), hi = P1_SPLAT_EXACT(e->hi);
        p1_i16 m = v < lo;
        v = (p1_v16)((m & (p1_i16)lo) | (~m & (p1_i16)v));
        m = v > hi;
        v = (p1_v16)((m & (p1_i16)hi) | (~m & (p1_i16)v));
    }
    *acc = v;
}

/* y[r][0 .. 16 nv) = sum_c x[c][0 .. 16 nv) * w[c][r] for r < nr, x rows ldx
 * floats apart, w rows ldw floats apart, y rows ldy apart, then epilogue e
 * (NULL or P1_EPI_OFF: none; pixel mode only, rows = maps). Pixel mode: x is
 * the image, w the weights; maps mode: x is a weight panel, w the image. nv
 * and nr are compile-time constants in every instance, so the accumulators
 * stay in registers. */
static inline __attribute__((always_inline)) void p1_micro(int nv, int nr, int64_t C,
                                                           const float *x, int64_t ldx,
                                                           const float *w, int64_t ldw,
                                                           float *y, int64_t ldy,
                                                           const p1_epi *e)
{
    p1_v16 a0[P1_NR], a1[P1_NR];
    /* Unrolled before GCC's loop distribution sees it: otherwise it became
     * two memset calls on stack arrays per call (13% of a 32-channel
     * layer's kernel time). */
#pragma GCC unroll 12
    for (int r = 0; r < nr; r++)
        a0[r] = a1[r] = (p1_v16){0};
    for (int64_t c = 0; c < C; c++) {
        p1_v16 x0, x1 = {0};
        memcpy(&x0, x + c * ldx, sizeof x0);
        if (nv == 2)
            memcpy(&x1, x + c * ldx + P1_VL, sizeof x1);
        const float *wc = w + c * ldw;
#pragma GCC unroll 12
        for (int r = 0; r < nr; r++) {
            p1_v16 b = P1_SPLAT(wc[r]);
            P1_FMA(a0[r], x0, b);
            if (nv == 2)
                P1_FMA(a1[r], x1, b);
        }
    }
    if (e && e->mode != P1_EPI_OFF) {
#pragma GCC unroll 12
        for (int r = 0; r < nr; r++) {
            p1_v16 b = P1_SPLAT_EXACT(e->bias ? e->bias[r] : 0.0f);
            const float *res = e->res ? e->res + r * ldy : NULL;
            p1_epi_vec(e, &a0[r], &b, res);
            if (nv == 2)
                p1_epi_vec(e, &a1[r], &b, res ? res + P1_VL : NULL);
        }
    }
#pragma GCC unroll 12
    for (int r = 0; r < nr; r++) {
        memcpy(y + r * ldy, &a0[r], sizeof a0[r]);
        if (nv == 2)
            memcpy(y + r * ldy + P1_VL, &a1[r], sizeof a1[r]);
    }
}

typedef void (*p1_micro_fn)(int64_t C, const float *x, int64_t ldx, const float *w,
                            int64_t ldw, float *y, int64_t ldy, const p1_epi *e);
#define P1_MICRO(V, N)                                                                      \
    static void p1_micro_##V##_##N(int64_t C, const float *x, int64_t ldx, const float *w,  \
                                   int64_t ldw, float *y, int64_t ldy, const p1_epi *e)     \
    {                                                                                       \
        p1_micro(V, N, C, x, ldx, w, ldw, y, ldy, e);                                       \
    }
#define P1_MICROS(V)                                                                        \
    P1_MICRO(V, 1)                                                                          \
    P1_MICRO(V, 2)                                                                          \
    P1_MICRO(V, 3)                                                                          \
    P1_MICRO(V, 4)                                                                          \
    P1_MICRO(V, 5)                                                                          \
    P1_MICRO(V, 6)                                                                          \
    P1_MICRO(V, 7)                                                                          \
    P1_MICRO(V, 8)                                                                          \
    P1_MICRO(V, 9)                                                                          \
    P1_MICRO(V, 10)                                                                         \
    P1_MICRO(V, 11)                                                                         \
    P1_MICRO(V, 12)
P1_MICROS(1)
P1_MICROS(2)
#undef P1_MICROS
#undef P1_MICRO
/* [vectors - 1][maps]: 16-pixel calls for the last <= 16 pixels of an image
 * (7x7 maps: 49 = 32 + 17 would waste 15 of 64 slots with 32 only). */
static const p1_micro_fn p1_micros[2][P1_NR + 1] = {
    {NULL, p1_micro_1_1, p1_micro_1_2, p1_micro_1_3, p1_micro_1_4, p1_micro_1_5, p1_micro_1_6,
     p1_micro_1_7, p1_micro_1_8, p1_micro_1_9, p1_micro_1_10, p1_micro_1_11, p1_micro_1_12},
    {NULL, p1_micro_2_1, p1_micro_2_2, p1_micro_2_3, p1_micro_2_4, p1_micro_2_5, p1_micro_2_6,
     p1_micro_2_7, p1_micro_2_8, p1_micro_2_9, p1_micro_2_10, p1_micro_2_11, p1_micro_2_12}};

/* Work items ------------------------------------------------------------------ */

typedef struct p1_job {
    const cd_pack1x1_plan *p;
    const float *u, *x, *bias, *res;
    const cd_epilogue *ep;
    p1_epi_mode mode; /* fused epilogue, or P1_EPI_OFF */
    bool pass;        /* epilogue as cd_epilogue_apply passes instead */
    float *y, *scratch;
    size_t slot;
    int64_t items;
    atomic_llong next;
} p1_job;

/* Vectors per row of sub-block [q0, q0 + n): 1 when 16 slots hold it. */
static int p1_vectors(int64_t n) { return n <= P1_VL ? 1 : 2; }

/* dst[0 .. n) = src[0 .. n), dst[n .. len) = 0, n <= len <= 32. With AVX-512
 * as masked vector loads and stores: a plain loop became libc memcpy and
 * memset calls per row, and the short copies stalled the vector loads that
 * read them back (store forwarding), 3% of mobilenet_v2. */
static void p1_copy_zero(float *dst, const float *src, int64_t n, int64_t len)
{
#if defined(__AVX512F__)
    for (int64_t v = 0; v < len; v += P1_VL) {
        int64_t k = n - v < 0 ? 0 : n - v > P1_VL ? P1_VL : n - v;
        int64_t l = len - v > P1_VL ? P1_VL : len - v;
        __m512 t = _mm512_maskz_loadu_ps((__mmask16)((1u << k) - 1u), src + v);
        _mm512_mask_storeu_ps(dst + v, (__mmask16)((1u << l) - 1u), t);
    }
#else
    for (int64_t i = 0; i < len; i++)
        dst[i] = i < n ? src[i] : 0.0f;
#endif
}

/* Pixels [s0, s0 + n) of image xi, n < 32 and not 16, into rows of 16 or
 * 32 pixel slots per channel; the slots past n are zeroed (their outputs go
 * to the bounce buffer and are dropped). Whole sub-blocks need no copy: the
 * micro-kernel reads them straight from the image, rows sp apart. */
static void p1_pack_tail(const cd_pack1x1_plan *p, const float *xi, int64_t s0, int64_t n,
                         float *xp)
{
    int64_t C = p->channels, sp = p->sp, wv = p1_vectors(n) * P1_VL;
    for (int64_t c = 0; c < C; c++)
        p1_copy_zero(xp + c * wv, xi + c * sp + s0, n, wv);
}

/* What work item `item` covers: image n, pixels [q0, q1), map groups
 * [g0, g1) (both item kinds split the same way). */
typedef struct p1_span {
    int64_t n, q0, q1, g0, g1;
} p1_span;

static p1_span p1_item_span(const cd_pack1x1_plan *p, int64_t item)
{
    int64_t sp = p->sp, per_image = p->n_pix_blocks * p->n_map_chunks;
    int64_t n = item / per_image, rem = item % per_image;
    int64_t bq = rem / p->n_map_chunks, bk = rem % p->n_map_chunks;
    int64_t q0 = bq * p->pix_block, q1 = q0 + p->pix_block < sp ? q0 + p->pix_block : sp;
    return (p1_span){n, q0, q1, bk * p->groups / p->n_map_chunks,
                     (bk + 1) * p->groups / p->n_map_chunks};
}

/* Other activations: a pass over maps [m0, m1) of the item's outputs,
 * still in cache. */
static void p1_pass_epilogue(const p1_job *j, const p1_span *t, int64_t m0, int64_t m1)
{
    int64_t M = j->p->maps, sp = j->p->sp;
    for (int64_t m = m0; m < m1; m++) {
        int64_t off = (t->n * M + m) * sp + t->q0;
        cd_epilogue_apply(j->ep, j->y + off, j->bias ? j->bias + m : NULL,
                          j->res ? j->res + off : NULL, 1, t->q1 - t->q0);
    }
}

static void p1_item(const p1_job *j, int64_t item, float *s)
{
    const cd_pack1x1_plan *p = j->p;
    int64_t C = p->channels, M = p->maps, sp = p->sp;
    p1_span t = p1_item_span(p, item);
    int64_t n = t.n, q0 = t.q0, q1 = t.q1, g0 = t.g0, g1 = t.g1;
    float *xp = s, *bounce = s + (size_t)C * P1_PX;
    const float *xi = j->x + n * C * sp;
    float *yn = j->y + n * M * sp;
    /* The one partial sub-block an image may end with. */
    int64_t full = q0 + (q1 - q0) / P1_PX * P1_PX, tail = q1 - full;
    bool packed = tail > 0 && tail != P1_VL;
    if (packed)
        p1_pack_tail(p, xi, full, tail, xp);

    for (int64_t g = g0; g < g1; g++) {
        int64_t m0 = p1_group_start(p, g), nr = p1_group_start(p, g + 1) - m0;
        const float *ug = j->u + C * m0;
        float *ym = yn + m0 * sp;
        const float *rm = j->res ? j->res + (n * M + m0) * sp : NULL;
        p1_epi e = {j->mode, j->ep ? j->ep->lo : 0, j->ep ? j->ep->hi : 0,
                    j->bias ? j->bias + m0 : NULL, NULL};
        for (int64_t s0 = q0; s0 < full; s0 += P1_PX) {
            e.res = rm ? rm + s0 : NULL;
            p1_micros[1][nr](C, xi + s0, sp, ug, nr, ym + s0, sp, &e);
        }
        if (tail == 0)
            continue;
        p1_micro_fn fn = p1_micros[p1_vectors(tail) - 1][nr];
        if (!packed) {
            e.res = rm ? rm + full : NULL;
            fn(C, xi + full, sp, ug, nr, ym + full, sp, &e);
            continue;
        }
        /* The bounce rows' slots past the tail have no residual to read:
         * the epilogue runs on the copied tail instead, same arithmetic. */
        fn(C, xp, p1_vectors(tail) * P1_VL, ug, nr, bounce, P1_PX, NULL);
        for (int64_t r = 0; r < nr; r++) {
            p1_copy_zero(ym + r * sp + full, bounce + r * P1_PX, tail, tail);
            if (j->mode != P1_EPI_OFF)
                cd_epilogue_apply(j->ep, ym + r * sp + full, j->bias ? j->bias + m0 + r : NULL,
                                  rm ? rm + r * sp + full : NULL, 1, tail);
        }
    }

    if (j->pass)
        p1_pass_epilogue(j, &t, p1_group_start(p, g0), p1_group_start(p, g1));
}

/* Maps mode's transposed store of s[pixel][32 maps] (cnt pixels from r, nk
 * maps from k0, image n) with the fused epilogue: cd_epilogue_apply's
 * arithmetic per value, while the value passes through a register anyway. */
static void p1_store_maps_fused(const p1_job *j, const float *s, int64_t n, int64_t k0,
                                int64_t nk, int64_t r, int64_t cnt)
{
    int64_t M = j->p->maps, sp = j->p->sp;
    float lo = j->ep ? j->ep->lo : 0, hi = j->ep ? j->ep->hi : 0;
    for (int64_t k = 0; k < nk; k++) {
        int64_t off = (n * M + k0 + k) * sp + r;
        float b = j->bias ? j->bias[k0 + k] : 0.0f, *y = j->y + off;
        const float *res = j->res ? j->res + off : NULL;
        for (int64_t i = 0; i < cnt; i++) {
            float v = s[i * P1_PX + k] + b;
            if (res)
                v = v + res[i];
            if (j->mode == P1_EPI_RELU)
                v = v > 0 ? v : 0.0f;
            else if (j->mode == P1_EPI_CLIP) {
                v = v < lo ? lo : v;
                v = v > hi ? hi : v;
            }
            y[i] = v;
        }
    }
}

/* Maps mode: per 32-map panel, runs of up to 12 pixels read straight from
 * the image (broadcast), results [pixel][32 maps] stored transposed. */
static void p1_item_maps(const p1_job *j, int64_t item, float *s)
{
    const cd_pack1x1_plan *p = j->p;
    int64_t C = p->channels, M = p->maps, sp = p->sp;
    p1_span t = p1_item_span(p, item);
    int64_t n = t.n, q0 = t.q0, q1 = t.q1, g0 = t.g0, g1 = t.g1;
    const float *xi = j->x + n * C * sp;
    float *yn = j->y + n * M * sp;
    for (int64_t g = g0; g < g1; g++) {
        const float *up = j->u + g * C * P1_PX;
        int64_t k0 = g * P1_PX, nk = M - k0 < P1_PX ? M - k0 : P1_PX;
        /* Equal calls (14 pixels: 7 + 7, not 12 + 2): see p1_group_start. */
        for (int64_t r = q0, cnt; r < q1; r += cnt) {
            int64_t calls = cdiv(q1 - r, P1_NR);
            cnt = cdiv(q1 - r, calls);
            p1_micros[1][cnt](C, up, P1_PX, xi + r, sp, s, P1_PX, NULL);
            if (j->mode != P1_EPI_OFF) {
                p1_store_maps_fused(j, s, n, k0, nk, r, cnt);
                continue;
            }
            for (int64_t k = 0; k < nk; k++)
                for (int64_t i = 0; i < cnt; i++)
                    yn[(k0 + k) * sp + r + i] = s[i * P1_PX + k];
        }
    }
    if (j->pass)
        p1_pass_epilogue(j, &t, g0 * P1_PX, g1 * P1_PX < M ? g1 * P1_PX : M);
}

static void p1_worker(void *arg, int task)
{
    p1_job *j = arg;
    float *s = j->scratch + (size_t)task * j->slot;
    for (;;) {
        int64_t item = (int64_t)atomic_fetch_add(&j->next, 1);
        if (item >= j->items)
            break;
        (j->p->maps_mode ? p1_item_maps : p1_item)(j, item, s);
    }
}

void cd_pack1x1_run(struct cd_pool *pool, const cd_pack1x1_plan *p, const float *u,
                    const float *x, const float *bias, const float *res, const cd_epilogue *ep,
                    float *y, float *scratch)
{
    cd_act act = ep ? ep->act : CD_ACT_NONE;
    bool any = act != CD_ACT_NONE || bias || res; /* else cd_epilogue_apply is a no-op */
    p1_epi_mode mode = !any                    ? P1_EPI_OFF
                       : act == CD_ACT_NONE ? P1_EPI_NONE
                       : act == CD_ACT_RELU ? P1_EPI_RELU
                       : act == CD_ACT_CLIP ? P1_EPI_CLIP
                                            : P1_EPI_OFF;
    p1_job j = {p, u, x, bias, res, ep, mode, any && mode == P1_EPI_OFF,
                y, scratch, p1_slot_floats(p), 0, 0};
    j.items = p->batch * p->n_pix_blocks * p->n_map_chunks;
    atomic_init(&j.next, 0);
    if (j.items <= 0)
        return;
    int64_t workers = cd_pool_threads(pool);
    cd_pool_run(pool, (int)(workers < j.items ? workers : j.items), p1_worker, &j);
}
