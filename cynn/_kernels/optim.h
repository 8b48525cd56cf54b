/* The optimizers' element-wise updates (optim.pyx) on a range [i0, i1) of one
   parameter.  Each line is one NumPy operation of the update that cynn/optim.py
   writes, in its order and dtype; the module is compiled with -ffp-contract=off, so
   no multiply-add is fused, and the vector clones' square roots and divisions are
   IEEE-rounded like the scalar ones: the same bits as NumPy on any instruction set.
   (-fno-math-errno lets the square root vectorize; v is a sum of squares, never
   negative.)  The arrays of one parameter never overlap: the Module contract gives
   every parameter, gradient and state array its own memory. */
#ifndef CYNN_OPTIM_H
#define CYNN_OPTIM_H

#include <math.h>
#include "cynn_common.h"

/* Adam (cynn.Adam._update_parameter): with has_l2, g = p * l2 + g first; with
   has_shrink (AdamW), p *= shrink first; then m = m * b1 + g * c1,
   v = v * b2 + (g * g) * c2, p -= m / (sqrt(v) / s2 + e) * s.  The loop is
   instantiated once per (has_l2, has_shrink), so that it has no branch. */
#define CYNN_ADAM_LOOP(T, SQRT, HAS_L2, HAS_SHRINK)                                    \
    for (Py_ssize_t i = i0; i < i1; i++) {                                             \
        T gi = g[i], t, d, mi, vi;                                                     \
        if (HAS_L2) { t = p[i] * l2; gi = t + gi; }                                    \
        if (HAS_SHRINK) p[i] = p[i] * shrink;                                          \
        mi = m[i] * b1; t = gi * c1; mi = mi + t; m[i] = mi;                           \
        vi = v[i] * b2; t = gi * gi; t = t * c2; vi = vi + t; v[i] = vi;               \
        d = SQRT(vi); d = d / s2; d = d + e;                                           \
        t = mi / d; t = t * s;                                                         \
        p[i] = p[i] - t;                                                               \
    }

#define CYNN_ADAM(NAME, T, SQRT)                                                       \
CYNN_KERNEL CYNN_WIDE void NAME(T* restrict p, const T* restrict g, T* restrict m,    \
        T* restrict v, Py_ssize_t i0, Py_ssize_t i1, T b1, T c1, T b2, T c2, T s2,     \
        T e, T s, int has_l2, T l2, int has_shrink, T shrink) {                        \
    if (has_l2 && has_shrink) { CYNN_ADAM_LOOP(T, SQRT, 1, 1) }                        \
    else if (has_l2) { CYNN_ADAM_LOOP(T, SQRT, 1, 0) }                                 \
    else if (has_shrink) { CYNN_ADAM_LOOP(T, SQRT, 0, 1) }                             \
    else { CYNN_ADAM_LOOP(T, SQRT, 0, 0) }                                             \
}

/* SGD (cynn.SGD._update_parameter): with has_l2, g = p * l2 + g; with a buffer b,
   b = b * mu + g and g = b, or with nesterov g = b * mu + g; then p -= g * lr. */
#define CYNN_SGD_LOOP(T, HAS_L2, MOMENTUM, NESTEROV)                                   \
    for (Py_ssize_t i = i0; i < i1; i++) {                                             \
        T gi = g[i], t;                                                                \
        if (HAS_L2) { t = p[i] * l2; gi = t + gi; }                                    \
        if (MOMENTUM) {                                                                \
            t = b[i] * mu; t = t + gi; b[i] = t;                                       \
            if (NESTEROV) { t = t * mu; gi = t + gi; } else gi = t;                    \
        }                                                                              \
        t = gi * lr;                                                                   \
        p[i] = p[i] - t;                                                               \
    }

#define CYNN_SGD(NAME, T)                                                              \
CYNN_KERNEL CYNN_WIDE void NAME(T* restrict p, const T* restrict g, T* restrict b,    \
        Py_ssize_t i0, Py_ssize_t i1, T lr, T mu, int nesterov, int has_l2, T l2) {    \
    if (b == NULL) {                                                                   \
        if (has_l2) { CYNN_SGD_LOOP(T, 1, 0, 0) } else { CYNN_SGD_LOOP(T, 0, 0, 0) }   \
    } else if (nesterov) {                                                             \
        if (has_l2) { CYNN_SGD_LOOP(T, 1, 1, 1) } else { CYNN_SGD_LOOP(T, 0, 1, 1) }   \
    } else {                                                                           \
        if (has_l2) { CYNN_SGD_LOOP(T, 1, 1, 0) } else { CYNN_SGD_LOOP(T, 0, 1, 0) }   \
    }                                                                                  \
}

CYNN_ADAM(cynn_adam_f, float, sqrtf)
CYNN_ADAM(cynn_adam_d, double, sqrt)
CYNN_SGD(cynn_sgd_f, float)
CYNN_SGD(cynn_sgd_d, double)

#endif /* CYNN_OPTIM_H */
