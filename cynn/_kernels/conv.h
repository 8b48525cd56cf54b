/* Conv2d's C loops (conv.pyx): im2col and col2im over a zero-padded copy of one
   sample, (C, Hp, Wp), and a direct stride-1 convolution for few taps.  Every patch
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

/* Direct stride-1 convolution of one padded sample for few taps (K = C * kh * kw no
   more than conv.pyx's threshold, set_direct_max_taps, which CYNN_DIRECT_TAPS, the
   size of the offset table, bounds) and rows of at least one vector (L values):
   blocks of four filters, each input vector loaded once for the four; out = bias +
   the taps in order.  A row that is not a multiple of L ends with a vector
   overlapping the previous one (the same values, stored again). */
#define CYNN_DIRECT_TAPS 32
#define CYNN_DIRECT(NAME, T, SFX)                                                      \
CYNN_KERNEL CYNN_WIDE void NAME(const T* restrict xp, Py_ssize_t channels,             \
        Py_ssize_t hp, Py_ssize_t wp, const T* restrict w, Py_ssize_t ldw,             \
        Py_ssize_t n_filters, int has_bias, int kh, int kw, T* restrict out,           \
        int ho, int wo) {                                                              \
    enum { L = 64 / sizeof(T) };                                                       \
    Py_ssize_t off[CYNN_DIRECT_TAPS], taps = 0, plane = (Py_ssize_t)ho * wo;           \
    for (Py_ssize_t c = 0; c < channels; c++)                                          \
        for (int i = 0; i < kh; i++)                                                   \
            for (int j = 0; j < kw; j++)                                               \
                off[taps++] = (c * hp + i) * wp + j;                                   \
    for (Py_ssize_t f = 0; f < n_filters; f += 4) {                                    \
        int nf = n_filters - f < 4 ? (int)(n_filters - f) : 4;                         \
        const T* restrict w0 = w + f * ldw;                                            \
        const T* restrict w1 = nf > 1 ? w0 + ldw : w0;                                 \
        const T* restrict w2 = nf > 2 ? w0 + 2 * ldw : w0;                             \
        const T* restrict w3 = nf > 3 ? w0 + 3 * ldw : w0;                             \
        T b0 = has_bias ? w0[taps] : 0, b1 = has_bias ? w1[taps] : 0;                  \
        T b2 = has_bias ? w2[taps] : 0, b3 = has_bias ? w3[taps] : 0;                  \
        for (int oh = 0; oh < ho; oh++) {                                              \
            const T* row = xp + (Py_ssize_t)oh * wp;                                   \
            T* o = out + f * plane + (Py_ssize_t)oh * wo;                              \
            for (int ow0 = 0; ow0 < wo; ow0 += L) {                                    \
                int ow = ow0 + L <= wo ? ow0 : wo - L;                                 \
                cynn_v64##SFX a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, v;               \
                a0 = a0 + b0; a1 = a1 + b1; a2 = a2 + b2; a3 = a3 + b3;                \
                for (Py_ssize_t t = 0; t < taps; t++) {                                \
                    memcpy(&v, row + off[t] + ow, sizeof v);                           \
                    a0 = a0 + v * w0[t]; a1 = a1 + v * w1[t];                          \
                    a2 = a2 + v * w2[t]; a3 = a3 + v * w3[t];                          \
                }                                                                      \
                memcpy(o + ow, &a0, sizeof a0);                                        \
                if (nf > 1) memcpy(o + plane + ow, &a1, sizeof a1);                    \
                if (nf > 2) memcpy(o + 2 * plane + ow, &a2, sizeof a2);                \
                if (nf > 3) memcpy(o + 3 * plane + ow, &a3, sizeof a3);                \
            }                                                                          \
        }                                                                              \
    }                                                                                  \
}

CYNN_FLOAT_AND_DOUBLE(CYNN_COPY_ROW, cynn_copy_row)
CYNN_FLOAT_AND_DOUBLE(CYNN_DIRECT, cynn_direct)
CYNN_FLOAT_AND_DOUBLE(CYNN_IM2COL, cynn_im2col)
CYNN_FLOAT_AND_DOUBLE(CYNN_COL2IM, cynn_col2im)

#endif /* CYNN_CONV_H */
