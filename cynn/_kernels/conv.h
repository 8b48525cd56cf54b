/* Conv2d's C loops (conv.pyx): im2col and col2im over a zero-padded copy of one
   sample, (C, Hp, Wp), and the direct stride-1 convolution.  Every patch
   read is in bounds of the padded copy, so the loops need no edge cases and run as
   plain strided copies and adds that the compiler vectorizes. */
#ifndef CYNN_CONV_H
#define CYNN_CONV_H

#include "cynn_common.h"
#include "pooling.h"   /* the 2x2 max-pooling lanes of the evaluation epilogue */

/* Which vector width the kernels with two instantiations run on (conv.pyx's
   vector_bytes / set_vector_bytes): cynn_v64_init() sets it once, at import, from
   whether the CPU has x86-64-v4.  Both widths compute every sum in the same order with
   fused multiply-adds, so they give the same bits, except CYNN_DIRECT_WGRAD, which
   reduces its sums across the vector's lanes. */
static int cynn_v64_enabled = 0;
static inline int cynn_v64_init(void) {
    cynn_v64_enabled = cynn_cpu_v64();
    return cynn_v64_enabled;
}

/* Copy n contiguous values in 64-, 32- or 16-byte moves; a row that is not a
   multiple of the move ends with one move overlapping the previous one, instead
   of the vectorizer's narrower and scalar epilogues, which dominate on short rows. */
#define CYNN_COPY_ROW(NAME, T, SFX)                                                    \
static inline __attribute__((always_inline)) void NAME(T* restrict d,                  \
        const T* restrict s, int n) {                                                  \
    enum { B = 64 / sizeof(T) };                                                       \
    if (n >= B) {                                                                      \
        int t = 0;                                                                     \
        for (; t + B <= n; t += B) memcpy(d + t, s + t, 64);                           \
        if (t < n) memcpy(d + n - B, s + n - B, 64);                                   \
    } else if (n >= B / 2) {                                                           \
        memcpy(d, s, 32);                                                              \
        memcpy(d + n - B / 2, s + n - B / 2, 32);                                      \
    } else if (n >= B / 4) {                                                           \
        memcpy(d, s, 16);                                                              \
        memcpy(d + n - B / 4, s + n - B / 4, 16);                                      \
    } else {                                                                           \
        for (int t = 0; t < n; t++) d[t] = s[t];                                       \
    }                                                                                  \
}

/* col (K, (oh1 - oh0) * wo) = the patches of output rows [oh0, oh1), row
   r = (c * kh + i) * kw + j. */
#define CYNN_IM2COL(NAME, T, SFX)                                                      \
CYNN_KERNEL CYNN_NO_MEMCPY CYNN_WIDE void NAME(const T* restrict xp, Py_ssize_t channels, \
        Py_ssize_t hp, Py_ssize_t wp, T* restrict col, int kh, int kw, int sh,         \
        int sw, int oh0, int oh1, int wo) {                                            \
    T* restrict d = col;                                                               \
    for (Py_ssize_t c = 0; c < channels; c++)                                          \
        for (int i = 0; i < kh; i++)                                                   \
            for (int j = 0; j < kw; j++)                                               \
                for (int oh = oh0; oh < oh1; oh++, d += wo) {                          \
                    const T* restrict s = xp + (c * hp + (Py_ssize_t)oh * sh + i) * wp + j; \
                    if (sw == 1)                                                       \
                        cynn_copy_row_##SFX(d, s, wo);                                 \
                    else                                                               \
                        for (int ow = 0; ow < wo; ow++) d[ow] = s[(Py_ssize_t)ow * sw]; \
                }                                                                      \
}

/* dxp += col2im(col): the inverse scatter of CYNN_IM2COL, adding. */
#define CYNN_COL2IM(NAME, T, SFX)                                                      \
CYNN_KERNEL CYNN_WIDE void NAME(const T* restrict col, Py_ssize_t channels, Py_ssize_t hp, \
        Py_ssize_t wp, T* restrict dxp, int kh, int kw, int sh, int sw, int oh0,       \
        int oh1, int wo) {                                                             \
    const T* restrict s = col;                                                         \
    for (Py_ssize_t c = 0; c < channels; c++)                                          \
        for (int i = 0; i < kh; i++)                                                   \
            for (int j = 0; j < kw; j++)                                               \
                for (int oh = oh0; oh < oh1; oh++, s += wo) {                          \
                    T* restrict d = dxp + (c * hp + (Py_ssize_t)oh * sh + i) * wp + j; \
                    if (sw == 1)                                                       \
                        for (int ow = 0; ow < wo; ow++) d[ow] += s[ow];                \
                    else                                                               \
                        for (int ow = 0; ow < wo; ow++) d[(Py_ssize_t)ow * sw] += s[ow]; \
                }                                                                      \
}

/* Direct stride-1 convolution of one padded sample (C, Hp, Wp), for any number of
   channels and taps, over the "wide" output grid: position q = oh * Wp + ow for every
   ow < Wp, so that tap (c, i, j) of every position is the same contiguous run of the
   padded sample, xp[c * Hp * Wp + i * Wp + j + q], one vector load per NV * L positions
   (columns ow >= Wo are computed and dropped: 2 of 34 at 32x32).  A tile is FB filters
   by NV vectors of L values: FB * NV accumulators in registers, each input vector
   loaded once for the FB filters and each weight once for the NV vectors.

   The weights come packed by CYNN_DIRECT_PACK with FB = CYNN_DIRECT_FB (each filter
   times its ``scale``, when given: a folded batch norm): blocks of FB filters, each tap's FB weights side by side, the last block padded with zero filters, then the bias of
   every block's filters (zero without one).  buf gets rows blk * FB + r (every block
   row, also the padding filters') of ldb >= nq values, nq = Ho * Wp rounded up to
   one vector, L (the last tile of a chunk may be 1 or 2 vectors wide); xp must be
   readable for NV * L + kw values past its C planes (the positions beyond Ho * Wp
   read them, and are dropped too).  Positions run in chunks whose input
   rows stay in the cache while every block of filters passes over them.  Every output
   is the bias plus the taps in order (c, i, j), so the result does not depend on the
   block range or chunk a caller asks for. */
enum { CYNN_DIRECT_FB = 4, CYNN_DIRECT_NV = 3 };

#define CYNN_DIRECT_PACK(NAME, T, SFX)                                                 \
CYNN_KERNEL CYNN_WIDE void NAME(const T* restrict w, Py_ssize_t ldw, Py_ssize_t n_filters, \
        Py_ssize_t taps, const T* restrict bias, Py_ssize_t bias_stride,               \
        const T* restrict scale, int FB, T* restrict wpk) {                            \
    /* Groups of H real filters by H taps go through an H x H transpose (each value    \
       times its filter's scale, the one multiply either way); the last taps and       \
       filters, and the zero filters that fill the last block, one by one. */          \
    enum { H = 32 / sizeof(T) };                                                       \
    typedef cynn_v32##SFX V;                                                           \
    Py_ssize_t blocks = (n_filters + FB - 1) / FB, f0 = 0;                             \
    for (; f0 + H <= n_filters; f0 += H) {                                             \
        V sv;                                                                          \
        if (scale != NULL) memcpy(&sv, scale + f0, sizeof sv);                         \
        /* where tap 0 of filter f0 goes, and of f0 + 4 when blocks are 4 filters */     \
        T* restrict d0 = wpk + (f0 / FB) * taps * FB + f0 % FB;                        \
        T* restrict d4 = wpk + ((f0 + 4) / FB) * taps * FB + (f0 + 4) % FB;            \
        Py_ssize_t t = 0;                                                              \
        for (; t + H <= taps; t += H) {                                                \
            V rows[H], c[H];                                                           \
            for (int k = 0; k < H; k++) memcpy(&rows[k], w + (f0 + k) * ldw + t, sizeof(V)); \
            cynn_transpose_##SFX(rows, c);                                             \
            for (int l = 0; l < H; l++) {                                              \
                V v = scale != NULL ? c[l] * sv : c[l];                                \
                T vals[H];                                                             \
                memcpy(vals, &v, sizeof vals);                                         \
                /* copies of a size known here: a call to memmove would cost more */   \
                if (FB % H == 0) {                                                     \
                    memcpy(d0 + (t + l) * FB, vals, sizeof vals);                      \
                } else if (FB == 4 && H == 8) {                                        \
                    memcpy(d0 + (t + l) * 4, vals, 4 * sizeof(T));                     \
                    memcpy(d4 + (t + l) * 4, vals + 4, 4 * sizeof(T));                 \
                } else                                                                 \
                    for (int q = 0; q < H; q++)                                        \
                        wpk[(((f0 + q) / FB) * taps + t + l) * FB + (f0 + q) % FB] = vals[q]; \
            }                                                                          \
        }                                                                              \
        for (; t < taps; t++)                                                          \
            for (Py_ssize_t f = f0; f < f0 + H; f++)                                   \
                wpk[((f / FB) * taps + t) * FB + f % FB] =                             \
                    scale != NULL ? w[f * ldw + t] * scale[f] : w[f * ldw + t];        \
    }                                                                                  \
    for (Py_ssize_t f = f0; f < blocks * FB; f++)                                      \
        for (Py_ssize_t t = 0; t < taps; t++)                                          \
            wpk[((f / FB) * taps + t) * FB + f % FB] = f >= n_filters ? (T)0           \
                : scale != NULL ? w[f * ldw + t] * scale[f] : w[f * ldw + t];          \
    T* restrict b = wpk + blocks * taps * FB;                                          \
    for (Py_ssize_t f = 0; f < blocks * FB; f++)                                       \
        b[f] = (bias != NULL && f < n_filters) ? bias[f * bias_stride] : 0;            \
}

/* CYNN_DIRECT's last tile, of R < NV vectors at position q. */
#define CYNN_DIRECT_TAIL(R, T)                                                         \
    V acc[FB][R];                                                                      \
    for (int r = 0; r < FB; r++)                                                       \
        for (int v = 0; v < R; v++) acc[r][v] = (V){0} + bb[r];                        \
    const T* restrict w = wb;                                                          \
    for (Py_ssize_t c = 0; c < channels; c++) {                                        \
        const T* xc = xp + c * plane + q;                                              \
        for (int i = 0; i < kh; i++) {                                                 \
            const T* xr = xc + (Py_ssize_t)i * wp;                                     \
            for (int j = 0; j < kw; j++, w += FB) {                                    \
                V xv[R];                                                               \
                for (int v = 0; v < R; v++) memcpy(&xv[v], xr + j + v * L, sizeof(V)); \
                for (int r = 0; r < FB; r++) {                                         \
                    T wr = w[r];                                                       \
                    for (int v = 0; v < R; v++) acc[r][v] += xv[v] * wr;               \
                }                                                                      \
            }                                                                          \
        }                                                                              \
    }                                                                                  \
    for (int r = 0; r < FB; r++)                                                       \
        memcpy(buf + (blk * FB + r) * ldb + q, acc[r], R * sizeof(V));

#define CYNN_DIRECT_VB(NAME, T, SFX, VB, ATTR)                                         \
CYNN_KERNEL ATTR void NAME(const T* restrict xp, Py_ssize_t channels,                  \
        Py_ssize_t hp, Py_ssize_t wp, int kh, int kw, const T* restrict wpk,           \
        Py_ssize_t n_blocks, Py_ssize_t blk0, Py_ssize_t blk1, T* restrict buf,        \
        Py_ssize_t ldb, Py_ssize_t nq) {                                               \
    enum { L = VB / sizeof(T), FB = CYNN_DIRECT_FB, NV = CYNN_DIRECT_NV, Q = NV * L }; \
    typedef cynn_v##VB##SFX V;                                                         \
    Py_ssize_t taps = channels * kh * kw, plane = hp * wp;                             \
    const T* restrict bias = wpk + n_blocks * taps * FB;                               \
    /* positions per chunk: its input rows, C * (chunk + (kh - 1) * Wp) values, in
       about 96 KB */                                                                  \
    Py_ssize_t chunk = (Py_ssize_t)(98304 / sizeof(T)) / channels - (kh - 1) * wp;     \
    chunk = chunk < Q ? Q : chunk / Q * Q;                                             \
    for (Py_ssize_t c0 = 0; c0 < nq; c0 += chunk) {                                    \
        Py_ssize_t c1 = c0 + chunk < nq ? c0 + chunk : nq;                             \
        for (Py_ssize_t blk = blk0; blk < blk1; blk++) {                               \
            const T* restrict wb = wpk + blk * taps * FB;                              \
            const T* restrict bb = bias + blk * FB;                                    \
            Py_ssize_t q = c0;                                                         \
            for (; q + Q <= c1; q += Q) {                                              \
                V a00, a01, a02, a10, a11, a12, a20, a21, a22, a30, a31, a32;          \
                a00 = a01 = a02 = (V){0} + bb[0];                                      \
                a10 = a11 = a12 = (V){0} + bb[1];                                      \
                a20 = a21 = a22 = (V){0} + bb[2];                                      \
                a30 = a31 = a32 = (V){0} + bb[3];                                      \
                const T* restrict w = wb;                                              \
                for (Py_ssize_t c = 0; c < channels; c++) {                            \
                    const T* xc = xp + c * plane + q;                                  \
                    for (int i = 0; i < kh; i++) {                                     \
                        const T* xr = xc + (Py_ssize_t)i * wp;                         \
                        for (int j = 0; j < kw; j++, w += FB) {                        \
                            V x0, x1, x2;                                              \
                            memcpy(&x0, xr + j, sizeof x0);                            \
                            memcpy(&x1, xr + j + L, sizeof x1);                        \
                            memcpy(&x2, xr + j + 2 * L, sizeof x2);                    \
                            T w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];              \
                            a00 += x0 * w0; a01 += x1 * w0; a02 += x2 * w0;            \
                            a10 += x0 * w1; a11 += x1 * w1; a12 += x2 * w1;            \
                            a20 += x0 * w2; a21 += x1 * w2; a22 += x2 * w2;            \
                            a30 += x0 * w3; a31 += x1 * w3; a32 += x2 * w3;            \
                        }                                                              \
                    }                                                                  \
                }                                                                      \
                T* o = buf + blk * FB * ldb + q;                                       \
                memcpy(o, &a00, sizeof a00); memcpy(o + L, &a01, sizeof a01);          \
                memcpy(o + 2 * L, &a02, sizeof a02); o += ldb;                         \
                memcpy(o, &a10, sizeof a10); memcpy(o + L, &a11, sizeof a11);          \
                memcpy(o + 2 * L, &a12, sizeof a12); o += ldb;                         \
                memcpy(o, &a20, sizeof a20); memcpy(o + L, &a21, sizeof a21);          \
                memcpy(o + 2 * L, &a22, sizeof a22); o += ldb;                         \
                memcpy(o, &a30, sizeof a30); memcpy(o + L, &a31, sizeof a31);          \
                memcpy(o + 2 * L, &a32, sizeof a32);                                   \
            }                                                                          \
            /* the last one or two vectors of positions: the same sums in a narrower  \
               tile (a plane of 8x8 has 80 wide positions, 3 tiles and one vector) */  \
            if (q + 2 * L <= c1) { CYNN_DIRECT_TAIL(2, T) }                             \
            else if (q < c1) { CYNN_DIRECT_TAIL(1, T) }                                 \
        }                                                                              \
    }                                                                                  \
}

/* The direct convolution vectorized over filters, for any stride: a tile is NP output
   positions by one or NBM blocks of FB = 16 filters, each tap's packed weights loaded
   as vectors and each input value broadcast to them.  On 32-byte vectors a tile keeps
   12 vector sums (two vectors of 8 floats by 6 positions, four of 4 doubles by 3); on
   64-byte vectors 16 (two blocks, two vectors of 16 floats, by 8 positions; two
   vectors of 8 doubles by 8), so that each broadcast feeds two multiply-adds and the
   loads keep up with the multiply-adds.  Not 12 positions on 64-byte vectors: their
   12 position pointers do not fit the general registers with the loop's own, and GCC
   parks them in vector registers and spills a weight vector to the stack (8 positions:
   35-40% faster, float32 and float64, 8x8 to 16x16 planes, stride 1 and 2; an 8x8
   plane is also 8 whole tiles, where 12 positions fill 6 tiles to 89%).  Unlike CYNN_DIRECT it computes
   only the Ho * Wo valid positions and needs no wide grid, and its weights are read
   as aligned vectors; it pays a transpose per tile to store position-major rows,
   which is small beside the taps from CYNN_FDIRECT_MIN_TAPS up (with fewer, CYNN_DIRECT
   is faster: 1 or 3 input channels).  Inside the layer CYNN_DIRECT stays faster on
   stride-1 planes of 16x16 and up, on either vector width (conv.pyx ``_kind``; 64-byte
   vectors, batch 128, forward, 32 channels at 16x16: 2.2 against 2.5 ms).

   Weights from CYNN_DIRECT_PACK with FB = CYNN_FDIRECT_FB.  out (row f at f * ldo,
   column p = oh * Wo + ow) gets every position of the real filters (f < F) of blocks
   [blk0, blk1).  Every output is the bias plus the taps in order (c, i, j), whatever
   the block range or chunk, so a caller may split the blocks any way.  A last tile of
   fewer than NP positions repeats its last position. */
enum { CYNN_FDIRECT_FB = 16, CYNN_FDIRECT_MIN_TAPS = 64 };

/* c[l][k] = r[k][l]: the transpose of L vectors of L values (8 floats, 4 doubles). */
static inline __attribute__((always_inline)) void cynn_transpose_f(const cynn_v32f* r,
        cynn_v32f* c) {
#ifdef CYNN_SHUFFLE
    cynn_v32f t0 = CYNN_SHUFFLE(r[0], r[1], 0, 8, 1, 9, 4, 12, 5, 13);
    cynn_v32f t1 = CYNN_SHUFFLE(r[0], r[1], 2, 10, 3, 11, 6, 14, 7, 15);
    cynn_v32f t2 = CYNN_SHUFFLE(r[2], r[3], 0, 8, 1, 9, 4, 12, 5, 13);
    cynn_v32f t3 = CYNN_SHUFFLE(r[2], r[3], 2, 10, 3, 11, 6, 14, 7, 15);
    cynn_v32f t4 = CYNN_SHUFFLE(r[4], r[5], 0, 8, 1, 9, 4, 12, 5, 13);
    cynn_v32f t5 = CYNN_SHUFFLE(r[4], r[5], 2, 10, 3, 11, 6, 14, 7, 15);
    cynn_v32f t6 = CYNN_SHUFFLE(r[6], r[7], 0, 8, 1, 9, 4, 12, 5, 13);
    cynn_v32f t7 = CYNN_SHUFFLE(r[6], r[7], 2, 10, 3, 11, 6, 14, 7, 15);
    cynn_v32f u0 = CYNN_SHUFFLE(t0, t2, 0, 1, 8, 9, 4, 5, 12, 13);
    cynn_v32f u1 = CYNN_SHUFFLE(t0, t2, 2, 3, 10, 11, 6, 7, 14, 15);
    cynn_v32f u2 = CYNN_SHUFFLE(t1, t3, 0, 1, 8, 9, 4, 5, 12, 13);
    cynn_v32f u3 = CYNN_SHUFFLE(t1, t3, 2, 3, 10, 11, 6, 7, 14, 15);
    cynn_v32f u4 = CYNN_SHUFFLE(t4, t6, 0, 1, 8, 9, 4, 5, 12, 13);
    cynn_v32f u5 = CYNN_SHUFFLE(t4, t6, 2, 3, 10, 11, 6, 7, 14, 15);
    cynn_v32f u6 = CYNN_SHUFFLE(t5, t7, 0, 1, 8, 9, 4, 5, 12, 13);
    cynn_v32f u7 = CYNN_SHUFFLE(t5, t7, 2, 3, 10, 11, 6, 7, 14, 15);
    c[0] = CYNN_SHUFFLE(u0, u4, 0, 1, 2, 3, 8, 9, 10, 11);
    c[1] = CYNN_SHUFFLE(u1, u5, 0, 1, 2, 3, 8, 9, 10, 11);
    c[2] = CYNN_SHUFFLE(u2, u6, 0, 1, 2, 3, 8, 9, 10, 11);
    c[3] = CYNN_SHUFFLE(u3, u7, 0, 1, 2, 3, 8, 9, 10, 11);
    c[4] = CYNN_SHUFFLE(u0, u4, 4, 5, 6, 7, 12, 13, 14, 15);
    c[5] = CYNN_SHUFFLE(u1, u5, 4, 5, 6, 7, 12, 13, 14, 15);
    c[6] = CYNN_SHUFFLE(u2, u6, 4, 5, 6, 7, 12, 13, 14, 15);
    c[7] = CYNN_SHUFFLE(u3, u7, 4, 5, 6, 7, 12, 13, 14, 15);
#else
    for (int l = 0; l < 8; l++)
        for (int k = 0; k < 8; k++) c[l][k] = r[k][l];
#endif
}

static inline __attribute__((always_inline)) void cynn_transpose_d(const cynn_v32d* r,
        cynn_v32d* c) {
#ifdef CYNN_SHUFFLE
    cynn_v32d t0 = CYNN_SHUFFLE(r[0], r[1], 0, 4, 2, 6);
    cynn_v32d t1 = CYNN_SHUFFLE(r[0], r[1], 1, 5, 3, 7);
    cynn_v32d t2 = CYNN_SHUFFLE(r[2], r[3], 0, 4, 2, 6);
    cynn_v32d t3 = CYNN_SHUFFLE(r[2], r[3], 1, 5, 3, 7);
    c[0] = CYNN_SHUFFLE(t0, t2, 0, 1, 4, 5);
    c[1] = CYNN_SHUFFLE(t1, t3, 0, 1, 4, 5);
    c[2] = CYNN_SHUFFLE(t0, t2, 2, 3, 6, 7);
    c[3] = CYNN_SHUFFLE(t1, t3, 2, 3, 6, 7);
#else
    for (int l = 0; l < 4; l++)
        for (int k = 0; k < 4; k++) c[l][k] = r[k][l];
#endif
}

/* Store a tile held as T values, tile[k * FBT + f] for position k < NP and filter
   f < FBT, as rows: o[f * ld + k] = tile[k * FBT + f] for the first nf filters and nk
   positions, through transposes of blocks of H x H values (H = 32 / sizeof(T)). */
#define CYNN_FDIRECT_STORE(NAME, T, SFX)                                               \
static inline __attribute__((always_inline)) void NAME(const T* restrict tile, int np,  \
        int fbt, int nk, int nf, T* restrict o, Py_ssize_t ld) {                       \
    enum { H = 32 / sizeof(T) };                                                       \
    for (int f0 = 0; f0 < nf; f0 += H) {                                               \
        int nl = nf - f0 < H ? nf - f0 : H;                                            \
        for (int k0 = 0; k0 < nk; k0 += H) {                                           \
            int nr = nk - k0 < H ? nk - k0 : H;                                        \
            cynn_v32##SFX rows[H], c[H];                                               \
            for (int k = 0; k < H; k++) {                                              \
                int kk = k0 + k < np ? k0 + k : np - 1;                                \
                memcpy(&rows[k], tile + (Py_ssize_t)kk * fbt + f0, sizeof rows[k]);    \
            }                                                                          \
            cynn_transpose_##SFX(rows, c);                                             \
            T* restrict d = o + (Py_ssize_t)f0 * ld + k0;                              \
            if (nr == H) /* a copy of known size, not a call to memmove */               \
                for (int l = 0; l < nl; l++) memcpy(d + l * ld, &c[l], sizeof c[l]);   \
            else                                                                       \
                for (int l = 0; l < nl; l++)                                           \
                    for (int k = 0; k < nr; k++) d[l * ld + k] = c[l][k];              \
        }                                                                              \
    }                                                                                  \
}

/* dyt (P, ldt) = dy (F, P) of one sample transposed, zero in the columns F..ldt: the
   filter-vector weight gradient's layout, by L x L blocks. */
#define CYNN_TRANSPOSE_DY(NAME, T, SFX)                                                \
CYNN_KERNEL CYNN_WIDE void NAME(const T* restrict dy, Py_ssize_t n_filters,            \
        Py_ssize_t p, Py_ssize_t ldt, T* restrict dyt) {                               \
    enum { L = 32 / sizeof(T) };                                                       \
    typedef cynn_v32##SFX V;                                                           \
    Py_ssize_t f0 = 0;                                                                 \
    for (; f0 + L <= n_filters; f0 += L) {                                             \
        Py_ssize_t q = 0;                                                              \
        for (; q + L <= p; q += L) {                                                   \
            V r[L], c[L];                                                              \
            for (int k = 0; k < L; k++) memcpy(&r[k], dy + (f0 + k) * p + q, sizeof(V)); \
            cynn_transpose_##SFX(r, c);                                                \
            for (int l = 0; l < L; l++) memcpy(dyt + (q + l) * ldt + f0, &c[l], sizeof(V)); \
        }                                                                              \
        for (; q < p; q++)                                                             \
            for (int k = 0; k < L; k++) dyt[q * ldt + f0 + k] = dy[(f0 + k) * p + q];  \
    }                                                                                  \
    for (Py_ssize_t q = 0; q < p; q++) {                                               \
        for (Py_ssize_t f = f0; f < n_filters; f++) dyt[q * ldt + f] = dy[f * p + q];  \
        for (Py_ssize_t f = n_filters; f < ldt; f++) dyt[q * ldt + f] = 0;             \
    }                                                                                  \
}

/* One tile of CYNN_FDIRECT_WGRAD_VB: NT taps by NB blocks of FB filters from block blk. */
#define CYNN_FDIRECT_WGRAD_TILE(NB, T)                                                 \
    {                                                                                  \
        V acc[NT][NB * NVF];                                                           \
        for (int k = 0; k < NT; k++)                                                   \
            for (int v = 0; v < NB * NVF; v++) acc[k][v] = (V){0};                     \
        const T* restrict d = dyt + blk * FB;                                          \
        for (int oh = 0; oh < ho; oh++) {                                              \
            Py_ssize_t ro = (Py_ssize_t)oh * sh * wp;                                  \
            for (int ow = 0; ow < wo; ow++, d += ldt) {                                \
                Py_ssize_t o = ro + (Py_ssize_t)ow * sw;                               \
                V dv[NB * NVF];                                                        \
                for (int v = 0; v < NB * NVF; v++) memcpy(&dv[v], d + v * L, sizeof(V)); \
                for (int k = 0; k < NT; k++) {                                         \
                    T s = xt[k][o];                                                    \
                    for (int v = 0; v < NB * NVF; v++) acc[k][v] += dv[v] * s;         \
                }                                                                      \
            }                                                                          \
        }                                                                              \
        int nf = n_filters - blk * FB < NB * FB ? (int)(n_filters - blk * FB) : NB * FB; \
        for (int k = 0; k < nt; k++) {                                                 \
            T* restrict pr = part + (t0 + k) * n_filters + blk * FB;                   \
            if (nf == NB * FB) {                                                       \
                for (int v = 0; v < NB * NVF; v++) {                                   \
                    V a;                                                               \
                    memcpy(&a, pr + v * L, sizeof a);                                  \
                    a += acc[k][v];                                                    \
                    memcpy(pr + v * L, &a, sizeof a);                                  \
                }                                                                      \
            } else {                                                                   \
                for (int l = 0; l < nf; l++) pr[l] += acc[k][l / L][l % L];            \
            }                                                                          \
        }                                                                              \
    }

/* The weight gradient vectorized over filters, for any stride, one padded sample:
   part[t * F + f] += sum_p xp[off(t) + base(p)] * dyt[p * ldt + f] over the Ho * Wo
   positions p = oh * Wo + ow, base(p) = oh * sh * Wp + ow * sw, for the taps
   t = (c * kh + i) * kw + j, off(t) = c * Hp * Wp + i * Wp + j, and with a bias
   part[K * F + f] += sum_p dyt[p * ldt + f].  dyt is dy transposed
   (CYNN_TRANSPOSE_DY), ldt a multiple of FB.  A tile of NT taps by one or NBM blocks
   of FB filters keeps its sums in registers over all the positions: each dy vector is
   loaded once for the NT taps and each input value broadcast to the filters, and no
   sum is ever reduced across lanes.  Each sum runs over the positions in order, then
   is added to part, whatever the tile. */
#define CYNN_FDIRECT_WGRAD_VB(NAME, T, SFX, VB, NT_, NBM_, ATTR)                       \
CYNN_KERNEL ATTR void NAME(const T* restrict xp, Py_ssize_t channels,                  \
        Py_ssize_t hp, Py_ssize_t wp, int kh, int kw, int sh, int sw, int ho, int wo,  \
        const T* restrict dyt, Py_ssize_t ldt, Py_ssize_t n_filters, int has_bias,     \
        T* restrict part) {                                                            \
    enum { L = VB / sizeof(T), FB = CYNN_FDIRECT_FB, NVF = FB / L, NT = NT_, NBM = NBM_ }; \
    typedef cynn_v##VB##SFX V;                                                         \
    Py_ssize_t taps = channels * kh * kw, plane = hp * wp, per_c = (Py_ssize_t)kh * kw; \
    Py_ssize_t blocks = (n_filters + FB - 1) / FB;                                     \
    for (Py_ssize_t t0 = 0; t0 < taps; t0 += NT) {                                     \
        int nt = taps - t0 < NT ? (int)(taps - t0) : NT;                               \
        const T* xt[NT];                                                               \
        for (int k = 0; k < NT; k++) {                                                 \
            Py_ssize_t t = t0 + (k < nt ? k : nt - 1), c = t / per_c, r = t - c * per_c; \
            xt[k] = xp + c * plane + (r / kw) * wp + r % kw;                           \
        }                                                                              \
        for (Py_ssize_t blk = 0; blk < blocks;) {                                      \
            if (NBM == 2 && blk + 1 < blocks) {                                        \
                CYNN_FDIRECT_WGRAD_TILE(2, T)                                          \
                blk += 2;                                                              \
            } else {                                                                   \
                CYNN_FDIRECT_WGRAD_TILE(1, T)                                          \
                blk += 1;                                                              \
            }                                                                          \
        }                                                                              \
    }                                                                                  \
    if (!has_bias) return;                                                             \
    Py_ssize_t p = (Py_ssize_t)ho * wo;                                                \
    for (Py_ssize_t blk = 0; blk < blocks; blk++) {                                    \
        V sum[NVF];                                                                    \
        for (int v = 0; v < NVF; v++) sum[v] = (V){0};                                 \
        for (Py_ssize_t q = 0; q < p; q++)                                             \
            for (int v = 0; v < NVF; v++) {                                            \
                V a;                                                                   \
                memcpy(&a, dyt + q * ldt + blk * FB + v * L, sizeof a);                \
                sum[v] += a;                                                           \
            }                                                                          \
        int nf = n_filters - blk * FB < FB ? (int)(n_filters - blk * FB) : FB;         \
        for (int l = 0; l < nf; l++)                                                   \
            part[taps * n_filters + blk * FB + l] += sum[l / L][l % L];                \
    }                                                                                  \
}

/* One tile of CYNN_FDIRECT_VB: NP positions from p0 by NB blocks of FB filters from
   block blk (block b's packed weights at wb + b * taps * FB). */
#define CYNN_FDIRECT_TILE(NB, T, SFX)                                                     \
    {                                                                                  \
        V acc[NP][NB * NVF];                                                           \
        for (int b = 0; b < NB; b++)                                                   \
            for (int v = 0; v < NVF; v++) {                                            \
                V bv;                                                                  \
                memcpy(&bv, bias + (blk + b) * FB + v * L, sizeof bv);                 \
                for (int k = 0; k < NP; k++) acc[k][b * NVF + v] = bv;                 \
            }                                                                          \
        const T* restrict w = wb;                                                      \
        for (Py_ssize_t c = 0; c < channels; c++) {                                    \
            Py_ssize_t oc = c * plane;                                                 \
            for (int i = 0; i < kh; i++) {                                             \
                Py_ssize_t oi = oc + (Py_ssize_t)i * wp;                               \
                for (int j = 0; j < kw; j++, w += FB) {                                \
                    V wv[NB * NVF];                                                    \
                    for (int b = 0; b < NB; b++)                                       \
                        for (int v = 0; v < NVF; v++)                                  \
                            memcpy(&wv[b * NVF + v], w + b * taps * FB + v * L, sizeof(V)); \
                    for (int k = 0; k < NP; k++) {                                     \
                        T s = px[k][oi + j];                                           \
                        for (int v = 0; v < NB * NVF; v++) acc[k][v] += wv[v] * s;     \
                    }                                                                  \
                }                                                                      \
            }                                                                          \
        }                                                                              \
        int nf = n_filters - blk * FB < NB * FB ? (int)(n_filters - blk * FB) : NB * FB; \
        T tile[NP * NB * FB];                                                          \
        memcpy(tile, acc, sizeof tile);                                                \
        cynn_fdirect_store_##SFX(tile, NP, NB * FB, nk, nf, out + blk * FB * ldo + p0, ldo); \
    }

#define CYNN_FDIRECT_VB(NAME, T, SFX, VB, NP_, NBM_, ATTR)                             \
CYNN_KERNEL ATTR void NAME(const T* restrict xp, Py_ssize_t channels,                  \
        Py_ssize_t hp, Py_ssize_t wp, int kh, int kw, int sh, int sw, int ho, int wo,  \
        const T* restrict wpk, Py_ssize_t n_filters, Py_ssize_t blk0, Py_ssize_t blk1, \
        T* restrict out, Py_ssize_t ldo) {                                             \
    enum { L = VB / sizeof(T), FB = CYNN_FDIRECT_FB, NVF = FB / L, NP = NP_, NBM = NBM_ }; \
    typedef cynn_v##VB##SFX V;                                                         \
    Py_ssize_t taps = channels * kh * kw, plane = hp * wp, pe = (Py_ssize_t)ho * wo;   \
    Py_ssize_t blocks = (n_filters + FB - 1) / FB;                                     \
    const T* restrict bias = wpk + blocks * taps * FB;                                 \
    /* positions per chunk: whole output rows whose input rows, about                  \
       C * (rows * sh + kh) * Wp values, take about 96 KB */                           \
    Py_ssize_t rows = ((Py_ssize_t)(98304 / sizeof(T)) / (channels * wp) - kh) / sh;   \
    Py_ssize_t chunk = (rows < 1 ? 1 : rows) * wo;                                     \
    chunk = chunk < NP ? NP : chunk;                                                   \
    for (Py_ssize_t c0 = 0; c0 < pe; c0 += chunk) {                                    \
        Py_ssize_t c1 = c0 + chunk < pe ? c0 + chunk : pe;                             \
        for (Py_ssize_t blk = blk0; blk < blk1;) {                                     \
            const T* restrict wb = wpk + blk * taps * FB;                              \
            int nb = NBM == 2 && blk + 1 < blk1 ? 2 : 1;                               \
            for (Py_ssize_t p0 = c0; p0 < c1; p0 += NP) {                              \
                int nk = c1 - p0 < NP ? (int)(c1 - p0) : NP;                           \
                const T* px[NP];                                                       \
                int oh = (int)(p0 / wo), ow = (int)(p0 - (Py_ssize_t)oh * wo);         \
                for (int k = 0; k < NP; k++) {                                         \
                    if (k < nk) {                                                      \
                        px[k] = xp + (Py_ssize_t)oh * sh * wp + (Py_ssize_t)ow * sw;   \
                        if (++ow == wo) { ow = 0; oh++; }                              \
                    } else {                                                           \
                        px[k] = k > 0 ? px[k - 1] : xp;                               \
                    }                                                                  \
                }                                                                      \
                if (NBM == 2 && nb == 2) CYNN_FDIRECT_TILE(2, T, SFX)                       \
                else CYNN_FDIRECT_TILE(1, T, SFX)                                           \
            }                                                                          \
            blk += nb;                                                                 \
        }                                                                              \
    }                                                                                  \
}

/* out rows f0..f1 (F, Ho, Wo) of one sample = the valid columns of the wide rows of buf
   (row f, pitch Wp), then plus ``add`` (the same shape as out, or NULL), then with
   ``relu`` 0 where the value is <= 0 (as ReLU): the epilogue a folded batch norm, a residual sum and a ReLU
   need, while the rows are in the cache. */
#define CYNN_WIDE_STORE(NAME, T, SFX)                                                  \
CYNN_KERNEL CYNN_WIDE void NAME(const T* restrict buf, Py_ssize_t ldb, Py_ssize_t pitch,  \
        Py_ssize_t f0, Py_ssize_t f1, int ho, int wo, const T* restrict add, int relu, \
        T* restrict out) {                                                             \
    Py_ssize_t plane = (Py_ssize_t)ho * wo;                                            \
    for (Py_ssize_t f = f0; f < f1; f++)                                               \
        for (int oh = 0; oh < ho; oh++) {                                              \
            const T* restrict s = buf + f * ldb + oh * pitch;                          \
            T* restrict d = out + f * plane + (Py_ssize_t)oh * wo;                     \
            if (add == NULL && !relu) {                                                \
                cynn_copy_row_##SFX(d, s, wo);                                         \
                continue;                                                              \
            }                                                                          \
            const T* restrict a = add != NULL ? add + f * plane + (Py_ssize_t)oh * wo : NULL; \
            for (int ow = 0; ow < wo; ow++) {                                          \
                T v = s[ow];                                                           \
                if (a != NULL) v += a[ow];                                             \
                d[ow] = relu && v <= 0 ? (T)0 : v;  /* as ReLU: NaN passes */     \
            }                                                                          \
        }                                                                              \
}

/* The weight gradient of the direct stride-1 convolution, one padded sample:
   part[t * F + f] += sum_q dyw[f * ldd + q] * xp[off[t] + q] over the wide grid
   q < nq (dyw holds dy on that grid, zero in the dropped columns and past Ho * Wp up
   to nq, a multiple of L), for the taps t = (c * kh + i) * kw + j with off[t] =
   c * Hp * Wp + i * Wp + j, and with a bias part[K * F + f] += the sum of row f.
   Tiles of WB filters by TB taps keep WB * TB vector sums in registers, each dy and
   input vector loaded once for the tile; each sum is reduced across its lanes in a
   fixed order.  dyw has rows up to a multiple of WB (the padding rows zero, their
   sums never stored), and xp is readable for L + kw values past its planes. */
#define CYNN_DIRECT_WGRAD_VB(NAME, T, SFX, VB, WB_, TB_, ATTR)                         \
CYNN_KERNEL ATTR void NAME(const T* restrict xp, const Py_ssize_t* restrict off,         \
        Py_ssize_t taps, const T* restrict dyw, Py_ssize_t ldd, Py_ssize_t n_filters,  \
        Py_ssize_t nq, int has_bias, T* restrict part) {                               \
    enum { L = VB / sizeof(T), WB = WB_, TB = TB_ };                                   \
    typedef cynn_v##VB##SFX V;                                                         \
    for (Py_ssize_t t0 = 0; t0 < taps; t0 += TB) {                                     \
        int nt = taps - t0 < TB ? (int)(taps - t0) : TB;                               \
        const T* xt[TB];                                                               \
        for (int k = 0; k < TB; k++) xt[k] = xp + off[t0 + (k < nt ? k : nt - 1)];    \
        for (Py_ssize_t f0 = 0; f0 < n_filters; f0 += WB) {                            \
            const T* restrict d = dyw + f0 * ldd;                                      \
            V sums[WB][TB];                                                            \
            for (int r = 0; r < WB; r++)                                               \
                for (int k = 0; k < TB; k++) sums[r][k] = (V){0};                      \
            for (Py_ssize_t q = 0; q < nq; q += L) {                                   \
                V xv[TB], dv[WB];                                                      \
                for (int k = 0; k < TB; k++) memcpy(&xv[k], xt[k] + q, sizeof(V));     \
                for (int r = 0; r < WB; r++) memcpy(&dv[r], d + r * ldd + q, sizeof(V)); \
                for (int r = 0; r < WB; r++)                                           \
                    for (int k = 0; k < TB; k++) sums[r][k] += dv[r] * xv[k];          \
            }                                                                          \
            for (int r = 0; r < WB && f0 + r < n_filters; r++)                         \
                for (int k = 0; k < nt; k++) {                                         \
                    T acc = 0;                                                         \
                    for (int l = 0; l < L; l++) acc += sums[r][k][l];                  \
                    part[(t0 + k) * n_filters + f0 + r] += acc;                        \
                }                                                                      \
        }                                                                              \
    }                                                                                  \
    if (has_bias)                                                                      \
        for (Py_ssize_t f = 0; f < n_filters; f++) {                                   \
            V s = {0}, d;                                                              \
            for (Py_ssize_t q = 0; q < nq; q += L) {                                   \
                memcpy(&d, dyw + f * ldd + q, sizeof d);                               \
                s += d;                                                                \
            }                                                                          \
            T acc = 0;                                                                 \
            for (int l = 0; l < L; l++) acc += s[l];                                   \
            part[taps * n_filters + f] += acc;                                         \
        }                                                                              \
}

/* The wide-grid weight gradient on 32-byte vectors, tiles of 3 filters by 3 taps, or
   with ``v64`` on 64-byte ones, tiles of 4 filters by 5 taps (32 vector registers):
   dyw's rows padded to a multiple of cynn_wgrad_wb(v64), nq a multiple of the vector.
   Each sum is reduced across the vector's lanes, so the two widths may round
   differently (each is the same for any thread count). */
static inline __attribute__((unused)) int cynn_wgrad_wb(int v64) { return v64 ? 4 : 3; }
#define CYNN_DIRECT_WGRAD(NAME, T, SFX)                                                \
CYNN_DIRECT_WGRAD_VB(NAME##_y, T, SFX, 32, 3, 3, CYNN_WIDE)                            \
CYNN_DIRECT_WGRAD_VB(NAME##_z, T, SFX, 64, 4, 5, CYNN_V64)                             \
CYNN_KERNEL void NAME(const T* xp, const Py_ssize_t* off, Py_ssize_t taps, const T* dyw, \
        Py_ssize_t ldd, Py_ssize_t n_filters, Py_ssize_t nq, int has_bias, T* part,     \
        int v64) {                                                                     \
    (v64 ? NAME##_z : NAME##_y)(xp, off, taps, dyw, ldd, n_filters, nq, has_bias, part); \
}

/* dyw (rows f < F padded to ``rows``, ldd) = dy (F, Ho, Wo) of one sample on the wide
   grid of pitch Wp: zero in the columns ow >= Wo, past Ho * Wp and in rows >= F. */
#define CYNN_TO_WIDE(NAME, T, SFX)                                                     \
CYNN_KERNEL void NAME(const T* restrict dy, Py_ssize_t n_filters, int ho, int wo,       \
        Py_ssize_t wp, Py_ssize_t rows, Py_ssize_t ldd, T* restrict dyw) {             \
    Py_ssize_t plane = (Py_ssize_t)ho * wo;                                            \
    memset(dyw, 0, rows * ldd * sizeof(T));                                            \
    for (Py_ssize_t f = 0; f < n_filters; f++)                                         \
        for (int oh = 0; oh < ho; oh++)                                                \
            memcpy(dyw + f * ldd + oh * wp, dy + f * plane + (Py_ssize_t)oh * wo,      \
                   wo * sizeof(T));                                                    \
}

/* The evaluation-mode epilogue with max pooling: out rows f0..f1 (F, Po, Qo) of one
   sample = max pooling (window pkh x pkw, stride psh x psw, no padding) of the rows of
   buf (F, Ho, Wo at pitch ``pitch``) plus ``add`` (F, Ho, Wo, or NULL), with ``relu``
   0 where <= 0, in that order, as the layers would run one by one.  ``tmp`` holds
   pkh * Wo values.  Windows are taken in row-major order with a strict '>', and a NaN
   once taken stays, as MaxPool2d does. */
#define CYNN_POOL_STORE(NAME, T, SFX)                                                  \
CYNN_KERNEL CYNN_WIDE void NAME(const T* restrict buf, Py_ssize_t ldb, Py_ssize_t pitch,  \
        Py_ssize_t f0, Py_ssize_t f1, int ho, int wo, const T* restrict add, int relu, \
        int pkh, int pkw, int psh, int psw, int po, int qo, T* restrict tmp,           \
        T* restrict out) {                                                             \
    Py_ssize_t plane = (Py_ssize_t)ho * wo;                                            \
    if (add == NULL && pkh == 2 && pkw == 2 && psw == 2) {                             \
        /* The ReLU after the pooling instead of before: the same bits (a window's     \
           first NaN wins either way, the ReLU keeps it, and it is monotone), without  \
           copying the rows to tmp first. */                                           \
        for (Py_ssize_t f = f0; f < f1; f++) {                                         \
            T* restrict d = out + f * po * (Py_ssize_t)qo;                             \
            for (int i = 0; i < po; i++) {                                             \
                const T* r0 = buf + f * ldb + (Py_ssize_t)i * psh * pitch;             \
                cynn_max2x2_row_##SFX(r0, r0 + pitch, d + (Py_ssize_t)i * qo, NULL, qo, 0, \
                                      (int)pitch);                                     \
            }                                                                          \
            if (relu) /* over the filter's whole plane: long enough to vectorize */     \
                for (Py_ssize_t j = 0; j < (Py_ssize_t)po * qo; j++)                   \
                    d[j] = d[j] <= 0 ? (T)0 : d[j];                                    \
        }                                                                              \
        return;                                                                        \
    }                                                                                  \
    for (Py_ssize_t f = f0; f < f1; f++)                                               \
        for (int i = 0; i < po; i++) {                                                 \
            for (int a = 0; a < pkh; a++) {                                            \
                Py_ssize_t oh = (Py_ssize_t)i * psh + a;                               \
                const T* restrict s = buf + f * ldb + oh * pitch;                      \
                const T* restrict ad = add != NULL ? add + f * plane + oh * wo : NULL; \
                T* restrict t = tmp + (Py_ssize_t)a * wo;                              \
                for (int ow = 0; ow < wo; ow++) {                                      \
                    T v = s[ow];                                                       \
                    if (ad != NULL) v += ad[ow];                                       \
                    t[ow] = relu && v <= 0 ? (T)0 : v;                                 \
                }                                                                      \
            }                                                                          \
            T* restrict d = out + (f * po + i) * (Py_ssize_t)qo;                       \
            if (pkh == 2 && pkw == 2 && psw == 2) {                                    \
                cynn_max2x2_row_##SFX(tmp, tmp + wo, d, NULL, qo, 0, wo);               \
                continue;                                                              \
            }                                                                          \
            for (int j = 0; j < qo; j++) {                                             \
                const T* restrict t = tmp + (Py_ssize_t)j * psw;                       \
                T best = t[0];                                                         \
                for (int a = 0; a < pkh; a++)                                          \
                    for (int b = 0; b < pkw; b++) {                                    \
                        T v = t[(Py_ssize_t)a * wo + b];                               \
                        _Bool take = CYNN_MAX_TAKES(v, best);                          \
                        best = take ? v : best;                                        \
                    }                                                                  \
                d[j] = best;                                                           \
            }                                                                          \
        }                                                                              \
}


/* Each filter-vector kernel twice, 32- and 64-byte vectors (tiles of 12 and 24 vector
   sums: the 64-byte one has 32 vector registers), and the one the caller names picks
   by cynn_v64_enabled (cynn_common.h).  The same sums in the same order either way. */
#define CYNN_DIRECT(NAME, T, SFX)                                                      \
CYNN_DIRECT_VB(NAME##_y, T, SFX, 32, CYNN_WIDE)                                        \
CYNN_DIRECT_VB(NAME##_z, T, SFX, 64, CYNN_V64)                                         \
CYNN_KERNEL void NAME(const T* xp, Py_ssize_t channels, Py_ssize_t hp, Py_ssize_t wp,   \
        int kh, int kw, const T* wpk, Py_ssize_t n_blocks, Py_ssize_t blk0,            \
        Py_ssize_t blk1, T* buf, Py_ssize_t ldb, Py_ssize_t nq) {                      \
    (cynn_v64_enabled ? NAME##_z : NAME##_y)(xp, channels, hp, wp, kh, kw, wpk, n_blocks, \
        blk0, blk1, buf, ldb, nq);                                                     \
}
#define CYNN_FDIRECT(NAME, T, SFX)                                                     \
CYNN_FDIRECT_VB(NAME##_y, T, SFX, 32, 12 * 32 / CYNN_FDIRECT_FB / (int)sizeof(T), 1, CYNN_WIDE)                                   \
CYNN_FDIRECT_VB(NAME##_z, T, SFX, 64, 8, sizeof(T) == 4 ? 2 : 1, CYNN_V64)                                    \
CYNN_KERNEL void NAME(const T* xp, Py_ssize_t channels, Py_ssize_t hp, Py_ssize_t wp,   \
        int kh, int kw, int sh, int sw, int ho, int wo, const T* wpk,                  \
        Py_ssize_t n_filters, Py_ssize_t blk0, Py_ssize_t blk1, T* out, Py_ssize_t ldo) { \
    (cynn_v64_enabled ? NAME##_z : NAME##_y)(xp, channels, hp, wp, kh, kw, sh, sw, ho, \
        wo, wpk, n_filters, blk0, blk1, out, ldo);                                     \
}
#define CYNN_FDIRECT_WGRAD(NAME, T, SFX)                                               \
CYNN_FDIRECT_WGRAD_VB(NAME##_y, T, SFX, 32, 12 * 32 / CYNN_FDIRECT_FB / (int)sizeof(T), 1, CYNN_WIDE)                             \
CYNN_FDIRECT_WGRAD_VB(NAME##_z, T, SFX, 64, 12, sizeof(T) == 4 ? 2 : 1, CYNN_V64)                              \
CYNN_KERNEL void NAME(const T* xp, Py_ssize_t channels, Py_ssize_t hp, Py_ssize_t wp,   \
        int kh, int kw, int sh, int sw, int ho, int wo, const T* dyt, Py_ssize_t ldt,  \
        Py_ssize_t n_filters, int has_bias, T* part) {                                 \
    (cynn_v64_enabled ? NAME##_z : NAME##_y)(xp, channels, hp, wp, kh, kw, sh, sw, ho, \
        wo, dyt, ldt, n_filters, has_bias, part);                                      \
}

CYNN_FLOAT_AND_DOUBLE(CYNN_COPY_ROW, cynn_copy_row)
CYNN_FLOAT_AND_DOUBLE(CYNN_DIRECT_PACK, cynn_direct_pack)
CYNN_FLOAT_AND_DOUBLE(CYNN_DIRECT, cynn_direct)
CYNN_FLOAT_AND_DOUBLE(CYNN_FDIRECT_STORE, cynn_fdirect_store)
CYNN_FLOAT_AND_DOUBLE(CYNN_FDIRECT, cynn_fdirect)
CYNN_FLOAT_AND_DOUBLE(CYNN_TRANSPOSE_DY, cynn_transpose_dy)
CYNN_FLOAT_AND_DOUBLE(CYNN_FDIRECT_WGRAD, cynn_fdirect_wgrad)
CYNN_FLOAT_AND_DOUBLE(CYNN_WIDE_STORE, cynn_wide_store)
CYNN_FLOAT_AND_DOUBLE(CYNN_POOL_STORE, cynn_pool_store)
CYNN_FLOAT_AND_DOUBLE(CYNN_DIRECT_WGRAD, cynn_direct_wgrad)
CYNN_FLOAT_AND_DOUBLE(CYNN_TO_WIDE, cynn_to_wide)
CYNN_FLOAT_AND_DOUBLE(CYNN_IM2COL, cynn_im2col)
CYNN_FLOAT_AND_DOUBLE(CYNN_COL2IM, cynn_col2im)

#endif /* CYNN_CONV_H */
