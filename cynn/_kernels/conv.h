/* Conv2d's C loops (conv.pyx): im2col and col2im over a zero-padded copy of one
   sample, (C, Hp, Wp), and the direct stride-1 convolution.  Every patch
   read is in bounds of the padded copy, so the loops need no edge cases and run as
   plain strided copies and adds that the compiler vectorizes. */
#ifndef CYNN_CONV_H
#define CYNN_CONV_H

#include "cynn_common.h"

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

   The weights come packed by CYNN_DIRECT_PACK (each filter times its ``scale``, when
   given: a folded batch norm): blocks of FB filters, each tap's FB weights side by side, the last block padded with zero filters, then the bias of
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
CYNN_KERNEL void NAME(const T* restrict w, Py_ssize_t ldw, Py_ssize_t n_filters,        \
        Py_ssize_t taps, const T* restrict bias, Py_ssize_t bias_stride,               \
        const T* restrict scale, T* restrict wpk) {                                    \
    enum { FB = CYNN_DIRECT_FB };                                                      \
    Py_ssize_t blocks = (n_filters + FB - 1) / FB;                                     \
    for (Py_ssize_t blk = 0; blk < blocks; blk++)                                      \
        for (Py_ssize_t t = 0; t < taps; t++)                                          \
            for (int r = 0; r < FB; r++) {                                             \
                Py_ssize_t f = blk * FB + r;                                           \
                wpk[(blk * taps + t) * FB + r] = f >= n_filters ? (T)0                 \
                    : scale != NULL ? w[f * ldw + t] * scale[f] : w[f * ldw + t];      \
            }                                                                          \
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

#define CYNN_DIRECT(NAME, T, SFX)                                                      \
CYNN_KERNEL CYNN_WIDE void NAME(const T* restrict xp, Py_ssize_t channels,             \
        Py_ssize_t hp, Py_ssize_t wp, int kh, int kw, const T* restrict wpk,           \
        Py_ssize_t n_blocks, Py_ssize_t blk0, Py_ssize_t blk1, T* restrict buf,        \
        Py_ssize_t ldb, Py_ssize_t nq) {                                               \
    enum { L = 32 / sizeof(T), FB = CYNN_DIRECT_FB, NV = CYNN_DIRECT_NV, Q = NV * L }; \
    typedef cynn_v32##SFX V;                                                           \
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
enum { CYNN_WGRAD_WB = 3, CYNN_WGRAD_TB = 3 };
#define CYNN_DIRECT_WGRAD(NAME, T, SFX)                                                \
CYNN_KERNEL CYNN_WIDE void NAME(const T* restrict xp, const Py_ssize_t* restrict off,    \
        Py_ssize_t taps, const T* restrict dyw, Py_ssize_t ldd, Py_ssize_t n_filters,  \
        Py_ssize_t nq, int has_bias, T* restrict part) {                               \
    enum { L = 32 / sizeof(T), WB = CYNN_WGRAD_WB, TB = CYNN_WGRAD_TB };               \
    typedef cynn_v32##SFX V;                                                           \
    for (Py_ssize_t t0 = 0; t0 < taps; t0 += TB) {                                     \
        int nt = taps - t0 < TB ? (int)(taps - t0) : TB;                               \
        const T* x0 = xp + off[t0];                                                    \
        const T* x1 = xp + off[t0 + (nt > 1)];                                         \
        const T* x2 = xp + off[t0 + (nt > 2) * 2];                                     \
        for (Py_ssize_t f0 = 0; f0 < n_filters; f0 += WB) {                            \
            const T* restrict d0 = dyw + f0 * ldd;                                     \
            const T* restrict d1 = d0 + ldd;                                           \
            const T* restrict d2 = d1 + ldd;                                           \
            V s00 = {0}, s01 = {0}, s02 = {0}, s10 = {0}, s11 = {0}, s12 = {0};        \
            V s20 = {0}, s21 = {0}, s22 = {0};                                         \
            for (Py_ssize_t q = 0; q < nq; q += L) {                                   \
                V a, b, c, u, v, w;                                                    \
                memcpy(&a, x0 + q, sizeof a); memcpy(&b, x1 + q, sizeof b);            \
                memcpy(&c, x2 + q, sizeof c);                                          \
                memcpy(&u, d0 + q, sizeof u); memcpy(&v, d1 + q, sizeof v);            \
                memcpy(&w, d2 + q, sizeof w);                                          \
                s00 += u * a; s01 += u * b; s02 += u * c;                              \
                s10 += v * a; s11 += v * b; s12 += v * c;                              \
                s20 += w * a; s21 += w * b; s22 += w * c;                              \
            }                                                                          \
            V sums[WB][TB] = {{s00, s01, s02}, {s10, s11, s12}, {s20, s21, s22}};      \
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
                const T* restrict t0 = tmp;                                            \
                const T* restrict t1 = tmp + wo;                                       \
                for (int j = 0; j < qo; j++) {                                         \
                    T best = t0[2 * j], v;                                             \
                    _Bool take;                                                        \
                    v = t0[2 * j + 1];                                                 \
                    take = CYNN_MAX_TAKES(v, best);                                    \
                    best = take ? v : best;                                            \
                    v = t1[2 * j];                                                     \
                    take = CYNN_MAX_TAKES(v, best);                                    \
                    best = take ? v : best;                                            \
                    v = t1[2 * j + 1];                                                 \
                    take = CYNN_MAX_TAKES(v, best);                                    \
                    best = take ? v : best;                                            \
                    d[j] = best;                                                       \
                }                                                                      \
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

CYNN_FLOAT_AND_DOUBLE(CYNN_COPY_ROW, cynn_copy_row)
CYNN_FLOAT_AND_DOUBLE(CYNN_DIRECT_PACK, cynn_direct_pack)
CYNN_FLOAT_AND_DOUBLE(CYNN_DIRECT, cynn_direct)
CYNN_FLOAT_AND_DOUBLE(CYNN_WIDE_STORE, cynn_wide_store)
CYNN_FLOAT_AND_DOUBLE(CYNN_POOL_STORE, cynn_pool_store)
CYNN_FLOAT_AND_DOUBLE(CYNN_DIRECT_WGRAD, cynn_direct_wgrad)
CYNN_FLOAT_AND_DOUBLE(CYNN_TO_WIDE, cynn_to_wide)
CYNN_FLOAT_AND_DOUBLE(CYNN_IM2COL, cynn_im2col)
CYNN_FLOAT_AND_DOUBLE(CYNN_COL2IM, cynn_col2im)

#endif /* CYNN_CONV_H */
