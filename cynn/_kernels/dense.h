/* Linear's forward product (dense.pyx): y = x W^T with both operands rows along K,
   computed so that every output is the same sum whatever the batch size, the tiling
   and the thread count.  A BLAS GEMM gives no such promise, and for one row it packs
   the whole weight matrix first (295 us for 3136 x 128, against 15 us for a
   matrix-vector product); a matrix-vector product for one row and a GEMM for more
   would make a sample's prediction depend on the batch it comes in. */
#ifndef CYNN_DENSE_H
#define CYNN_DENSE_H

#include "cynn_common.h"

/* K is summed in chunks of CYNN_DOT_CHUNK values, each chunk as L-lane vector sums
   in order, then its lanes in order, then added to the output; the values past the
   last whole vector are one more zero-padded vector at the end.  Tiles of 3 rows of x by 3 rows of W
   keep 9 sums in registers, each vector loaded once for the tile.  Rows r < n_rows
   of x and o in [o0, o1) of W; missing tile rows repeat a real one and are not
   stored.  Each stored output is the sum, plus bias[o] when ``bias`` is not NULL, then
   0 where that is <= 0 when ``relu`` (as ReLU: NaN passes): the bits of adding the
   bias and applying the ReLU after the product, in a plan's one pass. */
enum { CYNN_DOT_CHUNK = 512 };
#define CYNN_DOT_TILE(NAME, T, SFX)                                                    \
CYNN_KERNEL CYNN_WIDE void NAME(const T* restrict x, Py_ssize_t ldx, Py_ssize_t r0,     \
        Py_ssize_t r1, const T* restrict w, Py_ssize_t ldw, Py_ssize_t o0,             \
        Py_ssize_t o1, Py_ssize_t k, const T* restrict bias, int relu, T* restrict y,  \
        Py_ssize_t ldy) {                                                              \
    enum { L = 32 / sizeof(T), C = CYNN_DOT_CHUNK };                                   \
    typedef cynn_v32##SFX V;                                                           \
    Py_ssize_t kv = k / L * L;                                                         \
    for (Py_ssize_t r = r0; r < r1; r += 3) {                                          \
        int nr = r1 - r < 3 ? (int)(r1 - r) : 3;                                       \
        const T* xs[3] = {x + r * ldx, x + (r + (nr > 1)) * ldx,                       \
                          x + (r + 2 * (nr > 2)) * ldx};                               \
        for (Py_ssize_t o = o0; o < o1; o += 3) {                                      \
            int no = o1 - o < 3 ? (int)(o1 - o) : 3;                                   \
            const T* ws[3] = {w + o * ldw, w + (o + (no > 1)) * ldw,                   \
                              w + (o + 2 * (no > 2)) * ldw};                           \
            T out[3][3] = {{0}};                                                       \
            for (Py_ssize_t c0 = 0; c0 < kv; c0 += C) {                                \
                Py_ssize_t c1 = c0 + C < kv ? c0 + C : kv;                             \
                V s00 = {0}, s01 = {0}, s02 = {0}, s10 = {0}, s11 = {0}, s12 = {0};    \
                V s20 = {0}, s21 = {0}, s22 = {0};                                     \
                for (Py_ssize_t q = c0; q < c1; q += L) {                              \
                    V a, b, c, u, v, t;                                                \
                    memcpy(&a, xs[0] + q, sizeof a); memcpy(&b, xs[1] + q, sizeof b);  \
                    memcpy(&c, xs[2] + q, sizeof c);                                   \
                    memcpy(&u, ws[0] + q, sizeof u); memcpy(&v, ws[1] + q, sizeof v);  \
                    memcpy(&t, ws[2] + q, sizeof t);                                   \
                    s00 += a * u; s01 += a * v; s02 += a * t;                          \
                    s10 += b * u; s11 += b * v; s12 += b * t;                          \
                    s20 += c * u; s21 += c * v; s22 += c * t;                          \
                }                                                                      \
                V sums[3][3] = {{s00, s01, s02}, {s10, s11, s12}, {s20, s21, s22}};    \
                for (int i = 0; i < 3; i++)                                            \
                    for (int j = 0; j < 3; j++) {                                      \
                        T acc = 0;                                                     \
                        for (int l = 0; l < L; l++) acc += sums[i][j][l];              \
                        out[i][j] += acc;                                              \
                    }                                                                  \
            }                                                                          \
            if (kv < k) {                                                              \
                /* the tail as one zero-padded vector: the same vector multiply-adds   \
                   for every tile position (a scalar one could be contracted to a     \
                   fused multiply-add in one position and not in another) */          \
                T xt[3][L], wt[3][L];                                                  \
                memset(xt, 0, sizeof xt); memset(wt, 0, sizeof wt);                    \
                for (int i = 0; i < 3; i++)                                            \
                    for (Py_ssize_t q = kv; q < k; q++) {                              \
                        xt[i][q - kv] = xs[i][q];                                      \
                        wt[i][q - kv] = ws[i][q];                                      \
                    }                                                                  \
                for (int i = 0; i < 3; i++)                                            \
                    for (int j = 0; j < 3; j++) {                                      \
                        V a, u, p = {0};                                               \
                        memcpy(&a, xt[i], sizeof a); memcpy(&u, wt[j], sizeof u);      \
                        p += a * u;                                                    \
                        T acc = 0;                                                     \
                        for (int l = 0; l < L; l++) acc += p[l];                       \
                        out[i][j] += acc;                                              \
                    }                                                                  \
            }                                                                          \
            for (int i = 0; i < nr; i++)                                               \
                for (int j = 0; j < no; j++) {                                         \
                    T v = bias != NULL ? out[i][j] + bias[o + j] : out[i][j];          \
                    y[(r + i) * ldy + o + j] = relu && v <= 0 ? (T)0 : v;              \
                }                                                                      \
        }                                                                              \
    }                                                                                  \
}

CYNN_FLOAT_AND_DOUBLE(CYNN_DOT_TILE, cynn_dot_tile)

#endif /* CYNN_DENSE_H */
