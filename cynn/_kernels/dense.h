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
   last whole vector are one more zero-padded vector at the end.  Tiles of R rows of x
   by O rows of W keep R * O sums in registers, each vector loaded once for the tile.
   Rows r < n_rows of x and o in [o0, o1) of W; missing tile rows repeat a real one and
   are not stored.  Each stored output is the sum, plus bias[o] when ``bias`` is not
   NULL, then 0 where that is <= 0 when ``relu`` (as ReLU: NaN passes): the bits of
   adding the bias and applying the ReLU after the product, in a plan's one pass.
   A row alone takes a tile of one row by 6 or 8 outputs.
   Twice: 32-byte vectors in 3 x 3 tiles, and 64-byte vectors in 4 x 4 tiles for
   x86-64-v4 (512 -> 64 at batch 512, two threads: 142-150 -> 158-229 GFLOP/s; at 3136
   inputs both stay near 150, bound by the L2 cache: a tile's 8 rows of 12 KB do not
   stay in the L1); the lane count sets the order of the sums, so the two give
   different bits, and one process uses one (dense.pyx). */
enum { CYNN_DOT_CHUNK = 512 };
#define CYNN_DOT_TILE_VB(NAME, T, SFX, VB, R, O, ATTR, ONE_ROW)                        \
CYNN_KERNEL ATTR void NAME(const T* restrict x, Py_ssize_t ldx, Py_ssize_t r0,          \
        Py_ssize_t r1, const T* restrict w, Py_ssize_t ldw, Py_ssize_t o0,             \
        Py_ssize_t o1, Py_ssize_t k, const T* restrict bias, int relu, T* restrict y,  \
        Py_ssize_t ldy) {                                                              \
    enum { L = VB / sizeof(T), C = CYNN_DOT_CHUNK };                                   \
    typedef cynn_v##VB##SFX V;                                                         \
    Py_ssize_t kv = k / L * L;                                                         \
    for (Py_ssize_t r = r0; r < r1; r += R) {                                          \
        int nr = r1 - r < R ? (int)(r1 - r) : R;                                       \
        if (nr == 1 && R > 1) {                                                        \
            /* a row alone (batch 1, a block's last row): the one-row tile, not R     \
               copies of it; each output is the same sum in either */                 \
            ONE_ROW(x, ldx, r, r + 1, w, ldw, o0, o1, k, bias, relu, y, ldy);          \
            continue;                                                                  \
        }                                                                              \
        const T* xs[R];                                                                \
        for (int i = 0; i < R; i++) xs[i] = x + (r + (i < nr ? i : nr - 1)) * ldx;     \
        for (Py_ssize_t o = o0; o < o1; o += O) {                                      \
            int no = o1 - o < O ? (int)(o1 - o) : O;                                   \
            const T* ws[O];                                                            \
            for (int j = 0; j < O; j++) ws[j] = w + (o + (j < no ? j : no - 1)) * ldw; \
            T out[R][O];                                                               \
            memset(out, 0, sizeof out);                                                \
            for (Py_ssize_t c0 = 0; c0 < kv; c0 += C) {                                \
                Py_ssize_t c1 = c0 + C < kv ? c0 + C : kv;                             \
                V s[R][O];                                                             \
                for (int i = 0; i < R; i++)                                            \
                    for (int j = 0; j < O; j++) s[i][j] = (V){0};                      \
                for (Py_ssize_t q = c0; q < c1; q += L) {                              \
                    V a[R], b[O];                                                      \
                    for (int i = 0; i < R; i++) memcpy(&a[i], xs[i] + q, sizeof a[i]); \
                    for (int j = 0; j < O; j++) memcpy(&b[j], ws[j] + q, sizeof b[j]); \
                    for (int i = 0; i < R; i++)                                        \
                        for (int j = 0; j < O; j++) s[i][j] += a[i] * b[j];            \
                }                                                                      \
                for (int i = 0; i < R; i++)                                            \
                    for (int j = 0; j < O; j++) {                                      \
                        T acc = 0;                                                     \
                        for (int l = 0; l < L; l++) acc += s[i][j][l];                 \
                        out[i][j] += acc;                                              \
                    }                                                                  \
            }                                                                          \
            if (kv < k) {                                                              \
                /* the tail as one zero-padded vector: the same vector multiply-adds   \
                   for every tile position (a scalar one could be contracted to a     \
                   fused multiply-add in one position and not in another) */          \
                T xt[R][L], wt[O][L];                                                  \
                memset(xt, 0, sizeof xt); memset(wt, 0, sizeof wt);                    \
                for (Py_ssize_t q = kv; q < k; q++) {                                  \
                    for (int i = 0; i < R; i++) xt[i][q - kv] = xs[i][q];              \
                    for (int j = 0; j < O; j++) wt[j][q - kv] = ws[j][q];              \
                }                                                                      \
                for (int i = 0; i < R; i++)                                            \
                    for (int j = 0; j < O; j++) {                                      \
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

/* Which tile the dot products run on: cynn_dot_init() sets it once, at import, from
   whether the CPU has x86-64-v4 (as conv.h's cynn_v64_init). */
static int cynn_dot_v64 = 0;
static inline int cynn_dot_init(void) {
    cynn_dot_v64 = cynn_cpu_v64();
    return cynn_dot_v64;
}

#define CYNN_DOT_TILE(NAME, T, SFX)                                                    \
/* (the one-row tiles name themselves as ONE_ROW: never called, as R is 1) */          \
CYNN_DOT_TILE_VB(NAME##_y1, T, SFX, 32, 1, 6, CYNN_WIDE, NAME##_y1)                    \
CYNN_DOT_TILE_VB(NAME##_y, T, SFX, 32, 3, 3, CYNN_WIDE, NAME##_y1)                     \
CYNN_DOT_TILE_VB(NAME##_z1, T, SFX, 64, 1, 8, CYNN_V64, NAME##_z1)                     \
CYNN_DOT_TILE_VB(NAME##_z, T, SFX, 64, 4, 4, CYNN_V64, NAME##_z1)                      \
CYNN_KERNEL void NAME(const T* x, Py_ssize_t ldx, Py_ssize_t r0, Py_ssize_t r1,         \
        const T* w, Py_ssize_t ldw, Py_ssize_t o0, Py_ssize_t o1, Py_ssize_t k,        \
        const T* bias, int relu, T* y, Py_ssize_t ldy) {                               \
    (cynn_dot_v64 ? NAME##_z : NAME##_y)(x, ldx, r0, r1, w, ldw, o0, o1, k, bias, relu, \
                                         y, ldy);                                      \
}

CYNN_FLOAT_AND_DOUBLE(CYNN_DOT_TILE, cynn_dot_tile)

#endif /* CYNN_DENSE_H */
