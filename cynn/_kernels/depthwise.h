/* Depthwise Conv2d's C loops (depthwise.pyx): one input plane at a time, no im2col.

   Every loop reads a small per-thread copy of one plane, zero-padded and, for a
   column stride sw > 1, split into sw column phases: row r of the copy holds sw runs
   of lp values, run p holding the padded columns p, p + sw, p + 2 sw, ...  Tap j of
   output column ow then reads run j % sw at index j / sw + ow, so that every tap of
   every stride is a contiguous row slice, with no bounds test and no gather, and an
   output row is a handful of vector loads and multiply-adds.

   The loops are written with GCC vector types (cynn_common.h) of 64, 32 and 16 bytes,
   the widest whose lane count does not exceed the row length, then one value at a
   time for rows shorter than that.  A row that is not a multiple of the lane count
   ends with a vector overlapping the previous one: the forward stores the same values
   again; a reduction masks the lanes it has already counted.

   3x3 kernels get unrolled loops; with stride 1 down the rows, each loaded input
   vector serves every output row that uses it (the forward ones add the same terms in
   the same order as the generic loops).  The hot functions are cloned per x86-64 level (AVX-512,
   AVX2 with FMA, baseline), picked once at load time. */
#ifndef CYNN_DEPTHWISE_H
#define CYNN_DEPTHWISE_H

#include <stdint.h>
#include "cynn_common.h"

typedef float cynn_dw_v16f __attribute__((vector_size(16)));
typedef double cynn_dw_v16d __attribute__((vector_size(16)));
/* Vectors of as many doubles as a 64- or 32-byte vector of T has lanes. */
typedef double cynn_dw_d64f __attribute__((vector_size(128)));
typedef double cynn_dw_d32f __attribute__((vector_size(64)));
typedef double cynn_dw_d64d __attribute__((vector_size(64)));
typedef double cynn_dw_d32d __attribute__((vector_size(32)));
/* The integer lane types of the same widths, for masks. */
typedef int32_t cynn_dw_if;
typedef int64_t cynn_dw_id;
typedef int32_t cynn_dw_i64f __attribute__((vector_size(64)));
typedef int32_t cynn_dw_i32f __attribute__((vector_size(32)));
typedef int32_t cynn_dw_i16f __attribute__((vector_size(16)));
typedef int64_t cynn_dw_i64d __attribute__((vector_size(64)));
typedef int64_t cynn_dw_i32d __attribute__((vector_size(32)));
typedef int64_t cynn_dw_i16d __attribute__((vector_size(16)));

/* Clones like cynn_common.h's CYNN_WIDE, but by x86-64 level: "avx2" alone has no
   FMA, so that clone would run every multiply-add as a multiply and an add; level v3
   is AVX2 with FMA, v4 the AVX-512 set.  GCC 12 knows the levels; an older one gets
   CYNN_WIDE. */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12 && defined(__x86_64__) \
    && defined(__linux__) && defined(__GLIBC__)
#define CYNN_DW_WIDE __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3",  \
                                                  "default")))
#else
#define CYNN_DW_WIDE CYNN_WIDE
#endif

/* Terms per vector lane that a reduction adds in the element type before it adds the
   lane sums into its double accumulators (see CYNN_DW_CORR_TIER). */
#define CYNN_DW_LANE_TERMS 64

/* d[0, n) = s[0, n) in 32- and 16-byte moves, a row that is not a multiple of the
   move ending with one overlapping the previous: the vectorizer's own loop, with its
   run-time checks and epilogues, costs several times more on rows of a few dozen
   values. */
#define CYNN_DW_ROWS(NAME, T, SFX)                                                     \
static inline __attribute__((always_inline)) void NAME##_copy(T* restrict d,           \
        const T* restrict s, Py_ssize_t n) {                                           \
    enum { B = 32 / sizeof(T) };                                                       \
    cynn_v32##SFX v;   /* through a vector: memcpy(d, s, 32) may move 16 bytes twice */ \
    cynn_dw_v16##SFX u;                                                                \
    if (n >= B) {                                                                      \
        Py_ssize_t t = 0;                                                              \
        for (; t + B <= n; t += B) {                                                   \
            memcpy(&v, s + t, sizeof v);                                               \
            memcpy(d + t, &v, sizeof v);                                               \
        }                                                                              \
        if (t < n) {                                                                   \
            memcpy(&v, s + n - B, sizeof v);                                           \
            memcpy(d + n - B, &v, sizeof v);                                           \
        }                                                                              \
    } else if (n >= B / 2) {                                                           \
        memcpy(&u, s, sizeof u);                                                       \
        memcpy(d, &u, sizeof u);                                                       \
        memcpy(&u, s + n - B / 2, sizeof u);                                           \
        memcpy(d + n - B / 2, &u, sizeof u);                                           \
    } else {                                                                           \
        for (Py_ssize_t t = 0; t < n; t++) d[t] = s[t];                                \
    }                                                                                  \
}

/* The run indices k of phase p whose padded column k * sw + p - left is an input
   column in [0, w): k in [*k0, *k1), k1 at most lp (divisions once per phase, on
   non-negative numbers). */
static inline void cynn_dw_phase_range(Py_ssize_t p, Py_ssize_t sw, Py_ssize_t left,
                                       Py_ssize_t w, Py_ssize_t lp, Py_ssize_t* k0,
                                       Py_ssize_t* k1) {
    Py_ssize_t lo = left - p > 0 ? (left - p + sw - 1) / sw : 0;
    Py_ssize_t hi = w + left - p > 0 ? (w + left - p + sw - 1) / sw : 0;
    if (hi > lp) hi = lp;
    if (hi < lo) hi = lo;
    *k0 = lo;
    *k1 = hi;
}

CYNN_DW_ROWS(cynn_dw_rows_f, float, f)
CYNN_DW_ROWS(cynn_dw_rows_d, double, d)

/* buf (rows, sw, lp): buf[(r * sw + p) * lp + k] = x[r - top, k * sw + p - left] where
   that lies inside the (h, w) plane x.  Only those places are written: the others,
   the padding, are the same for every plane of a call, so the caller zeroes the
   buffer once and reuses it for plane after plane.  top and left may be negative (the
   stride-1 input gradient crops dy when the padding exceeds kernel - 1).  x may be
   NULL when h or w is 0. */
#define CYNN_DW_PAD(NAME, T, SFX)                                                      \
CYNN_KERNEL CYNN_NO_MEMCPY CYNN_DW_WIDE void NAME(const T* restrict x, Py_ssize_t h,   \
        Py_ssize_t w, Py_ssize_t top, Py_ssize_t left, Py_ssize_t sw, Py_ssize_t rows, \
        Py_ssize_t lp, T* restrict buf) {                                              \
    /* input rows [ih0, ih1) land on buffer rows ih + top */                           \
    Py_ssize_t ih0 = top < 0 ? -top : 0, ih1 = rows - top < h ? rows - top : h;        \
    if (w == 0) return;                                                                \
    if (sw == 1) {                                                                     \
        /* buffer columns [k0, k1) read input columns k - left */                      \
        Py_ssize_t k0 = left > 0 ? left : 0, k1 = left + w < lp ? left + w : lp;       \
        if (k1 <= k0) return;                                                          \
        for (Py_ssize_t ih = ih0; ih < ih1; ih++)                                      \
            cynn_dw_rows_##SFX##_copy(buf + (ih + top) * lp + k0,                      \
                                      x + ih * w + (k0 - left), k1 - k0);              \
        return;                                                                        \
    }                                                                                  \
    if (sw == 2 && left >= 0) {                                                        \
        /* input columns 2 m and 2 m + 1 go to padded columns left + 2 m and left +     \
           2 m + 1, one in each phase: a de-interleave (UNPAD's inverse) */            \
        const Py_ssize_t ev = (left % 2) * lp + left / 2;                              \
        const Py_ssize_t od = ((left + 1) % 2) * lp + (left + 1) / 2;                  \
        const Py_ssize_t ne = lp - left / 2, no = lp - (left + 1) / 2;  /* room */     \
        Py_ssize_t pairs = w / 2;                                                      \
        if (pairs > ne) pairs = ne;                                                    \
        if (pairs > no) pairs = no;                                                    \
        if (pairs < 0) pairs = 0;                                                      \
        for (Py_ssize_t ih = ih0; ih < ih1; ih++) {                                    \
            const T* restrict s = x + ih * w;                                          \
            T* restrict d = buf + (ih + top) * 2 * lp;                                 \
            for (Py_ssize_t m = 0; m < pairs; m++) {                                   \
                d[ev + m] = s[2 * m];                                                  \
                d[od + m] = s[2 * m + 1];                                              \
            }                                                                          \
            for (Py_ssize_t iw = 2 * pairs; iw < w; iw++) {                            \
                if (iw % 2 == 0 && iw / 2 < ne) d[ev + iw / 2] = s[iw];                \
                if (iw % 2 == 1 && iw / 2 < no) d[od + iw / 2] = s[iw];                \
            }                                                                          \
        }                                                                              \
        return;                                                                        \
    }                                                                                  \
    for (Py_ssize_t p = 0; p < sw; p++) {                                              \
        Py_ssize_t k0, k1;                                                             \
        cynn_dw_phase_range(p, sw, left, w, lp, &k0, &k1);                             \
        for (Py_ssize_t ih = ih0; ih < ih1; ih++) {                                    \
            const T* restrict s = x + ih * w;                                          \
            T* restrict d = buf + ((ih + top) * sw + p) * lp;                          \
            for (Py_ssize_t k = k0; k < k1; k++) d[k] = s[k * sw + p - left];          \
        }                                                                              \
    }                                                                                  \
}

/* The inverse of CYNN_DW_PAD with top, left >= 0: x[ih, iw] = the buffer value of
   padded row ih + top, padded column iw + left; 0 where that lies outside the buffer
   (input the windows never reach). */
#define CYNN_DW_UNPAD(NAME, T, SFX)                                                    \
CYNN_KERNEL CYNN_NO_MEMCPY CYNN_DW_WIDE void NAME(const T* restrict buf,               \
        Py_ssize_t rows, Py_ssize_t lp, Py_ssize_t sw, Py_ssize_t top, Py_ssize_t left, \
        T* restrict x, Py_ssize_t h, Py_ssize_t w) {                                   \
    for (Py_ssize_t ih = 0; ih < h; ih++) {                                            \
        Py_ssize_t r = ih + top;                                                       \
        T* restrict d = x + ih * w;                                                    \
        if (r >= rows) {                                                               \
            memset(d, 0, (size_t)w * sizeof(T));                                       \
            continue;                                                                  \
        }                                                                              \
        const T* restrict s = buf + r * sw * lp;                                       \
        if (sw == 1) {                                                                 \
            Py_ssize_t n = lp - left < w ? lp - left : w;                              \
            if (n < 0) n = 0;                                                          \
            if (n > 0) memcpy(d, s + left, (size_t)n * sizeof(T));                     \
            memset(d + n, 0, (size_t)(w - n) * sizeof(T));                             \
        } else if (sw == 2) {                                                          \
            /* input columns 2 m and 2 m + 1 are padded columns left + 2 m (phase       \
               left % 2) and left + 2 m + 1 (the other phase): an interleave */        \
            const Py_ssize_t ev = (left % 2) * lp + left / 2;                          \
            const Py_ssize_t od = ((left + 1) % 2) * lp + (left + 1) / 2;              \
            const Py_ssize_t ne = lp - left / 2, no = lp - (left + 1) / 2;  /* runs */  \
            Py_ssize_t pairs = w / 2;                                                  \
            if (pairs > ne) pairs = ne;                                                \
            if (pairs > no) pairs = no;                                                \
            if (pairs < 0) pairs = 0;                                                  \
            for (Py_ssize_t m = 0; m < pairs; m++) {                                   \
                d[2 * m] = s[ev + m];                                                  \
                d[2 * m + 1] = s[od + m];                                              \
            }                                                                          \
            for (Py_ssize_t iw = 2 * pairs; iw < w; iw++)                              \
                d[iw] = iw % 2 == 0 ? (iw / 2 < ne ? s[ev + iw / 2] : (T)0)            \
                                    : (iw / 2 < no ? s[od + iw / 2] : (T)0);           \
        } else {                                                                       \
            /* phase by phase: padded column k * sw + p is input column k * sw + p -    \
               left */                                                                 \
            for (Py_ssize_t p = 0; p < sw; p++) {                                      \
                Py_ssize_t k0, k1;                                                     \
                cynn_dw_phase_range(p, sw, left, w, lp, &k0, &k1);                     \
                const T* restrict sp = s + p * lp;                                     \
                for (Py_ssize_t k = k0; k < k1; k++) d[k * sw + p - left] = sp[k];     \
            }                                                                          \
            /* input columns past the last padded column the buffer holds */           \
            for (Py_ssize_t iw = lp * sw - left > 0 ? lp * sw - left : 0; iw < w; iw++) \
                d[iw] = 0;                                                             \
        }                                                                              \
    }                                                                                  \
}

/* out (ho, wo) = bias + sum over t of w[t] * src[oh * rstride + off[t] + ow], the taps
   in order, accumulated in T (at most kh * kw * m terms, as in PyTorch).  V is the
   vector type (or T itself) of L = sizeof(V) / sizeof(T) <= wo lanes. */
#define CYNN_DW_DIRECT_TIER(NAME, T, V)                                                \
static inline __attribute__((always_inline)) void NAME(const T* restrict src,          \
        Py_ssize_t rstride, const Py_ssize_t* restrict off, const T* restrict w,       \
        Py_ssize_t taps, T bias, T* restrict out, Py_ssize_t ho, Py_ssize_t wo) {      \
    enum { L = sizeof(V) / sizeof(T) };                                                \
    for (Py_ssize_t oh = 0; oh < ho; oh++) {                                           \
        const T* restrict row = src + oh * rstride;                                    \
        T* restrict o = out + oh * wo;                                                 \
        for (Py_ssize_t ow0 = 0; ow0 < wo; ow0 += L) {                                 \
            Py_ssize_t ow = ow0 + L <= wo ? ow0 : wo - L;                              \
            V a = {0}, v;                                                              \
            a = a + bias;                                                              \
            for (Py_ssize_t t = 0; t < taps; t++) {                                    \
                memcpy(&v, row + off[t] + ow, sizeof v);                               \
                a = a + v * w[t];                                                      \
            }                                                                          \
            memcpy(o + ow, &a, sizeof a);                                              \
        }                                                                              \
    }                                                                                  \
}

/* The same with the 3x3 kernel's nine taps unrolled and their weights in registers,
   two output rows at a time (two independent chains of multiply-adds, each nine
   long, keep the FMA units busy where one chain would wait on its own latency).
   off[] still holds the nine offsets, in the same order: the same sums. */
#define CYNN_DW_3X3_ROW(V, A, Q)                                                       \
    memcpy(&v, (Q) + o0, sizeof v); A = A + v * w0;                                    \
    memcpy(&v, (Q) + o1, sizeof v); A = A + v * w1;                                    \
    memcpy(&v, (Q) + o2, sizeof v); A = A + v * w2;                                    \
    memcpy(&v, (Q) + o3, sizeof v); A = A + v * w3;                                    \
    memcpy(&v, (Q) + o4, sizeof v); A = A + v * w4;                                    \
    memcpy(&v, (Q) + o5, sizeof v); A = A + v * w5;                                    \
    memcpy(&v, (Q) + o6, sizeof v); A = A + v * w6;                                    \
    memcpy(&v, (Q) + o7, sizeof v); A = A + v * w7;                                    \
    memcpy(&v, (Q) + o8, sizeof v); A = A + v * w8;
#define CYNN_DW_DIRECT3X3_TIER(NAME, T, V)                                             \
static inline __attribute__((always_inline)) void NAME(const T* restrict src,          \
        Py_ssize_t rstride, const Py_ssize_t* restrict off, const T* restrict w,       \
        T bias, T* restrict out, Py_ssize_t ho, Py_ssize_t wo) {                       \
    enum { L = sizeof(V) / sizeof(T) };                                                \
    const Py_ssize_t o0 = off[0], o1 = off[1], o2 = off[2], o3 = off[3], o4 = off[4];  \
    const Py_ssize_t o5 = off[5], o6 = off[6], o7 = off[7], o8 = off[8];               \
    const T w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5];          \
    const T w6 = w[6], w7 = w[7], w8 = w[8];                                           \
    Py_ssize_t oh = 0;                                                                 \
    for (; oh + 2 <= ho; oh += 2) {                                                    \
        const T* restrict row = src + oh * rstride;                                    \
        T* restrict o = out + oh * wo;                                                 \
        for (Py_ssize_t ow0 = 0; ow0 < wo; ow0 += L) {                                 \
            Py_ssize_t ow = ow0 + L <= wo ? ow0 : wo - L;                              \
            const T* restrict q = row + ow;                                            \
            V a = {0}, b = {0}, v;                                                     \
            a = a + bias; b = b + bias;                                                \
            CYNN_DW_3X3_ROW(V, a, q)                                                   \
            CYNN_DW_3X3_ROW(V, b, q + rstride)                                         \
            memcpy(o + ow, &a, sizeof a);                                              \
            memcpy(o + wo + ow, &b, sizeof b);                                         \
        }                                                                              \
    }                                                                                  \
    for (; oh < ho; oh++) {                                                            \
        const T* restrict row = src + oh * rstride;                                    \
        T* restrict o = out + oh * wo;                                                 \
        for (Py_ssize_t ow0 = 0; ow0 < wo; ow0 += L) {                                 \
            Py_ssize_t ow = ow0 + L <= wo ? ow0 : wo - L;                              \
            const T* restrict q = row + ow;                                            \
            V a = {0}, v;                                                              \
            a = a + bias;                                                              \
            CYNN_DW_3X3_ROW(V, a, q)                                                   \
            memcpy(o + ow, &a, sizeof a);                                              \
        }                                                                              \
    }                                                                                  \
}

/* 3x3 with the rows of the window one buffer row apart (row stride 1: rstride is the
   offset between tap rows, off[3 i + j] = i * rstride + off[j]): four output rows at
   a time, each loaded input vector serving the up to three output rows that use it,
   4.5 loads per output vector instead of 9 (loads, not multiply-adds, bound the
   one-row loop).  Every output still adds bias, then tap (0, 0), (0, 1), ... (2, 2):
   the same sums as the loops above. */
#define CYNN_DW_3X3_IN(A, X0, X1, X2, I)                                               \
    A = A + X0 * w##I##0; A = A + X1 * w##I##1; A = A + X2 * w##I##2;
#define CYNN_DW_DIRECT3X3S1_TIER(NAME, T, V)                                           \
static inline __attribute__((always_inline)) void NAME(const T* restrict src,          \
        Py_ssize_t rstride, const Py_ssize_t* restrict off, const T* restrict w,       \
        T bias, T* restrict out, Py_ssize_t ho, Py_ssize_t wo) {                       \
    enum { L = sizeof(V) / sizeof(T) };                                                \
    const Py_ssize_t c0 = off[0], c1 = off[1], c2 = off[2];                            \
    const T w00 = w[0], w01 = w[1], w02 = w[2], w10 = w[3], w11 = w[4], w12 = w[5];    \
    const T w20 = w[6], w21 = w[7], w22 = w[8];                                        \
    Py_ssize_t oh = 0;                                                                 \
    for (; oh + 4 <= ho; oh += 4) {                                                    \
        const T* restrict row = src + oh * rstride;                                    \
        T* restrict o = out + oh * wo;                                                 \
        for (Py_ssize_t ow0 = 0; ow0 < wo; ow0 += L) {                                 \
            Py_ssize_t ow = ow0 + L <= wo ? ow0 : wo - L;                              \
            const T* restrict q = row + ow;                                            \
            V a0 = {0}, a1, a2, a3, x0, x1, x2;                                        \
            a0 = a0 + bias; a1 = a0; a2 = a0; a3 = a0;                                 \
            memcpy(&x0, q + c0, sizeof x0); memcpy(&x1, q + c1, sizeof x1);            \
            memcpy(&x2, q + c2, sizeof x2);                                            \
            CYNN_DW_3X3_IN(a0, x0, x1, x2, 0)                                          \
            q += rstride;                                                              \
            memcpy(&x0, q + c0, sizeof x0); memcpy(&x1, q + c1, sizeof x1);            \
            memcpy(&x2, q + c2, sizeof x2);                                            \
            CYNN_DW_3X3_IN(a0, x0, x1, x2, 1) CYNN_DW_3X3_IN(a1, x0, x1, x2, 0)        \
            q += rstride;                                                              \
            memcpy(&x0, q + c0, sizeof x0); memcpy(&x1, q + c1, sizeof x1);            \
            memcpy(&x2, q + c2, sizeof x2);                                            \
            CYNN_DW_3X3_IN(a0, x0, x1, x2, 2) CYNN_DW_3X3_IN(a1, x0, x1, x2, 1)        \
            CYNN_DW_3X3_IN(a2, x0, x1, x2, 0)                                          \
            q += rstride;                                                              \
            memcpy(&x0, q + c0, sizeof x0); memcpy(&x1, q + c1, sizeof x1);            \
            memcpy(&x2, q + c2, sizeof x2);                                            \
            CYNN_DW_3X3_IN(a1, x0, x1, x2, 2) CYNN_DW_3X3_IN(a2, x0, x1, x2, 1)        \
            CYNN_DW_3X3_IN(a3, x0, x1, x2, 0)                                          \
            q += rstride;                                                              \
            memcpy(&x0, q + c0, sizeof x0); memcpy(&x1, q + c1, sizeof x1);            \
            memcpy(&x2, q + c2, sizeof x2);                                            \
            CYNN_DW_3X3_IN(a2, x0, x1, x2, 2) CYNN_DW_3X3_IN(a3, x0, x1, x2, 1)        \
            q += rstride;                                                              \
            memcpy(&x0, q + c0, sizeof x0); memcpy(&x1, q + c1, sizeof x1);            \
            memcpy(&x2, q + c2, sizeof x2);                                            \
            CYNN_DW_3X3_IN(a3, x0, x1, x2, 2)                                          \
            memcpy(o + ow, &a0, sizeof a0);                                            \
            memcpy(o + wo + ow, &a1, sizeof a1);                                       \
            memcpy(o + 2 * wo + ow, &a2, sizeof a2);                                   \
            memcpy(o + 3 * wo + ow, &a3, sizeof a3);                                   \
        }                                                                              \
    }                                                                                  \
    for (; oh < ho; oh++) {                                                            \
        const T* restrict row = src + oh * rstride;                                    \
        T* restrict o = out + oh * wo;                                                 \
        for (Py_ssize_t ow0 = 0; ow0 < wo; ow0 += L) {                                 \
            Py_ssize_t ow = ow0 + L <= wo ? ow0 : wo - L;                              \
            const T* restrict q = row + ow;                                            \
            V a0 = {0}, x0, x1, x2;                                                    \
            a0 = a0 + bias;                                                            \
            for (int i = 0; i < 3; i++, q += rstride) {                                \
                memcpy(&x0, q + c0, sizeof x0); memcpy(&x1, q + c1, sizeof x1);        \
                memcpy(&x2, q + c2, sizeof x2);                                        \
                a0 = a0 + x0 * w[3 * i]; a0 = a0 + x1 * w[3 * i + 1];                  \
                a0 = a0 + x2 * w[3 * i + 2];                                           \
            }                                                                          \
            memcpy(o + ow, &a0, sizeof a0);                                            \
        }                                                                              \
    }                                                                                  \
}

/* Zero the lanes of the product p that mask clears (bitwise, so that an infinite or
   NaN product in a lane already counted cannot leak in as 0 * inf). */
#define CYNN_DW_KEEP(p, IV, mask)                                                      \
    do { IV _bits; memcpy(&_bits, &(p), sizeof _bits); _bits &= (mask);                \
         memcpy(&(p), &_bits, sizeof _bits); } while (0)

/* acc[t] += sum over (oh, ow) of dy[oh * wo + ow] * src[oh * rstride + off[t] + ow]
   for t < taps, and with has_bias acc[taps] += sum of dy: the weight and bias
   gradients of one plane.  Three taps at a time share each dy vector.  Each lane adds
   at most CYNN_DW_LANE_TERMS terms in T (or one row, if a row holds more vectors)
   before the lane sums, in lane order, go into the double accumulators: float32 sums
   over many samples then lose no more than a blocked float sum would. */
#define CYNN_DW_CORR_TIER(NAME, T, V, IT, IV)                                          \
static inline __attribute__((always_inline)) void NAME(const T* restrict dy,           \
        Py_ssize_t ho, Py_ssize_t wo, const T* restrict src, Py_ssize_t rstride,       \
        const Py_ssize_t* restrict off, Py_ssize_t taps, int has_bias,                 \
        double* restrict acc) {                                                        \
    enum { L = sizeof(V) / sizeof(T) };                                                \
    const Py_ssize_t full = wo / L, tail = wo % L, per_row = full + (tail != 0);       \
    Py_ssize_t block = CYNN_DW_LANE_TERMS / per_row;                                   \
    if (block < 1) block = 1;                                                          \
    IV mask;                                                                           \
    {   /* the overlapping last vector starts at wo - L: its first L - tail lanes      \
           were counted by the full vectors */                                         \
        IT bits[L];                                                                    \
        for (int k = 0; k < L; k++) bits[k] = k >= L - tail ? (IT)-1 : (IT)0;          \
        memcpy(&mask, bits, sizeof mask);                                              \
    }                                                                                  \
    for (Py_ssize_t t0 = 0; t0 < taps; t0 += 3) {                                      \
        const Py_ssize_t nt = taps - t0 < 3 ? taps - t0 : 3;                           \
        const Py_ssize_t o0 = off[t0], o1 = nt > 1 ? off[t0 + 1] : o0;                 \
        const Py_ssize_t o2 = nt > 2 ? off[t0 + 2] : o0;                               \
        for (Py_ssize_t oh0 = 0; oh0 < ho; oh0 += block) {                             \
            Py_ssize_t oh1 = oh0 + block < ho ? oh0 + block : ho;                      \
            V a0 = {0}, a1 = {0}, a2 = {0}, d, v, p;                                   \
            for (Py_ssize_t oh = oh0; oh < oh1; oh++) {                                \
                const T* restrict dr = dy + oh * wo;                                   \
                const T* restrict s0 = src + oh * rstride + o0;                        \
                const T* restrict s1 = src + oh * rstride + o1;                        \
                const T* restrict s2 = src + oh * rstride + o2;                        \
                for (Py_ssize_t ow = 0; ow < full * L; ow += L) {                      \
                    memcpy(&d, dr + ow, sizeof d);                                     \
                    memcpy(&v, s0 + ow, sizeof v); a0 = a0 + d * v;                    \
                    memcpy(&v, s1 + ow, sizeof v); a1 = a1 + d * v;                    \
                    memcpy(&v, s2 + ow, sizeof v); a2 = a2 + d * v;                    \
                }                                                                      \
                if (tail) {                                                            \
                    const Py_ssize_t ow = wo - L;                                      \
                    memcpy(&d, dr + ow, sizeof d);                                     \
                    memcpy(&v, s0 + ow, sizeof v); p = d * v;                          \
                    CYNN_DW_KEEP(p, IV, mask); a0 = a0 + p;                            \
                    memcpy(&v, s1 + ow, sizeof v); p = d * v;                          \
                    CYNN_DW_KEEP(p, IV, mask); a1 = a1 + p;                            \
                    memcpy(&v, s2 + ow, sizeof v); p = d * v;                          \
                    CYNN_DW_KEEP(p, IV, mask); a2 = a2 + p;                            \
                }                                                                      \
            }                                                                          \
            T l0[L], l1[L], l2[L];                                                     \
            memcpy(l0, &a0, sizeof a0); memcpy(l1, &a1, sizeof a1);                    \
            memcpy(l2, &a2, sizeof a2);                                                \
            double s0 = 0, s1 = 0, s2 = 0;                                             \
            for (int k = 0; k < L; k++) {                                              \
                s0 += (double)l0[k]; s1 += (double)l1[k]; s2 += (double)l2[k];         \
            }                                                                          \
            acc[t0] += s0;                                                             \
            if (nt > 1) acc[t0 + 1] += s1;                                             \
            if (nt > 2) acc[t0 + 2] += s2;                                             \
        }                                                                              \
    }                                                                                  \
    if (!has_bias) return;                                                             \
    for (Py_ssize_t oh0 = 0; oh0 < ho; oh0 += block) {                                 \
        Py_ssize_t oh1 = oh0 + block < ho ? oh0 + block : ho;                          \
        V a0 = {0}, d;                                                                 \
        for (Py_ssize_t oh = oh0; oh < oh1; oh++) {                                    \
            const T* restrict dr = dy + oh * wo;                                       \
            for (Py_ssize_t c = 0; c < full; c++) {                                    \
                memcpy(&d, dr + c * L, sizeof d);                                      \
                a0 = a0 + d;                                                           \
            }                                                                          \
            if (tail) {                                                                \
                memcpy(&d, dr + wo - L, sizeof d);                                     \
                CYNN_DW_KEEP(d, IV, mask);                                             \
                a0 = a0 + d;                                                           \
            }                                                                          \
        }                                                                              \
        T l0[L];                                                                       \
        memcpy(l0, &a0, sizeof a0);                                                    \
        double s0 = 0;                                                                 \
        for (int k = 0; k < L; k++) s0 += (double)l0[k];                               \
        acc[taps] += s0;                                                               \
    }                                                                                  \
}

/* CYNN_DW_CORR_TIER for 3x3 with the window's rows one buffer row apart (as for
   CYNN_DW_DIRECT3X3S1_TIER): nine accumulators and one for the bias, and each input
   row's three vectors serve the up to three output rows that use them, 6 loads per 9
   multiply-adds instead of 12.  Within a block of rows, a column of vectors at a time,
   down the rows; the lane blocks of CYNN_DW_LANE_TERMS terms as there.  A lane block's
   sums go to double as one vector, added in halves (a fixed order too). */
#define CYNN_DW_C3_ADD(V, IV, S0, S1, S2, D, MASKED)                                   \
    {   V _p;                                                                          \
        _p = (D) * x0; if (MASKED) CYNN_DW_KEEP(_p, IV, mask); S0 = S0 + _p;           \
        _p = (D) * x1; if (MASKED) CYNN_DW_KEEP(_p, IV, mask); S1 = S1 + _p;           \
        _p = (D) * x2; if (MASKED) CYNN_DW_KEEP(_p, IV, mask); S2 = S2 + _p; }
/* Input row r of the block [oh0, oh1) at column ow: output row r - i, when inside the
   block, uses it with the kernel's row i; output row r adds its dy to the bias sum. */
#define CYNN_DW_C3_ROW(T, V, IV, R, MASKED, EDGE)                                      \
    {   const T* restrict _x = src + (R) * rstride + ow;                               \
        V x0, x1, x2, _d;                                                              \
        memcpy(&x0, _x + c0, sizeof x0); memcpy(&x1, _x + c1, sizeof x1);              \
        memcpy(&x2, _x + c2, sizeof x2);                                               \
        if (!(EDGE) || (R) < oh1) {                                                    \
            memcpy(&_d, dy + (R) * wo + ow, sizeof _d);                                \
            if (MASKED) CYNN_DW_KEEP(_d, IV, mask);  /* exact zeros: x0..x2 are data */ \
            sb = sb + _d;                                                              \
            CYNN_DW_C3_ADD(V, IV, s00, s01, s02, _d, 0)                                \
        }                                                                              \
        if (!(EDGE) || ((R) - 1 >= oh0 && (R) - 1 < oh1)) {                            \
            memcpy(&_d, dy + ((R) - 1) * wo + ow, sizeof _d);                          \
            CYNN_DW_C3_ADD(V, IV, s10, s11, s12, _d, MASKED)                           \
        }                                                                              \
        if (!(EDGE) || (R) - 2 >= oh0) {                                               \
            memcpy(&_d, dy + ((R) - 2) * wo + ow, sizeof _d);                          \
            CYNN_DW_C3_ADD(V, IV, s20, s21, s22, _d, MASKED)                           \
        }                                                                              \
    }
#define CYNN_DW_C3_COLUMN(T, V, IV, MASKED)                                            \
    {   Py_ssize_t r = oh0;                                                            \
        for (; r < oh0 + 2 && r < oh1 + 2; r++) CYNN_DW_C3_ROW(T, V, IV, r, MASKED, 1) \
        for (; r < oh1; r++) CYNN_DW_C3_ROW(T, V, IV, r, MASKED, 0)                    \
        for (; r < oh1 + 2; r++) CYNN_DW_C3_ROW(T, V, IV, r, MASKED, 1) }
#define CYNN_DW_VFLUSH(DV, S, K)                                                       \
    {   DV _w = __builtin_convertvector(S, DV);                                        \
        double _h[sizeof(DV) / sizeof(double)];                                        \
        memcpy(_h, &_w, sizeof _w);                                                    \
        for (int _n = (int)(sizeof(DV) / sizeof(double)); _n > 1; _n /= 2)            \
            for (int _k = 0; _k < _n / 2; _k++) _h[_k] += _h[_k + _n / 2];             \
        acc[K] += _h[0]; }
#define CYNN_DW_CORR3X3_TIER(NAME, T, V, IT, IV, DV)                                   \
static inline __attribute__((always_inline)) void NAME(const T* restrict dy,           \
        Py_ssize_t ho, Py_ssize_t wo, const T* restrict src, Py_ssize_t rstride,       \
        const Py_ssize_t* restrict off, int has_bias, double* restrict acc) {          \
    enum { L = sizeof(V) / sizeof(T) };                                                \
    const Py_ssize_t full = wo / L, tail = wo % L, per_row = full + (tail != 0);       \
    const Py_ssize_t c0 = off[0], c1 = off[1], c2 = off[2];                            \
    Py_ssize_t block = CYNN_DW_LANE_TERMS / per_row;                                   \
    if (block < 1) block = 1;                                                          \
    IV mask;                                                                           \
    {                                                                                  \
        IT bits[L];                                                                    \
        for (int k = 0; k < L; k++) bits[k] = k >= L - tail ? (IT)-1 : (IT)0;          \
        memcpy(&mask, bits, sizeof mask);                                              \
    }                                                                                  \
    for (Py_ssize_t oh0 = 0; oh0 < ho; oh0 += block) {                                 \
        const Py_ssize_t oh1 = oh0 + block < ho ? oh0 + block : ho;                    \
        V s00 = {0}, s01 = {0}, s02 = {0}, s10 = {0}, s11 = {0}, s12 = {0};            \
        V s20 = {0}, s21 = {0}, s22 = {0}, sb = {0};                                   \
        for (Py_ssize_t ow = 0; ow < full * L; ow += L) CYNN_DW_C3_COLUMN(T, V, IV, 0) \
        if (tail) {                                                                    \
            const Py_ssize_t ow = wo - L;                                              \
            CYNN_DW_C3_COLUMN(T, V, IV, 1)                                             \
        }                                                                              \
        CYNN_DW_VFLUSH(DV, s00, 0) CYNN_DW_VFLUSH(DV, s01, 1) CYNN_DW_VFLUSH(DV, s02, 2) \
        CYNN_DW_VFLUSH(DV, s10, 3) CYNN_DW_VFLUSH(DV, s11, 4) CYNN_DW_VFLUSH(DV, s12, 5) \
        CYNN_DW_VFLUSH(DV, s20, 6) CYNN_DW_VFLUSH(DV, s21, 7) CYNN_DW_VFLUSH(DV, s22, 8) \
        if (has_bias) CYNN_DW_VFLUSH(DV, sb, 9)                                        \
    }                                                                                  \
}

/* dst[oh * rstride + off[t] + ow] += w[t] * dy[oh * wo + ow]: the input gradient of
   one output plane scattered into a padded, phase-split buffer (any stride).  Tap by
   tap, and for each tap row by row: the destinations of one tap are distinct, and a
   vector read back is one stored a whole pass earlier (the next tap's destinations
   overlap this one's shifted by a value, which a load cannot take from a store still
   in flight).  Each buffer value gets its terms in tap order, then row order. */
#define CYNN_DW_SCATTER(NAME, T, SFX)                                                  \
CYNN_KERNEL CYNN_DW_WIDE void NAME(const T* restrict dy, Py_ssize_t ho, Py_ssize_t wo, \
        T* restrict dst, Py_ssize_t rstride, const Py_ssize_t* restrict off,           \
        const T* restrict w, Py_ssize_t taps) {                                        \
    enum { L = 32 / sizeof(T) };                                                       \
    const Py_ssize_t full = wo - wo % L;                                               \
    for (Py_ssize_t t = 0; t < taps; t++) {                                            \
        const T wt = w[t];                                                             \
        for (Py_ssize_t oh = 0; oh < ho; oh++) {                                       \
            const T* restrict dr = dy + oh * wo;                                       \
            T* restrict d = dst + oh * rstride + off[t];                               \
            for (Py_ssize_t ow = 0; ow < full; ow += L) {                              \
                cynn_v32##SFX a, g;                                                    \
                memcpy(&a, d + ow, sizeof a);                                          \
                memcpy(&g, dr + ow, sizeof g);                                         \
                a = a + g * wt;                                                        \
                memcpy(d + ow, &a, sizeof a);                                          \
            }                                                                          \
            for (Py_ssize_t ow = full; ow < wo; ow++) d[ow] += dr[ow] * wt;            \
        }                                                                              \
    }                                                                                  \
}

/* 64-byte vectors only where the CPU has 64-byte registers: on AVX2 the compiler
   splits each into two and, with several accumulators, runs out of registers. */
static inline int cynn_dw_have_64(void) {
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

/* True when the nine 3x3 offsets have their rows rstride apart (stride 1 down the
   rows): off[3 i + j] = i * rstride + off[j]. */
static inline int cynn_dw_rows_shared(const Py_ssize_t* off, Py_ssize_t rstride) {
    for (int i = 1; i < 3; i++)
        for (int j = 0; j < 3; j++)
            if (off[3 * i + j] != i * rstride + off[j]) return 0;
    return 1;
}

/* The entry points: pick the widest vector that fits the output row. */
#define CYNN_DW_DISPATCH(NAME, T, SFX)                                                 \
CYNN_DW_DIRECT_TIER(NAME##_direct64, T, cynn_v64##SFX)                                 \
CYNN_DW_DIRECT_TIER(NAME##_direct32, T, cynn_v32##SFX)                                 \
CYNN_DW_DIRECT_TIER(NAME##_direct16, T, cynn_dw_v16##SFX)                              \
CYNN_DW_DIRECT_TIER(NAME##_direct1, T, T)                                              \
CYNN_DW_DIRECT3X3_TIER(NAME##_d3x3_64, T, cynn_v64##SFX)                               \
CYNN_DW_DIRECT3X3_TIER(NAME##_d3x3_32, T, cynn_v32##SFX)                               \
CYNN_DW_DIRECT3X3S1_TIER(NAME##_d3x3s1_64, T, cynn_v64##SFX)                           \
CYNN_DW_DIRECT3X3S1_TIER(NAME##_d3x3s1_32, T, cynn_v32##SFX)                           \
CYNN_DW_CORR3X3_TIER(NAME##_c3x3_64, T, cynn_v64##SFX, cynn_dw_i##SFX, cynn_dw_i64##SFX, \
                     cynn_dw_d64##SFX)                                                 \
CYNN_DW_CORR3X3_TIER(NAME##_c3x3_32, T, cynn_v32##SFX, cynn_dw_i##SFX, cynn_dw_i32##SFX, \
                     cynn_dw_d32##SFX)                                                 \
CYNN_DW_CORR_TIER(NAME##_corr64, T, cynn_v64##SFX, cynn_dw_i##SFX, cynn_dw_i64##SFX)   \
CYNN_DW_CORR_TIER(NAME##_corr32, T, cynn_v32##SFX, cynn_dw_i##SFX, cynn_dw_i32##SFX)   \
CYNN_DW_CORR_TIER(NAME##_corr16, T, cynn_dw_v16##SFX, cynn_dw_i##SFX, cynn_dw_i16##SFX) \
CYNN_DW_CORR_TIER(NAME##_corr1, T, T, cynn_dw_i##SFX, cynn_dw_i##SFX)                  \
/* out (ho, wo) of one plane: see CYNN_DW_DIRECT_TIER.  three_by_three says that the \
   taps are a 3x3 kernel's nine, in row-major order: unrolled loops run then (the     \
   same sums in the same order). */                                                    \
CYNN_KERNEL CYNN_DW_WIDE void NAME##_direct(const T* restrict src, Py_ssize_t rstride, \
        const Py_ssize_t* restrict off, const T* restrict w, Py_ssize_t taps,          \
        int three_by_three, T bias, T* restrict out, Py_ssize_t ho, Py_ssize_t wo) {   \
    enum { L64 = 64 / sizeof(T), L32 = 32 / sizeof(T), L16 = 16 / sizeof(T) };        \
    const int have64 = cynn_dw_have_64();                                              \
    const int shared = three_by_three && cynn_dw_rows_shared(off, rstride);            \
    if (shared && have64 && wo >= L64)                                                 \
        NAME##_d3x3s1_64(src, rstride, off, w, bias, out, ho, wo);                     \
    else if (shared && wo >= L32)                                                      \
        NAME##_d3x3s1_32(src, rstride, off, w, bias, out, ho, wo);                     \
    else if (three_by_three && have64 && wo >= L64)                                    \
        NAME##_d3x3_64(src, rstride, off, w, bias, out, ho, wo);                       \
    else if (three_by_three && wo >= L32)                                              \
        NAME##_d3x3_32(src, rstride, off, w, bias, out, ho, wo);                       \
    else if (have64 && wo >= L64)                                                      \
        NAME##_direct64(src, rstride, off, w, taps, bias, out, ho, wo);                \
    else if (wo >= L32)                                                                \
        NAME##_direct32(src, rstride, off, w, taps, bias, out, ho, wo);                \
    else if (wo >= L16)                                                                \
        NAME##_direct16(src, rstride, off, w, taps, bias, out, ho, wo);                \
    else                                                                               \
        NAME##_direct1(src, rstride, off, w, taps, bias, out, ho, wo);                 \
}                                                                                      \
/* acc (taps + has_bias) += one plane's weight and bias gradient sums: see             \
   CYNN_DW_CORR_TIER; three_by_three as for NAME##_direct. */                          \
CYNN_KERNEL CYNN_DW_WIDE void NAME##_corr(const T* restrict dy, Py_ssize_t ho,         \
        Py_ssize_t wo, const T* restrict src, Py_ssize_t rstride,                      \
        const Py_ssize_t* restrict off, Py_ssize_t taps, int three_by_three,           \
        int has_bias, double* restrict acc) {                                          \
    enum { L64 = 64 / sizeof(T), L32 = 32 / sizeof(T), L16 = 16 / sizeof(T) };        \
    const int have64 = cynn_dw_have_64();                                              \
    const int shared = three_by_three && cynn_dw_rows_shared(off, rstride);            \
    if (shared && have64 && wo >= L64)                                                 \
        NAME##_c3x3_64(dy, ho, wo, src, rstride, off, has_bias, acc);                  \
    else if (shared && wo >= L32)                                                      \
        NAME##_c3x3_32(dy, ho, wo, src, rstride, off, has_bias, acc);                  \
    else if (have64 && wo >= L64)                                                      \
        NAME##_corr64(dy, ho, wo, src, rstride, off, taps, has_bias, acc);             \
    else if (wo >= L32)                                                                \
        NAME##_corr32(dy, ho, wo, src, rstride, off, taps, has_bias, acc);             \
    else if (wo >= L16)                                                                \
        NAME##_corr16(dy, ho, wo, src, rstride, off, taps, has_bias, acc);             \
    else                                                                               \
        NAME##_corr1(dy, ho, wo, src, rstride, off, taps, has_bias, acc);              \
}

CYNN_FLOAT_AND_DOUBLE(CYNN_DW_PAD, cynn_dw_pad)
CYNN_FLOAT_AND_DOUBLE(CYNN_DW_UNPAD, cynn_dw_unpad)
CYNN_FLOAT_AND_DOUBLE(CYNN_DW_SCATTER, cynn_dw_scatter)
CYNN_DW_DISPATCH(cynn_dw_f, float, f)
CYNN_DW_DISPATCH(cynn_dw_d, double, d)

#endif /* CYNN_DEPTHWISE_H */
