"""Time cynn's depthwise Conv2d kernels side by side with PyTorch's grouped convolution.

    python benchmarks/bench_depthwise.py                  # float32, 2 threads
    python benchmarks/bench_depthwise.py --threads 1 2    # one table set per thread count
    python benchmarks/bench_depthwise.py --layer          # through cynn.Conv2d(groups=C)

Shapes: (64, 64, 32, 32) and (64, 128, 16, 16) with a 3x3 kernel, stride 1, padding 1,
and (64, 64, 32, 32) with stride 2; one output channel per input channel, with bias.

What is timed.  cynn: ``depthwise_forward`` (forward), ``depthwise_backward_input`` +
``depthwise_backward_params`` (backward), all three (forward+backward), called
directly from cynn._kernels.depthwise, allocating the output and the input gradient
with np.empty on every call as a layer does (PyTorch allocates its results too); with
``--layer``, ``Conv2d.forward`` / ``zero_grad`` + ``Conv2d.backward`` instead.
PyTorch: ``torch.nn.functional.conv2d(x, w, b, groups=C)`` under no_grad (forward),
``y.backward(dy)`` on a graph built outside the timer (backward), and both with the
input, weight and bias gradients (forward+backward).  Thread counts: cynn.set_num_threads
and torch.set_num_threads.

Everything runs in one process: each case is warmed up, then timed ``--repeats`` times
per round, cynn and PyTorch alternating for ``--rounds`` rounds, and the median of all
its times is printed.  Ratios are cynn / PyTorch (below 1: cynn is faster).  The machine
may be shared: run it on a quiet machine, and compare ratios from one run only.
"""
import argparse
import statistics
import sys
import time

import numpy as np

import cynn
from cynn._kernels import depthwise as _dw

try:
    import torch
except ImportError:  # PyTorch is an optional extra
    torch = None

# (N, C, H=W, stride); 3x3 kernel, padding 1, multiplier 1
SHAPES = [(64, 64, 32, 1), (64, 128, 16, 1), (64, 64, 32, 2)]
KERNEL, PADDING = 3, 1


def time_calls(fn, repeats, setup=None):
    """Wall time of each of ``repeats`` calls of fn (after ``setup()``, untimed)."""
    times = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def cynn_kernel_cases(x, w, b, dy, stride, threads):
    n, c, h, wd = x.shape
    k, p = KERNEL, PADDING
    wk = w.reshape(c, k, k)
    gw = np.zeros_like(wk)
    gb = np.zeros_like(b)
    out_shape = dy.shape

    def forward():
        out = np.empty(out_shape, x.dtype)
        _dw.depthwise_forward(x, wk, b, out, k, k, stride, stride, p, p, True, threads)
        return out

    def backward():
        dx = np.empty(x.shape, x.dtype)
        _dw.depthwise_backward_input(dy, wk, dx, k, k, stride, stride, p, p, threads)
        gw[...] = 0
        gb[...] = 0
        _dw.depthwise_backward_params(x, dy, gw, gb, k, k, stride, stride, p, p, True, threads)
        return dx

    def forward_backward():
        forward()
        backward()

    return {"fwd": (forward, None), "bwd": (backward, None), "f+b": (forward_backward, None)}


def cynn_layer_cases(x, w, b, dy, stride):
    c = x.shape[1]
    try:
        layer = cynn.Conv2d(c, c, KERNEL, stride=stride, padding=PADDING, groups=c,
                            dtype=x.dtype, random_state=0)
    except TypeError as exc:
        sys.exit(f"--layer needs cynn.Conv2d(..., groups=C), which this cynn lacks ({exc})")
    layer.W[...] = w
    layer.b[...] = b

    def forward():
        layer.forward(x)

    def backward():
        layer.zero_grad()
        layer.backward(x, dy)

    def forward_backward():
        forward()
        backward()

    return {"fwd": (forward, None), "bwd": (backward, forward), "f+b": (forward_backward, None)}


def torch_cases(x, w, b, dy, stride):
    c = x.shape[1]
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    tdy = torch.tensor(dy)
    conv = torch.nn.functional.conv2d
    graph = {}

    def clear():
        tx.grad = tw.grad = tb.grad = None

    def forward():
        with torch.no_grad():
            conv(tx, tw, tb, stride=stride, padding=PADDING, groups=c)

    def build():
        clear()
        graph["y"] = conv(tx, tw, tb, stride=stride, padding=PADDING, groups=c)

    def backward():
        graph.pop("y").backward(tdy)

    def forward_backward():
        clear()
        conv(tx, tw, tb, stride=stride, padding=PADDING, groups=c).backward(tdy)

    return {"fwd": (forward, None), "bwd": (backward, build), "f+b": (forward_backward, None)}


def bench_shape(shape, threads, args):
    n, c, hw, stride = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, hw, hw), dtype=np.float32)
    w = rng.uniform(-1 / 3, 1 / 3, (c, 1, KERNEL, KERNEL)).astype(np.float32)
    b = rng.uniform(-1 / 3, 1 / 3, c).astype(np.float32)
    ho = (hw + 2 * PADDING - KERNEL) // stride + 1
    dy = rng.standard_normal((n, c, ho, ho), dtype=np.float32)
    impls = {"cynn": (cynn_layer_cases(x, w, b, dy, stride) if args.layer
                      else cynn_kernel_cases(x, w, b, dy, stride, threads))}
    if torch is not None:
        impls["torch"] = torch_cases(x, w, b, dy, stride)
    times = {(impl, what): [] for impl in impls for what in ("fwd", "bwd", "f+b")}
    for cases in impls.values():        # warm-up: first-touch pages, JIT paths, pools
        for fn, setup in cases.values():
            time_calls(fn, 2, setup)
    for _ in range(args.rounds):
        for impl, cases in impls.items():
            for what, (fn, setup) in cases.items():
                times[impl, what] += time_calls(fn, args.repeats, setup)
            time.sleep(0.05)            # let the other runtime's idle threads sleep
    return {key: statistics.median(v) for key, v in times.items()}


def print_table(shape, res, threads, mode):
    n, c, hw, stride = shape
    print(f"\n({n}, {c}, {hw}, {hw}) 3x3 stride {stride} padding {PADDING}, float32, "
          f"{threads} thread(s), cynn {mode}")
    header = f"{'':<10}{'cynn ms':>10}{'torch ms':>10}{'cynn/torch':>12}"
    print(header)
    print("-" * len(header))
    for what in ("fwd", "bwd", "f+b"):
        mine = res["cynn", what] * 1e3
        if ("torch", what) in res:
            theirs = res["torch", what] * 1e3
            print(f"{what:<10}{mine:10.2f}{theirs:10.2f}{mine / theirs:12.2f}")
        else:
            print(f"{what:<10}{mine:10.2f}{'':>10}{'n/a':>12}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", nargs="+", type=int, default=[2])
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per round")
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternating cynn/PyTorch rounds; the median is over all")
    parser.add_argument("--layer", action="store_true",
                        help="time cynn.Conv2d(C, C, 3, padding=1, groups=C) instead of the kernels")
    args = parser.parse_args()
    mode = "Conv2d(groups=C) layer" if args.layer else "kernels"
    print(f"# cynn OpenMP: {cynn._kernels.conv.openmp_enabled()}   PyTorch: "
          f"{torch.__version__ if torch is not None else 'not installed (ratios skipped)'}")
    for threads in args.threads:
        cynn.set_num_threads(threads)
        if torch is not None:
            torch.set_num_threads(threads)
        ratios = []
        for shape in SHAPES:
            res = bench_shape(shape, threads, args)
            print_table(shape, res, threads, mode)
            if ("torch", "f+b") in res:
                ratios.append(res["cynn", "f+b"] / res["torch", "f+b"])
            sys.stdout.flush()
        if ratios:
            print(f"\n{threads} thread(s): cynn/torch forward+backward worst {max(ratios):.2f}, "
                  f"geometric mean {float(np.exp(np.mean(np.log(ratios)))):.2f}")


if __name__ == "__main__":
    main()
