/* What several kernels' C shares: build flags, function attributes and the vector
   types of the GCC/Clang vector extensions.  Included from the .pyx files with
   `cdef extern from "cynn_common.h"` (directly or through a kernel's own header). */
#ifndef CYNN_COMMON_H
#define CYNN_COMMON_H

#include <Python.h>   /* Py_ssize_t; already included first by Cython's generated C */
#include <string.h>   /* memcpy, the aliasing-safe way to load and store a vector */

/* Build flags the modules report: conv.openmp_enabled(), conv.debug_build() (setup.py
   defines CYNN_DEBUG_BUILD) and conv.sanitize_build(). */
#ifdef _OPENMP
#define CYNN_HAVE_OPENMP 1
#else
#define CYNN_HAVE_OPENMP 0
#endif
#ifndef CYNN_DEBUG_BUILD
#define CYNN_DEBUG_BUILD 0
#endif
/* A CYNN_SANITIZE=1 build (conv.sanitize_build()): gcc says so with
   __SANITIZE_ADDRESS__, clang with __has_feature(address_sanitizer). */
#if defined(__SANITIZE_ADDRESS__)
#define CYNN_SANITIZE_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CYNN_SANITIZE_BUILD 1
#endif
#endif
#ifndef CYNN_SANITIZE_BUILD
#define CYNN_SANITIZE_BUILD 0
#endif

/* Every kernel function is static, defined in its kernel's header; a file that
   includes a header and calls only some of its functions gets no warning for the
   others (the attribute changes no code). */
#define CYNN_KERNEL static __attribute__((unused))

/* Clones of a hot function for AVX-512 and for AVX2, both with FMA, picked once at
   load time (an ifunc: GCC on x86-64 glibc Linux only; elsewhere the one baseline
   version).  The clones are "arch=x86-64-v4" (AVX-512 F/BW/DQ/VL on top of v3) and
   "arch=x86-64-v3" (AVX2, FMA, BMI2...), dispatched on the CPU's features.  Neither
   a plain "avx2" nor a plain "avx512f" clone has FMA, so every multiply-add would
   be two instructions (an AVX-512 AMD EPYC ran the convolution at half speed on the
   "avx512f" clone), and "arch=haswell" is dispatched on the CPU model, so an AMD
   CPU never gets it.  GCC 12 is the first to take x86-64-v3/v4 in target_clones. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && defined(__GLIBC__) && __GNUC__ >= 12
#define CYNN_WIDE __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#elif defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && defined(__GLIBC__)
#define CYNN_WIDE __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CYNN_WIDE
#endif

/* The hottest convolution kernels come twice: with 32-byte vectors (CYNN_WIDE's clones)
   and with 64-byte vectors compiled for x86-64-v4 (CYNN_V64).  A CPU whose AVX-512
   units are a full 64 bytes wide (this host's EPYC) doubles its multiply-adds per
   cycle with the second.  conv.h keeps the switch between them. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && defined(__GLIBC__) && __GNUC__ >= 12
#define CYNN_HAVE_V64 1
#define CYNN_V64 __attribute__((target("arch=x86-64-v4")))
#else
#define CYNN_HAVE_V64 0
#define CYNN_V64
#endif

/* Whether this CPU runs the CYNN_V64 code (x86-64-v4); the kernels with two widths ask
   once, at import. */
static inline int cynn_cpu_v64(void) {
#if CYNN_HAVE_V64
    __builtin_cpu_init();
    return __builtin_cpu_supports("x86-64-v4") ? 1 : 0;
#else
    return 0;
#endif
}

/* Keeps GCC from turning a short copy loop into a libc memcpy call, whose call
   overhead costs more than the copy on rows of a few values. */
#if defined(__GNUC__) && !defined(__clang__)
#define CYNN_NO_MEMCPY __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define CYNN_NO_MEMCPY
#endif

/* Vector types by width in bytes and element type: cynn_v32f is 32 bytes of float
   (8 lanes), cynn_v64d 64 bytes of double (8 lanes).  Loads and stores go through
   memcpy, so the data need not be aligned to the vector's width. */
typedef float cynn_v32f __attribute__((vector_size(32)));
typedef double cynn_v32d __attribute__((vector_size(32)));
typedef float cynn_v64f __attribute__((vector_size(64)));
typedef double cynn_v64d __attribute__((vector_size(64)));

/* __builtin_shufflevector (GCC 12+, Clang), for the kernels that permute vector lanes;
   where it is missing they fall back to plain loops. */
#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define CYNN_SHUFFLE __builtin_shufflevector
#endif
#endif

/* Whether max pooling takes value v over the best so far: strictly greater (the first
   of equal maxima wins), or v is a NaN and best is not (a NaN, once taken, stays).
   MaxPool2d's kernels and the convolution's pooling epilogue share it. */
#define CYNN_MAX_TAKES(v, best) ((v) > (best) || ((v) != (v) && (best) == (best)))

/* Instantiates a kernel macro KERNEL(NAME, T, SFX) for float, as NAME_f, and for
   double, as NAME_d; SFX (f or d) names the matching vector type, cynn_v32##SFX. */
#define CYNN_FLOAT_AND_DOUBLE(KERNEL, NAME)                                            \
    KERNEL(NAME##_f, float, f)                                                         \
    KERNEL(NAME##_d, double, d)

#endif /* CYNN_COMMON_H */
