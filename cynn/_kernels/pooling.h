/* MaxPool2d's C loop (pooling.pyx) for the common 2x2, stride 2, unpadded case,
   where every window lies inside the plane. */
#ifndef CYNN_POOLING_H
#define CYNN_POOLING_H

#include "cynn_common.h"

/* Written as selects so that the compiler vectorizes the row: on real activations
   the winner of a window is random, and a branch per comparison mispredicts half
   the time.  The float32 loop vectorizes; the float64 one may stay scalar, with
   selects.  Row-major window order with a strict '>' keeps the first of equal
   maxima; a NaN, once taken, stays. */
#define CYNN_MAX2X2_PLANE(NAME, T, SFX)                                                \
CYNN_KERNEL void NAME##_row(const T* restrict r0, const T* restrict r1,                \
                       T* restrict o, int* restrict a, int n, int base, int w) {       \
    for (int ow = 0; ow < n; ow++) {                                                   \
        T best = r0[2 * ow], v;                                                        \
        int off = 0;                                                                   \
        _Bool take;                                                                    \
        v = r0[2 * ow + 1];                                                            \
        take = CYNN_MAX_TAKES(v, best);                                                \
        best = take ? v : best; off = take ? 1 : off;                                  \
        v = r1[2 * ow];                                                                \
        take = CYNN_MAX_TAKES(v, best);                                                \
        best = take ? v : best; off = take ? w : off;                                  \
        v = r1[2 * ow + 1];                                                            \
        take = CYNN_MAX_TAKES(v, best);                                                \
        best = take ? v : best; off = take ? w + 1 : off;                              \
        o[ow] = best;                                                                  \
        a[ow] = base + 2 * ow + off;                                                   \
    }                                                                                  \
}                                                                                      \
CYNN_KERNEL CYNN_WIDE void NAME(const T* x, Py_ssize_t width, T* out, int* argmax,               \
                 Py_ssize_t ho, Py_ssize_t wo) {                                       \
    for (Py_ssize_t oh = 0; oh < ho; oh++)                                             \
        NAME##_row(x + 2 * oh * width, x + (2 * oh + 1) * width, out + oh * wo,        \
                   argmax + oh * wo, (int)wo, (int)(2 * oh * width), (int)width);      \
}

CYNN_FLOAT_AND_DOUBLE(CYNN_MAX2X2_PLANE, cynn_max2x2_plane)

#endif /* CYNN_POOLING_H */
