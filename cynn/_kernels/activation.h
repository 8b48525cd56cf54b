/* ReLU's C loops (activation.pyx) over flat contiguous arrays: plain selects that
   the compiler vectorizes. */
#ifndef CYNN_ACTIVATION_H
#define CYNN_ACTIVATION_H

#include "cynn_common.h"

/* y = x where x is not <= 0 (so NaN passes through, as in np.maximum), else 0. */
#define CYNN_RELU(NAME, T, SFX)                                                        \
CYNN_KERNEL void NAME##_fwd(const T* restrict x, T* restrict y, Py_ssize_t n) {        \
    for (Py_ssize_t i = 0; i < n; i++) {                                               \
        T v = x[i];                                                                    \
        _Bool neg = v <= 0;                                                            \
        y[i] = neg ? (T)0 : v;                                                         \
    }                                                                                  \
}                                                                                      \
/* dx = dy where x > 0, else 0 (the gradient at 0 and at NaN is 0). */                 \
CYNN_KERNEL void NAME##_bwd(const T* restrict x, const T* restrict dy,                 \
                       T* restrict dx, Py_ssize_t n) {                                 \
    for (Py_ssize_t i = 0; i < n; i++) {                                               \
        T g = dy[i];                                                                   \
        _Bool pos = x[i] > 0;                                                          \
        dx[i] = pos ? g : (T)0;                                                        \
    }                                                                                  \
}

CYNN_FLOAT_AND_DOUBLE(CYNN_RELU, cynn_relu)

#endif /* CYNN_ACTIVATION_H */
