"""Time cynn's kernel layers side by side with PyTorch and the seed-style SciPy reference.

    python benchmarks/bench_layers.py                 # float32 and float64, 2 and 1 threads
    python benchmarks/bench_layers.py --quick         # fewer shapes and repeats
    python benchmarks/bench_layers.py --blas-env both # also rerun without OPENBLAS_CORETYPE/L2_SIZE

Everything runs in one process per BLAS setting: each case is warmed up, then timed
``--repeats`` times, and the median is printed.  Ratios are cynn time / reference time
(below 1 means cynn is faster); the seed column is the other way round: how many times
faster cynn's forward+backward is than the seed's loops.  PyTorch runs with the same thread count and dtype, and
is skipped with a note when it is not installed.  The seed reference (the course
notebook's scipy.signal loops) runs in float64 only, once per case, on the smaller shapes.
"""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

import cynn
from cynn._kernels import _seed

try:
    import torch
except ImportError:  # PyTorch is an optional extra
    torch = None

# (N, C_in, C_out, H=W, k, stride); padding 'same'
CONV_SHAPES = [
    (64, 1, 16, 8, 3, 1), (64, 16, 32, 8, 3, 1), (64, 1, 32, 28, 3, 1), (64, 32, 64, 14, 3, 1),
    (64, 3, 32, 32, 3, 1), (64, 32, 64, 16, 3, 1), (128, 64, 64, 16, 3, 1), (64, 16, 16, 28, 5, 1),
    (64, 32, 64, 16, 3, 2),
]
BN_SHAPES = [(64, 32, 14, 14), (128, 64, 16, 16), (256, 512)]
POOL_SHAPES = [(64, 32, 28, 28), (64, 64, 14, 14)]
SEED_MAX_MACS = 3e7      # the seed reference takes minutes above this


def median_time(fn, repeats, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def gemm_rate(threads, repeats, dtype=np.float32):
    """numpy GEMM GFLOP/s on 2048^2 matrices: the practical ceiling."""
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(0).standard_normal((2048, 2048)).astype(dtype)
    b = a.copy()
    with threadpool_limits(threads, user_api="blas"):
        t = median_time(lambda: a @ b, repeats)
    # NumPy's BLAS threads keep spinning for a while after a GEMM; let them sleep
    # before timing anything that needs the cores.
    time.sleep(1.0)
    return 2 * 2048 ** 3 / t / 1e9


def _fmt_ratio(a, b):
    return f"{a / b:6.2f}" if b else "   n/a"


def bench_conv(shape, dtype, repeats, use_seed):
    n, c, f, hw, k, s = shape
    rng = np.random.default_rng(0)
    layer = cynn.Conv2d(c, f, k, stride=s, dtype=dtype, random_state=0)
    x = rng.standard_normal((n, c, hw, hw)).astype(dtype)
    y = layer.forward(x)
    dy = rng.standard_normal(y.shape).astype(dtype)

    def fwd_bwd():
        layer.zero_grad()
        layer.forward(x)
        layer.backward(x, dy)

    res = {"fwd": median_time(lambda: layer.forward(x), repeats), "fb": median_time(fwd_bwd, repeats)}
    macs = n * f * y.shape[2] * y.shape[3] * c * k * k
    res["gflops"] = 3 * 2 * macs / res["fb"] / 1e9
    if torch is not None:
        tconv = torch.nn.Conv2d(c, f, k, stride=s, padding=k // 2).to(getattr(torch, np.dtype(dtype).name))
        tx = torch.tensor(x, requires_grad=True)
        tdy = torch.tensor(dy)
        with torch.no_grad():
            res["t_fwd"] = median_time(lambda: tconv(tx), repeats)

        def t_fb():
            tconv.zero_grad()
            tx.grad = None
            tconv(tx).backward(tdy)

        res["t_fb"] = median_time(t_fb, repeats)
    if use_seed and dtype == np.float64 and s == 1 and macs <= SEED_MAX_MACS:
        w, b = layer.W, layer.b
        res["s_fwd"] = median_time(lambda: _seed.conv2d_forward(x, w, b), 1, warmup=0)
        res["s_fb"] = res["s_fwd"] + median_time(lambda: (_seed.conv2d_input_grad(x, w, dy),
                                                          _seed.conv2d_parameter_grads(x, w, dy)), 1, warmup=0)
    return res


def bench_bn(shape, dtype, repeats, use_seed):
    rng = np.random.default_rng(0)
    layer = cynn.BatchNormalization(alpha=0.9, dtype=dtype)
    x = rng.standard_normal(shape).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)

    def fwd_bwd():
        layer.forward(x)
        layer.backward(x, dy)

    res = {"fwd": median_time(lambda: layer.forward(x), repeats), "fb": median_time(fwd_bwd, repeats)}
    res["gbs"] = 5 * x.nbytes / res["fb"] / 1e9   # x read 3 times, dy read twice: a lower bound
    if torch is not None:
        cls = torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d
        tbn = cls(shape[1], eps=1e-3, momentum=0.1, affine=False).to(getattr(torch, np.dtype(dtype).name))
        tx = torch.tensor(x, requires_grad=True)
        tdy = torch.tensor(dy)
        with torch.no_grad():
            res["t_fwd"] = median_time(lambda: tbn(tx), repeats)

        def t_fb():
            tx.grad = None
            tbn(tx).backward(tdy)

        res["t_fb"] = median_time(t_fb, repeats)
    if use_seed and dtype == np.float64:
        x2 = np.moveaxis(x, 1, -1).reshape(-1, shape[1]) if len(shape) == 4 else x
        dy2 = np.moveaxis(dy, 1, -1).reshape(-1, shape[1]) if len(shape) == 4 else dy
        res["s_fwd"] = median_time(lambda: _seed.batchnorm_forward(x2, 0.0, 1.0, 0.9, 1e-3, True), repeats)
        res["s_fb"] = res["s_fwd"] + median_time(lambda: _seed.batchnorm_input_grad(x2, dy2, 1e-3), repeats)
    return res


def bench_pool(shape, dtype, repeats, use_seed):
    rng = np.random.default_rng(0)
    layer = cynn.MaxPool2d(2)
    x = rng.standard_normal(shape).astype(dtype)
    y = layer.forward(x)
    dy = rng.standard_normal(y.shape).astype(dtype)

    def fwd_bwd():
        layer.forward(x)
        layer.backward(x, dy)

    res = {"fwd": median_time(lambda: layer.forward(x), repeats), "fb": median_time(fwd_bwd, repeats)}
    if torch is not None:
        tx = torch.tensor(x, requires_grad=True)
        tdy = torch.tensor(dy)
        with torch.no_grad():
            res["t_fwd"] = median_time(lambda: torch.nn.functional.max_pool2d(tx, 2), repeats)

        def t_fb():
            tx.grad = None
            torch.nn.functional.max_pool2d(tx, 2).backward(tdy)

        res["t_fb"] = median_time(t_fb, repeats)
    return res


def print_table(title, rows, extra_name):
    print(f"\n{title}")
    header = (f"{'shape':<28}{'fwd ms':>9}{'f+b ms':>9}{extra_name:>9}"
              f"{'torch f+b':>11}{'/torch fwd':>11}{'/torch f+b':>11}{'seed f+b':>10}{'seed/cynn':>11}")
    print(header)
    print("-" * len(header))
    for label, r in rows:
        extra = r.get("gflops", r.get("gbs"))
        cells = [
            f"{extra:.1f}" if extra is not None else "",
            f"{r['t_fb'] * 1e3:.3f}" if "t_fb" in r else "",
            _fmt_ratio(r["fwd"], r["t_fwd"]) if "t_fwd" in r else "",
            _fmt_ratio(r["fb"], r["t_fb"]) if "t_fb" in r else "",
            f"{r['s_fb'] * 1e3:.1f}" if "s_fb" in r else "",
            f"{r['s_fb'] / r['fb']:.0f}x" if "s_fb" in r else "",
        ]
        print(f"{label:<28}{r['fwd'] * 1e3:9.3f}{r['fb'] * 1e3:9.3f}{cells[0]:>9}"
              f"{cells[1]:>11}{cells[2]:>11}{cells[3]:>11}{cells[4]:>10}{cells[5]:>11}")
    ratios = [r["fb"] / r["t_fb"] for _, r in rows if "t_fb" in r]
    if ratios:
        geo = float(np.exp(np.mean(np.log(ratios))))
        print(f"geometric mean cynn/torch f+b: {geo:.2f}   worst: {max(ratios):.2f}")


def rss_growth(dtype, iterations=100):
    """Peak RSS growth (MiB) over the first ``iterations`` training steps of a
    conv-BN-pool stack and over the next ``iterations``: the second is near zero when
    nothing accumulates (the first includes the allocator settling its heap)."""
    rng = np.random.default_rng(0)
    model = cynn.Sequential(cynn.Conv2d(32, 64, 3, dtype=dtype, random_state=0),
                            cynn.BatchNormalization(dtype=dtype), cynn.MaxPool2d(2),
                            cynn.Conv2d(64, 64, 3, dtype=dtype, random_state=1))
    x = rng.standard_normal((64, 32, 16, 16)).astype(dtype)
    dy = rng.standard_normal((64, 64, 8, 8)).astype(dtype)

    def step():
        model.zero_grad()
        model.forward(x)
        model.backward(x, dy)

    growth = []
    for _ in range(2):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for _ in range(iterations):
            step()
        growth.append((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
    return growth


def run(args):
    blas = {k: os.environ.get(k, "<unset>") for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    print(f"# BLAS environment: {blas}")
    print(f"# cynn OpenMP: {cynn._kernels.conv.openmp_enabled()}   "
          f"PyTorch: {torch.__version__ if torch is not None else 'not installed (ratios skipped)'}")
    conv_shapes = CONV_SHAPES[:3] + CONV_SHAPES[-1:] if args.quick else CONV_SHAPES
    for threads in args.threads:
        cynn.set_num_threads(threads)
        if torch is not None:
            torch.set_num_threads(threads)
        print(f"\n## {threads} thread(s): numpy GEMM float32 {gemm_rate(threads, args.repeats):.0f}, "
              f"float64 {gemm_rate(threads, args.repeats, np.float64):.0f} GFLOP/s")
        for dtype in args.dtypes:
            dt = np.dtype(dtype).type
            rows = [(f"{s[:5]}{' s2' if s[5] == 2 else ''}", bench_conv(s, dt, args.repeats, args.seed))
                    for s in conv_shapes]
            print_table(f"Conv2d {dtype}, {threads} thread(s)  [GFLOP/s of f+b]", rows, "GFLOP/s")
            rows = [(str(s), bench_bn(s, dt, args.repeats, args.seed)) for s in BN_SHAPES]
            print_table(f"BatchNormalization (train) {dtype}, {threads} thread(s)  [GB/s of f+b]", rows, "GB/s")
            rows = [(str(s), bench_pool(s, dt, args.repeats, args.seed)) for s in POOL_SHAPES]
            print_table(f"MaxPool2d k=2 {dtype}, {threads} thread(s)", rows, "")
            first, steady = rss_growth(dt)
            print(f"peak RSS growth, conv-BN-pool-conv training steps on 64x32x16x16 {dtype}: "
                  f"{first:.1f} MiB over steps 1-100, {steady:.1f} MiB over steps 101-200")
            sys.stdout.flush()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    parser.add_argument("--threads", nargs="+", type=int, default=[2, 1])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="four conv shapes only")
    parser.add_argument("--no-seed", dest="seed", action="store_false", help="skip the seed reference")
    parser.add_argument("--blas-env", choices=["asis", "unset", "both"], default="asis",
                        help="run with OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE as set, unset (child process), or both")
    args = parser.parse_args()
    if args.blas_env in ("asis", "both"):
        run(args)
    if args.blas_env in ("unset", "both"):
        env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
        argv = [a for a in sys.argv[1:] if not a.startswith("--blas-env")]
        if "--blas-env" in sys.argv:
            i = sys.argv.index("--blas-env")
            argv = sys.argv[1:i] + sys.argv[i + 2:]
        print("\n\n######## child process with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset ########", flush=True)
        subprocess.run([sys.executable, __file__, *argv, "--blas-env", "asis"], env=env, check=True)


if __name__ == "__main__":
    main()
