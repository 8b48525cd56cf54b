/* BatchNormalization's C loops (batchnorm.pyx) over (N, C, S) data. */
#ifndef CYNN_BATCHNORM_H
#define CYNN_BATCHNORM_H

#include "cynn_common.h"

/* Per-plane sums for the image loop order, in 32-byte vectors of the data's own
   type (8 float or 4 double lanes, two SSE registers each on a baseline x86-64
   build).  Lanes of type LA take the first sum: double lanes (CYNN_ACC_f /
   CYNN_ACC_d, as many lanes in double) for the batch mean, which must be as exact
   as float64's, the data's own lanes for the backward sums.  The second sum's lanes
   are of the data's type; every CYNN_FLUSH elements both are widened and added into
   double lanes, so a float lane never holds more than CYNN_FLUSH / 8 = 16 terms, a
   blocked order whose error is that of the terms' own rounding.  Widening every
   element of both sums made the statistics pass compute-bound.  Plain lane arrays left the compiler spilling
   every lane to the stack.  The order is fixed by the plane length alone, so it
   does not depend on the thread count.

   CYNN_PLANE_SUMS is the loop the three functions below share, over a plane of s
   values with `zero`, a zero vector of the data's type, in scope: STEP adds the
   vector at q into the lanes a and b, which are flushed into the double lanes A and B; TAIL adds
   the last s % L values at q, one by one, into the double sums S and Q; then
   *OUT0 += S + sum(A), *OUT1 += Q + sum(B). */
typedef double CYNN_ACC_f __attribute__((vector_size(64)));
typedef double CYNN_ACC_d __attribute__((vector_size(32)));
#define CYNN_FLUSH 128
#define CYNN_PLANE_SUMS(T, SFX, LA, OUT0, OUT1, STEP, TAIL)                            \
    enum { L = sizeof(cynn_v32##SFX) / sizeof(T) };                                    \
    CYNN_ACC_##SFX A = {0}, B = {0};                                                   \
    double S = 0, Q = 0;                                                               \
    Py_ssize_t q = 0;                                                                  \
    while (s - q >= L) {                                                               \
        LA a = {0};                                                                    \
        cynn_v32##SFX b = zero;                                                        \
        Py_ssize_t full = (s - q) - (s - q) % L;                                       \
        Py_ssize_t stop = q + (full < CYNN_FLUSH ? full : CYNN_FLUSH);                 \
        for (; q < stop; q += L) { STEP }                                              \
        A += __builtin_convertvector(a, CYNN_ACC_##SFX);                               \
        B += __builtin_convertvector(b, CYNN_ACC_##SFX);                               \
    }                                                                                  \
    for (; q < s; q++) { TAIL }                                                        \
    for (int l = 0; l < L; l++) { S += A[l]; Q += B[l]; }                              \
    *OUT0 += S;                                                                        \
    *OUT1 += Q;

/* NAME_sums: the sums of x and of (x - shift)^2 over one plane.  The mean comes
   from the sum of x itself: in float, every x - shift is rounded, and over a plane
   of thousands those roundings moved a small mean far more than its own rounding;
   the second moment is taken about the shift, so it does not cancel for data far
   from 0.  NAME_grad_sums: the sums of dy and of dy * (x - m). */
#define CYNN_BN_SUMS(NAME, T, SFX)                                                     \
CYNN_KERNEL CYNN_WIDE void NAME##_sums(const T* restrict x, Py_ssize_t s, T shift,             \
                             double* sum, double* sq) {                                \
    cynn_v32##SFX zero = {0}, vshift = zero + shift;                                   \
    CYNN_PLANE_SUMS(T, SFX, CYNN_ACC_##SFX, sum, sq,                                   \
        cynn_v32##SFX v; memcpy(&v, x + q, sizeof v);                                  \
        a += __builtin_convertvector(v, CYNN_ACC_##SFX); v -= vshift; b += v * v;,     \
        S += x[q]; double d = (double)x[q] - shift; Q += d * d;)                       \
}                                                                                      \
CYNN_KERNEL CYNN_WIDE void NAME##_grad_sums(const T* restrict x, const T* restrict dy,           \
                                  Py_ssize_t s, T m, double* sum_dy, double* sum_dyx) { \
    cynn_v32##SFX zero = {0}, vm = zero + m;                                           \
    CYNN_PLANE_SUMS(T, SFX, cynn_v32##SFX, sum_dy, sum_dyx,                            \
        cynn_v32##SFX g; cynn_v32##SFX v; memcpy(&g, dy + q, sizeof g);                \
        memcpy(&v, x + q, sizeof v); a += g; b += g * (v - vm);,                       \
        double g = dy[q]; S += g; Q += g * ((double)x[q] - m);)                        \
}

/* ChannelwiseScaling backward over one plane in one sweep: dx = g * dy, and the
   sums of dy and dy * x in the same lanes as above. */
#define CYNN_SCALE_GRAD(NAME, T, SFX)                                                  \
CYNN_KERNEL CYNN_WIDE void NAME##_scale_grad(const T* restrict x, const T* restrict dy,          \
                                   T* restrict dx, Py_ssize_t s, T g,                  \
                                   double* sum_dy, double* sum_dyx) {                  \
    cynn_v32##SFX zero = {0}, vg = zero + g;                                           \
    CYNN_PLANE_SUMS(T, SFX, cynn_v32##SFX, sum_dy, sum_dyx,                            \
        cynn_v32##SFX d; cynn_v32##SFX v; memcpy(&d, dy + q, sizeof d);                \
        memcpy(&v, x + q, sizeof v); a += d; b += d * v; v = vg * d;                   \
        memcpy(dx + q, &v, sizeof v);,                                                 \
        T d = dy[q]; S += d; Q += (double)d * x[q]; dx[q] = g * d;)                    \
}

/* The vector case (S = 1): a channel is a strided column, so a thread takes a
   block of at most CYNN_BN_COLUMN_BLOCK columns (c1 - c0, batchnorm.pyx's
   COLUMN_BLOCK: this one definition sizes both the blocks and the lane arrays
   below) and walks the rows.  As for the planes, the first sum is kept in double,
   the second in the data's type over chunks of CYNN_ROWS rows, then flushed into
   double; the first moment is the sum of x itself, the second is taken about the
   shift. */
#define CYNN_BN_COLUMN_BLOCK 64
#define CYNN_ROWS 16
#define CYNN_BN_COLUMNS(NAME, T, SFX)                                                  \
CYNN_KERNEL CYNN_WIDE void NAME##_col_sums(const T* restrict x, Py_ssize_t n_batch,              \
                            Py_ssize_t channels, Py_ssize_t c0, Py_ssize_t c1,         \
                            const double* shift, const double* m, int grad,            \
                            const T* restrict dy, double* out0, double* out1) {        \
    T sh[CYNN_BN_COLUMN_BLOCK], b[CYNN_BN_COLUMN_BLOCK];                               \
    double a[CYNN_BN_COLUMN_BLOCK];                                                    \
    double S[CYNN_BN_COLUMN_BLOCK], Q[CYNN_BN_COLUMN_BLOCK];                           \
    int w = (int)(c1 - c0);                                                            \
    for (int l = 0; l < w; l++) {                                                      \
        sh[l] = (T)(grad ? m[c0 + l] : shift[c0 + l]);                                 \
        S[l] = 0; Q[l] = 0;                                                            \
    }                                                                                  \
    for (Py_ssize_t n0 = 0; n0 < n_batch; n0 += CYNN_ROWS) {                           \
        Py_ssize_t n1 = n0 + CYNN_ROWS < n_batch ? n0 + CYNN_ROWS : n_batch;           \
        for (int l = 0; l < w; l++) { a[l] = 0; b[l] = 0; }                            \
        if (grad) {                                                                    \
            for (Py_ssize_t n = n0; n < n1; n++) {                                     \
                const T* restrict xr = x + n * channels + c0;                          \
                const T* restrict gr = dy + n * channels + c0;                         \
                for (int l = 0; l < w; l++) {                                          \
                    a[l] += gr[l];                                                     \
                    b[l] += gr[l] * (xr[l] - sh[l]);                                   \
                }                                                                      \
            }                                                                          \
        } else {                                                                       \
            for (Py_ssize_t n = n0; n < n1; n++) {                                     \
                const T* restrict xr = x + n * channels + c0;                          \
                for (int l = 0; l < w; l++) {                                          \
                    T d = xr[l] - sh[l];                                               \
                    a[l] += xr[l];                                                     \
                    b[l] += d * d;                                                     \
                }                                                                      \
            }                                                                          \
        }                                                                              \
        for (int l = 0; l < w; l++) { S[l] += a[l]; Q[l] += b[l]; }                    \
    }                                                                                  \
    for (int l = 0; l < w; l++) { out0[c0 + l] = S[l]; out1[c0 + l] = Q[l]; }          \
}                                                                                      \
/* One row: y = (x - m) * inv, or y = a * dy + b * (x - m) + k. */                     \
CYNN_KERNEL void NAME##_row_normalize(const T* restrict x, T* restrict y,              \
                                 const T* restrict m, const T* restrict inv,           \
                                 Py_ssize_t channels) {                                \
    for (Py_ssize_t c = 0; c < channels; c++) y[c] = (x[c] - m[c]) * inv[c];           \
}                                                                                      \
CYNN_KERNEL void NAME##_row_backward(const T* restrict x, const T* restrict dy,        \
                                T* restrict dx, const T* restrict m,                   \
                                const T* restrict a, const T* restrict b,              \
                                const T* restrict k, Py_ssize_t channels) {            \
    for (Py_ssize_t c = 0; c < channels; c++)                                          \
        dx[c] = a[c] * dy[c] + b[c] * (x[c] - m[c]) + k[c];                            \
}


/* Batch norm, channelwise scaling and (with relu) a ReLU in one, over one plane of a
   training batch: the forward apply and the backward's two sweeps (batchnorm.pyx's
   bn_scale_forward_train / bn_scale_backward_train).  With t = (x - m) * inv rounded
   to T and z = t * g + beta rounded to T, exactly as the three layers compute them one
   after another (no multiply-add is contracted: the forward apply is compiled for the
   baseline, which has no FMA, like the layers' own loops), so the output is the same
   bits.  The backward sweeps are cloned for AVX2 and AVX-512 (CYNN_WIDE), where their
   vector comparisons are single instructions; their rounding need not match.  The
   ReLU's mask is z > 0, which is t * g > -beta: the product rounded, then
   compared, the same truth value as the rounded sum's sign (a nonzero exact sum of
   two floats never rounds to 0), and NaN or an infinite z gives the layer's mask. */
typedef int CYNN_BN_MASK_f __attribute__((vector_size(32)));
typedef long long CYNN_BN_MASK_d __attribute__((vector_size(32)));
/* v where the mask (a vector comparison's all-ones or zero lanes) is set, else +0. */
#define CYNN_BN_SELECT(SFX, mask, v)                                                   \
    ((cynn_v32##SFX)((CYNN_BN_MASK_##SFX)(v) & (mask)))
#define CYNN_BN_AFFINE(NAME, T, SFX)                                                   \
CYNN_KERNEL void NAME##_affine_apply(const T* restrict x, T* restrict y, Py_ssize_t s,  \
                                     T m, T inv, T g, T beta, int relu) {              \
    /* Plain loops, which GCC vectorizes for the baseline: its 32-byte vector          \
       comparisons are split into scalar code there. */                                \
    if (relu) {                                                                        \
        for (Py_ssize_t q = 0; q < s; q++) {                                           \
            T t = (x[q] - m) * inv;                                                    \
            T z = t * g + beta;                                                        \
            y[q] = z <= 0 ? (T)0 : z;                                                  \
        }                                                                              \
    } else {                                                                           \
        for (Py_ssize_t q = 0; q < s; q++) {                                           \
            T t = (x[q] - m) * inv;                                                    \
            y[q] = t * g + beta;                                                       \
        }                                                                              \
    }                                                                                  \
}                                                                                      \
/* The sums of dz and of dz * (x - m), with dz = dy where the ReLU passed (everywhere  \
   without relu). */                                                                   \
CYNN_KERNEL CYNN_WIDE void NAME##_affine_grad_sums(const T* restrict x,                \
                                         const T* restrict dy,                         \
                                         Py_ssize_t s, T m, T inv, T g, T beta,        \
                                         int relu, double* sum_dz, double* sum_dzx) {  \
    cynn_v32##SFX zero = {0}, vm = zero + m, vinv = zero + inv, vg = zero + g,         \
                  vnb = zero - beta;                                                   \
    CYNN_PLANE_SUMS(T, SFX, cynn_v32##SFX, sum_dz, sum_dzx,                            \
        cynn_v32##SFX d; cynn_v32##SFX v; memcpy(&d, dy + q, sizeof d);                \
        memcpy(&v, x + q, sizeof v); v -= vm;                                          \
        if (relu) d = CYNN_BN_SELECT(SFX, (v * vinv) * vg > vnb, d);                   \
        a += d; b += d * v;,                                                           \
        T c = x[q] - m; T d = dy[q];                                                   \
        if (relu && !((c * inv) * g > -beta)) d = 0;                                   \
        S += d; Q += (double)d * c;)                                                   \
}                                                                                      \
/* dx = a * dz + b * (x - m) + k. */                                                   \
CYNN_KERNEL CYNN_WIDE void NAME##_affine_grad_apply(const T* restrict x,               \
                                          const T* restrict dy,                        \
                                          T* restrict dx, Py_ssize_t s, T m, T inv,    \
                                          T g, T beta, int relu, T a, T b, T k) {      \
    enum { L = sizeof(cynn_v32##SFX) / sizeof(T) };                                    \
    cynn_v32##SFX zero = {0}, vm = zero + m, vinv = zero + inv, vg = zero + g,         \
                  vnb = zero - beta, va = zero + a, vb = zero + b, vk = zero + k;      \
    Py_ssize_t q = 0;                                                                  \
    for (; q + L <= s; q += L) {                                                       \
        cynn_v32##SFX d; cynn_v32##SFX v; memcpy(&d, dy + q, sizeof d);                \
        memcpy(&v, x + q, sizeof v); v -= vm;                                          \
        if (relu) d = CYNN_BN_SELECT(SFX, (v * vinv) * vg > vnb, d);                   \
        d = va * d + vb * v + vk;                                                      \
        memcpy(dx + q, &d, sizeof d);                                                  \
    }                                                                                  \
    for (; q < s; q++) {                                                               \
        T c = x[q] - m; T d = dy[q];                                                   \
        if (relu && !((c * inv) * g > -beta)) d = 0;                                   \
        dx[q] = a * d + b * c + k;                                                     \
    }                                                                                  \
}

CYNN_FLOAT_AND_DOUBLE(CYNN_BN_COLUMNS, cynn_bn)
CYNN_FLOAT_AND_DOUBLE(CYNN_BN_SUMS, cynn_bn)
CYNN_FLOAT_AND_DOUBLE(CYNN_SCALE_GRAD, cynn_bn)
CYNN_FLOAT_AND_DOUBLE(CYNN_BN_AFFINE, cynn_bn)

#endif /* CYNN_BATCHNORM_H */
