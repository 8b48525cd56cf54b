/* MaxPool2d's C loops (pooling.pyx) for the common 2x2, stride 2, unpadded case,
   where every window lies inside the plane and no two windows share an input.  The
   convolution's evaluation epilogue (conv.h) pools its rows with the same lanes. */
#ifndef CYNN_POOLING_H
#define CYNN_POOLING_H

#include "cynn_common.h"

/* Forward, one output at a time (float64, and float32 rows of fewer than 4 outputs).
   Row-major window order with a strict '>' keeps the first of equal maxima; a NaN,
   once taken, stays.  Written as selects, but GCC turns them into branches here, and
   on real activations, whose window winners are random, those mispredict: the float32
   lanes below avoid this loop wherever they can. */
#define CYNN_MAX2X2_ONE(T, ow)                                                         \
    do {                                                                               \
        T best = r0[2 * (ow)], v;                                                      \
        int off = 0;                                                                   \
        _Bool take;                                                                    \
        v = r0[2 * (ow) + 1];                                                          \
        take = CYNN_MAX_TAKES(v, best);                                                \
        best = take ? v : best; off = take ? 1 : off;                                  \
        v = r1[2 * (ow)];                                                              \
        take = CYNN_MAX_TAKES(v, best);                                                \
        best = take ? v : best; off = take ? w : off;                                  \
        v = r1[2 * (ow) + 1];                                                          \
        take = CYNN_MAX_TAKES(v, best);                                                \
        best = take ? v : best; off = take ? w + 1 : off;                              \
        o[ow] = best;                                                                  \
        if (a != NULL) a[ow] = base + 2 * (ow) + off;                                  \
    } while (0)

/* Backward, one output at a time: each of the window's four inputs gets the output's
   gradient if the forward's index names it, else zero.  Every input is written once,
   so the plane needs no clearing and no scatter, and an index that names no input of
   its window writes nothing outside it.  Adding zero gives the bits of the
   clear-then-add the general loop does (a -0.0 gradient lands as +0.0). */
#define CYNN_MAX2X2_GRAD_ONE(T, ow)                                                    \
    do {                                                                               \
        int off = a[ow] - (base + 2 * (ow));                                           \
        T g = dy[ow];                                                                  \
        d0[2 * (ow)] = (off == 0 ? g : (T)0) + (T)0;                                   \
        d0[2 * (ow) + 1] = (off == 1 ? g : (T)0) + (T)0;                               \
        d1[2 * (ow)] = (off == w ? g : (T)0) + (T)0;                                   \
        d1[2 * (ow) + 1] = (off == w + 1 ? g : (T)0) + (T)0;                           \
    } while (0)

/* float32 rows by explicit vectors of 8 and 4 outputs: an output row of a 28-wide
   plane has 14 outputs and one of an 8-wide plane 4, too few for the compiler's own
   vector loop (16 lanes under AVX-512), which then ran every output scalar.  The
   lanes make the same comparisons in the same order as CYNN_MAX2X2_ONE, so the
   results are the same bits. */
#ifdef CYNN_SHUFFLE
typedef float cynn_v16f __attribute__((vector_size(16)));
typedef int cynn_v16i __attribute__((vector_size(16)));
typedef int cynn_v32i __attribute__((vector_size(32)));

#define CYNN_LANES8_EVEN 0, 2, 4, 6, 8, 10, 12, 14
#define CYNN_LANES8_ODD 1, 3, 5, 7, 9, 11, 13, 15
#define CYNN_LANES8_IOTA 0, 1, 2, 3, 4, 5, 6, 7
#define CYNN_LANES8_LOW 0, 8, 1, 9, 2, 10, 3, 11
#define CYNN_LANES8_HIGH 4, 12, 5, 13, 6, 14, 7, 15
#define CYNN_LANES4_EVEN 0, 2, 4, 6
#define CYNN_LANES4_ODD 1, 3, 5, 7
#define CYNN_LANES4_IOTA 0, 1, 2, 3
#define CYNN_LANES4_LOW 0, 4, 1, 5
#define CYNN_LANES4_HIGH 2, 6, 3, 7

/* Lane by lane: best, off = v, k where CYNN_MAX_TAKES(v, best). */
#define CYNN_MAX_TAKE_LANES(VF, VI, v, best, off, k)                                   \
    do {                                                                               \
        VI take_ = ((v) > (best)) | (((v) != (v)) & ((best) == (best)));               \
        (best) = (VF)(((VI)(v) & take_) | ((VI)(best) & ~take_));                      \
        (off) = ((k) & take_) | ((off) & ~take_);                                      \
    } while (0)

/* L outputs from ow on: CYNN_MAX2X2_ONE on L lanes.  The two input rows are read as
   2L values each and split into the windows' left (even) and right (odd) columns. */
#define CYNN_MAX2X2_LANES(NAME, VF, VI, L, EVEN, ODD, IOTA)                            \
static inline __attribute__((always_inline)) void NAME(const float* r0,               \
        const float* r1, float* o, int* a, int ow, int base, int w) {                  \
    VF a0, a1, b0, b1, best, v;                                                        \
    VI off = {0}, iota = {IOTA}, idx;                                                  \
    memcpy(&a0, r0 + 2 * ow, sizeof a0);                                               \
    memcpy(&a1, r0 + 2 * ow + L, sizeof a1);                                           \
    memcpy(&b0, r1 + 2 * ow, sizeof b0);                                               \
    memcpy(&b1, r1 + 2 * ow + L, sizeof b1);                                           \
    best = CYNN_SHUFFLE(a0, a1, EVEN);                                                 \
    v = CYNN_SHUFFLE(a0, a1, ODD);                                                     \
    CYNN_MAX_TAKE_LANES(VF, VI, v, best, off, 1);                                      \
    v = CYNN_SHUFFLE(b0, b1, EVEN);                                                    \
    CYNN_MAX_TAKE_LANES(VF, VI, v, best, off, w);                                      \
    v = CYNN_SHUFFLE(b0, b1, ODD);                                                     \
    CYNN_MAX_TAKE_LANES(VF, VI, v, best, off, w + 1);                                  \
    idx = base + 2 * (ow + iota) + off;                                                \
    memcpy(o + ow, &best, sizeof best);                                                \
    if (a != NULL) memcpy(a + ow, &idx, sizeof idx);                                   \
}

/* L outputs' gradients from ow on: CYNN_MAX2X2_GRAD_ONE on L lanes, the left and
   right columns interleaved back into 2L values of each input row. */
#define CYNN_MAX2X2_GRAD_LANES(NAME, VF, VI, L, LOW, HIGH, IOTA)                       \
static inline __attribute__((always_inline)) void NAME(const float* dy,               \
        const int* a, float* d0, float* d1, int ow, int base, int w) {                 \
    VF g, zero = {0}, e0, o0, e1, o1, s;                                               \
    VI idx, off, iota = {IOTA};                                                        \
    memcpy(&g, dy + ow, sizeof g);                                                     \
    memcpy(&idx, a + ow, sizeof idx);                                                  \
    off = idx - (base + 2 * (ow + iota));                                              \
    e0 = (VF)((VI)g & (off == 0)) + zero;                                              \
    o0 = (VF)((VI)g & (off == 1)) + zero;                                              \
    e1 = (VF)((VI)g & (off == w)) + zero;                                              \
    o1 = (VF)((VI)g & (off == w + 1)) + zero;                                          \
    s = CYNN_SHUFFLE(e0, o0, LOW); memcpy(d0 + 2 * ow, &s, sizeof s);                  \
    s = CYNN_SHUFFLE(e0, o0, HIGH); memcpy(d0 + 2 * ow + L, &s, sizeof s);             \
    s = CYNN_SHUFFLE(e1, o1, LOW); memcpy(d1 + 2 * ow, &s, sizeof s);                  \
    s = CYNN_SHUFFLE(e1, o1, HIGH); memcpy(d1 + 2 * ow + L, &s, sizeof s);             \
}

CYNN_MAX2X2_LANES(cynn_max2x2_lanes8, cynn_v32f, cynn_v32i, 8, CYNN_LANES8_EVEN,
                  CYNN_LANES8_ODD, CYNN_LANES8_IOTA)
CYNN_MAX2X2_LANES(cynn_max2x2_lanes4, cynn_v16f, cynn_v16i, 4, CYNN_LANES4_EVEN,
                  CYNN_LANES4_ODD, CYNN_LANES4_IOTA)
CYNN_MAX2X2_GRAD_LANES(cynn_max2x2_grad_lanes8, cynn_v32f, cynn_v32i, 8, CYNN_LANES8_LOW,
                       CYNN_LANES8_HIGH, CYNN_LANES8_IOTA)
CYNN_MAX2X2_GRAD_LANES(cynn_max2x2_grad_lanes4, cynn_v16f, cynn_v16i, 4, CYNN_LANES4_LOW,
                       CYNN_LANES4_HIGH, CYNN_LANES4_IOTA)
#endif /* CYNN_SHUFFLE */

/* How many outputs of a row of n the float32 lanes took (the rest run one by one);
   float64 runs one by one.  With a == NULL only the maxima are written.  From 4
   outputs up, the last n % 4 go through the 4 lanes too, as the last 4 of the row,
   which recomputes a few outputs with the same result: one by one, GCC compiles the
   selects to branches, which on random activations mispredict so often that 2 such
   outputs cost as much as 16 in lanes (a zero-padded copy instead stalls on
   forwarding the copy's stores to the vector loads).  The gradient's rows below take
   the same schedule. */
static inline __attribute__((always_inline)) int cynn_max2x2_lanes_f(const float* r0,
        const float* r1, float* o, int* a, int n, int base, int w) {
    int ow = 0;
#ifdef CYNN_SHUFFLE
    for (; ow + 8 <= n; ow += 8) cynn_max2x2_lanes8(r0, r1, o, a, ow, base, w);
    if (ow + 4 <= n) { cynn_max2x2_lanes4(r0, r1, o, a, ow, base, w); ow += 4; }
    if (ow < n && n >= 4) { cynn_max2x2_lanes4(r0, r1, o, a, n - 4, base, w); ow = n; }
#else
    (void)r0; (void)r1; (void)o; (void)a; (void)n; (void)base; (void)w;
#endif
    return ow;
}

static inline __attribute__((always_inline)) int cynn_max2x2_grad_lanes_f(const float* dy,
        const int* a, float* d0, float* d1, int n, int base, int w) {
    int ow = 0;
#ifdef CYNN_SHUFFLE
    for (; ow + 8 <= n; ow += 8) cynn_max2x2_grad_lanes8(dy, a, d0, d1, ow, base, w);
    if (ow + 4 <= n) { cynn_max2x2_grad_lanes4(dy, a, d0, d1, ow, base, w); ow += 4; }
    if (ow < n && n >= 4) { cynn_max2x2_grad_lanes4(dy, a, d0, d1, n - 4, base, w); ow = n; }
#else
    (void)dy; (void)a; (void)d0; (void)d1; (void)n; (void)base; (void)w;
#endif
    return ow;
}

static inline __attribute__((always_inline)) int cynn_max2x2_lanes_d(const double* r0,
        const double* r1, double* o, int* a, int n, int base, int w) {
    (void)r0; (void)r1; (void)o; (void)a; (void)n; (void)base; (void)w;
    return 0;
}

static inline __attribute__((always_inline)) int cynn_max2x2_grad_lanes_d(const double* dy,
        const int* a, double* d0, double* d1, int n, int base, int w) {
    (void)dy; (void)a; (void)d0; (void)d1; (void)n; (void)base; (void)w;
    return 0;
}

/* One output row of n from input rows r0, r1 (base: r0's offset in its plane, w: the
   plane's width); with a == NULL only the maxima (the convolution's evaluation
   epilogue, conv.h). */
#define CYNN_MAX2X2_ROW(NAME, T, SFX)                                                  \
static inline __attribute__((always_inline)) void NAME(const T* r0, const T* r1,      \
        T* o, int* a, int n, int base, int w) {                                        \
    for (int ow = cynn_max2x2_lanes_##SFX(r0, r1, o, a, n, base, w); ow < n; ow++)     \
        CYNN_MAX2X2_ONE(T, ow);                                                        \
}

CYNN_FLOAT_AND_DOUBLE(CYNN_MAX2X2_ROW, cynn_max2x2_row)

/* One (n, c) plane of width `width`: out and argmax are ho x wo, with ho = H / 2 and
   wo = width / 2 (an odd last row or column belongs to no window).  The gradient
   writes every input of the plane: the windows' from dy, the odd last row and
   column zero. */
#define CYNN_MAX2X2_PLANE(NAME, T, SFX)                                                \
CYNN_KERNEL CYNN_WIDE void NAME(const T* x, Py_ssize_t width, T* out, int* argmax,     \
                                Py_ssize_t ho, Py_ssize_t wo) {                        \
    for (Py_ssize_t oh = 0; oh < ho; oh++)                                             \
        cynn_max2x2_row_##SFX(x + 2 * oh * width, x + (2 * oh + 1) * width,            \
                              out + oh * wo, argmax + oh * wo, (int)wo,                \
                              (int)(2 * oh * width), (int)width);                      \
}                                                                                      \
CYNN_KERNEL CYNN_WIDE void NAME##_grad(const T* dy_plane, const int* argmax,            \
        T* dx, Py_ssize_t height, Py_ssize_t width, Py_ssize_t ho, Py_ssize_t wo) {    \
    int n = (int)wo, w = (int)width;                                                   \
    for (Py_ssize_t oh = 0; oh < ho; oh++) {                                           \
        const T* dy = dy_plane + oh * wo;                                              \
        const int* a = argmax + oh * wo;                                               \
        T* d0 = dx + 2 * oh * width;                                                   \
        T* d1 = d0 + width;                                                            \
        int base = (int)(2 * oh * width);                                              \
        for (int ow = cynn_max2x2_grad_lanes_##SFX(dy, a, d0, d1, n, base, w); ow < n; \
             ow++)                                                                     \
            CYNN_MAX2X2_GRAD_ONE(T, ow);                                               \
        if (2 * wo < width) { d0[width - 1] = 0; d1[width - 1] = 0; }                  \
    }                                                                                  \
    for (Py_ssize_t k = 2 * ho * width; k < height * width; k++) dx[k] = 0;            \
}

CYNN_FLOAT_AND_DOUBLE(CYNN_MAX2X2_PLANE, cynn_max2x2_plane)

#endif /* CYNN_POOLING_H */
