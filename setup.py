"""Build script for cynn's Cython kernels.

The extension list, the compiler directives and the OpenMP detection live here, once.

Environment variables read at build time:

CYNN_DEBUG=1
    Build with bounds checking, wraparound and initialized-check directives on, so the
    test suite can run against a checked build.
CYNN_SANITIZE=1
    Build with AddressSanitizer and UndefinedBehaviorSanitizer (-O1 -g), for the
    kernels' raw-pointer C that Cython's checks never see.  The extensions then need
    the ASan runtime loaded first: .ci/sanitize builds one and runs the tests under it.
CYNN_NO_OPENMP=1
    Build serial kernels even where OpenMP is available.
"""
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

KERNELS = ["conv", "batchnorm", "pooling", "dense", "activation", "depthwise", "optim"]


def _flag(name):
    return os.environ.get(name, "0") not in ("", "0")


DEBUG = _flag("CYNN_DEBUG")
SANITIZE = _flag("CYNN_SANITIZE")


def _openmp_flags():
    """Return the OpenMP compile/link flag if the C compiler accepts it, else None.

    A tiny program is compiled and linked with -fopenmp, the same way the
    extensions will be; if that fails the build goes on with serial kernels.
    """
    if os.environ.get("CYNN_NO_OPENMP", "0") not in ("", "0"):
        return None
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        return None
    source = "#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "check_openmp.c")
        with open(path, "w") as f:
            f.write(source)
        try:
            result = subprocess.run(
                [cc, "-fopenmp", path, "-o", os.path.join(tmp, "check_openmp")],
                capture_output=True,
            )
        except OSError:
            return None
    return "-fopenmp" if result.returncode == 0 else None


OPENMP_FLAG = _openmp_flags()
if OPENMP_FLAG is None:
    print("cynn: OpenMP not available; building serial kernels", file=sys.stderr)
else:
    print("cynn: building kernels with OpenMP", file=sys.stderr)

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
    "nonecheck": DEBUG,
    "embedsignature": True,
}
if DEBUG:
    print("cynn: CYNN_DEBUG=1, building with bounds and wraparound checks", file=sys.stderr)

compile_args = ["-O0", "-g"] if DEBUG else ["-O3"]
link_args = []
if SANITIZE:
    print("cynn: CYNN_SANITIZE=1, building with -fsanitize=address,undefined", file=sys.stderr)
    # -fno-wrapv undoes Python's -fwrapv so that signed overflow is reported, not
    # wrapped; -fno-sanitize-recover makes every report fatal, so no test can pass
    # over one.
    sanitize = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                "-fno-omit-frame-pointer"]
    compile_args = ["-O1", "-g", "-fno-wrapv"] + sanitize
    link_args = list(sanitize)
if OPENMP_FLAG:
    compile_args.append(OPENMP_FLAG)
    link_args.append(OPENMP_FLAG)

# The kernels' C lives in headers next to the .pyx files, found through the include
# path: cynn_common.h, shared, and one per kernel (conv.h for conv.pyx...).  Listed as
# dependencies, so that editing a header rebuilds the kernels that include it.
KERNEL_DIR = "cynn/_kernels"


def _headers(name):
    """The headers kernel ``name`` builds from: the shared one, and its own if it has one."""
    own = f"{KERNEL_DIR}/{name}.h"
    return [f"{KERNEL_DIR}/cynn_common.h"] + ([own] if os.path.exists(own) else [])


extensions = [
    Extension(
        f"cynn._kernels.{name}",
        [f"{KERNEL_DIR}/{name}.pyx"],
        include_dirs=[KERNEL_DIR, np.get_include()],
        depends=_headers(name),
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
                       ("CYNN_DEBUG_BUILD", "1" if DEBUG else "0")],
        # optim.pyx must round as NumPy does: no multiply-add contraction, whatever
        # CFLAGS the environment adds (and sqrt without errno, so that it vectorizes)
        extra_compile_args=compile_args + (["-ffp-contract=off", "-fno-math-errno"]
                                            if name == "optim" else []),
        extra_link_args=link_args,
    )
    for name in KERNELS
]
# Without -fopenmp, Cython compiles every prange loop as a plain serial loop.


setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        # The checked build's C goes to a folder of its own, so that a later plain
        # build never compiles C generated with the checks on (or the reverse).
        build_dir="build/cython-debug" if DEBUG else None,
        force=DEBUG,
    ),
    # The C is the same with and without sanitizers: recompile it whatever its age.
    options={"build_ext": {"force": True}} if SANITIZE else {},
)
