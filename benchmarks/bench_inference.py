"""Inference throughput: cynn against PyTorch and ONNX Runtime, side by side.

    python benchmarks/bench_inference.py [--batches 1 16 512] [--threads 2] [--rounds 7]
                                         [--models small_cnn mnist_cnn resnet20]

Three networks in evaluation mode, float32: ``small_cnn`` on 8x8 digits, the MNIST-style
CNN of ``bench_training.py --shapes`` on 28x28 and ResNet-20 on 32x32x3.  Each gets
nontrivial weights and batch-norm moving statistics, and the same network is built in
PyTorch with the same values (``bench_residual.torch_twin``).  The rows:

- ``cynn``: ``model.forward`` inside ``cynn.inference_mode()``, the planned evaluation
  path (batch norm and scaling folded into the convolutions, fused epilogues);
- ``cynn-plain``: the same call with the plan switched off
  (``cynn.set_inference_plans(False)``), layer by layer;
- ``torch``: the PyTorch twin under ``torch.inference_mode()``;
- ``ort``: ONNX Runtime on the twin exported with ``torch.onnx.export`` (batch axis
  dynamic, all graph optimizations, ``intra_op_num_threads`` = the thread count,
  ``inter_op_num_threads`` 1).  Needs the ``onnx`` extra; skipped with a note when absent.

For every batch size the frameworks alternate within each round; a round times enough
calls of each to last about ``--seconds`` and keeps the median call.  Images per second
are batch / the median over the rounds.  Before timing, the script checks that the
planned output equals the layer-by-layer one within 1e-5 relative (of the output's
largest magnitude) and prints the largest difference to ONNX Runtime's output.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

import cynn
from cynn.models import small_cnn, resnet

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_residual import torch_twin  # noqa: E402
from bench_training import mnist_style_cynn  # noqa: E402

try:
    import torch
except ImportError:
    torch = None
try:
    import onnxruntime as ort
except ImportError:
    ort = None


def _randomize(model, rng):
    """Give batch-norm statistics and scalings values away from their identities, so
    that folding them is exercised."""
    for m in _walk(model):
        if isinstance(m, cynn.BatchNormalization) and m.moving_mean is not None:
            m.moving_mean[...] = rng.normal(0, 0.2, m.moving_mean.shape)
            m.moving_variance[...] = rng.uniform(0.5, 2.0, m.moving_variance.shape)
        if isinstance(m, cynn.ChannelwiseScaling):
            m.gamma[...] = rng.uniform(0.5, 1.5, m.gamma.shape)
            m.beta[...] = rng.normal(0, 0.1, m.beta.shape)
    return model


def _walk(module):
    yield module
    for child in module.children():
        yield from _walk(child)


def build_models(names, seed=0):
    rng = np.random.default_rng(seed)
    made = {}
    for name in names:
        if name == "small_cnn":
            model, shape = small_cnn((1, 8, 8), 10, random_state=seed), (1, 8, 8)
        elif name == "mnist_cnn":
            model, shape = mnist_style_cynn(seed), (1, 28, 28)
        elif name == "resnet20":
            model, shape = resnet(20, random_state=seed), (3, 32, 32)
        else:
            raise SystemExit(f"unknown model {name!r}")
        for m in _walk(model):
            if isinstance(m, cynn.BatchNormalization) and m.moving_mean is None:
                m._allocate(m.n_features)
        made[name] = (_randomize(model, rng), shape)
    return made


def _copy_buffers(model, twin):
    """Moving statistics into the twin's BatchNorm2d layers (same order in both)."""
    ours = [m for m in _walk(model) if isinstance(m, cynn.BatchNormalization)]
    theirs = [m for m in twin.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(ours) == len(theirs)
    with torch.no_grad():
        for a, b in zip(ours, theirs):
            b.running_mean.copy_(torch.from_numpy(a.moving_mean))
            b.running_var.copy_(torch.from_numpy(a.moving_variance))


def make_runners(model, shape, threads):
    """name -> (callable on a float32 batch returning a numpy array)."""
    model.evaluate()

    def run_cynn(x):
        with cynn.inference_mode():
            return model.forward(x)

    def run_plain(x):
        previous = cynn.set_inference_plans(False)
        try:
            with cynn.inference_mode():
                return model.forward(x)
        finally:
            cynn.set_inference_plans(previous)

    runners = {"cynn": run_cynn, "cynn-plain": run_plain}
    notes = []
    if torch is None:
        notes.append("PyTorch is not installed: no torch or ort rows")
        return runners, notes
    twin = torch_twin(model)
    _copy_buffers(model, twin)
    twin.eval()

    def run_torch(x):
        with torch.inference_mode():
            return twin(torch.from_numpy(x)).numpy()

    runners["torch"] = run_torch
    if ort is None:
        notes.append("onnxruntime is not installed (pip install 'cynn-framework[onnx]'): no ort row")
        return runners, notes
    path = os.path.join(tempfile.mkdtemp(), "model.onnx")
    torch.onnx.export(twin, (torch.zeros((2,) + shape),), path, dynamo=False,
                      input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "N"}, "y": {0: "N"}}, opset_version=17)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])

    def run_ort(x):
        return session.run(None, {"x": x})[0]

    runners["ort"] = run_ort
    return runners, notes


def time_call(fn, x, seconds):
    """Median seconds of one call, over as many calls as fit in ``seconds`` (at least 3)."""
    t0 = time.perf_counter()
    fn(x)
    once = max(time.perf_counter() - t0, 1e-6)
    calls = max(3, min(2000, int(seconds / once)))
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["small_cnn", "mnist_cnn", "resnet20"])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 512])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.3)
    args = parser.parse_args()
    cynn.set_num_threads(args.threads)
    if torch is not None:
        torch.set_num_threads(args.threads)
    print(f"float32, evaluation mode, {args.threads} thread(s), OPENBLAS_CORETYPE="
          f"{os.environ.get('OPENBLAS_CORETYPE', '(unset)')}; median of {args.rounds} rounds, "
          f"frameworks alternating; torch {torch.__version__ if torch else '-'}, onnxruntime "
          f"{ort.__version__ if ort else '-'}")
    rng = np.random.default_rng(1)
    for name, (model, shape) in build_models(args.models).items():
        runners, notes = make_runners(model, shape, args.threads)
        for note in notes:
            print(f"  note: {note}")
        x = rng.random((max(args.batches),) + shape, dtype=np.float32)
        fast, plain = runners["cynn"](x[:16]), runners["cynn-plain"](x[:16])
        scale = float(np.abs(plain).max())
        diff = float(np.abs(fast - plain).max()) / scale
        line = f"{name} {shape}: planned vs layer by layer, max |diff| / max |out| = {diff:.1e}"
        if diff > 1e-5:
            raise SystemExit(line + ": above 1e-5")
        if "ort" in runners:
            line += (f"; vs ort {float(np.abs(fast - runners['ort'](x[:16])).max()) / scale:.1e}")
        print(line)
        header = "".join(f"{r:>12}" for r in runners)
        ratio_cols = [r for r in ("torch", "ort") if r in runners]
        print(f"  {'batch':>5}{header}   img/s" + "".join(f"{'cynn/' + r:>12}" for r in ratio_cols))
        for batch in args.batches:
            xb = np.ascontiguousarray(x[:batch])
            times = {r: [] for r in runners}
            for _ in range(args.rounds):
                for r, fn in runners.items():
                    times[r].append(time_call(fn, xb, args.seconds))
            med = {r: statistics.median(t) for r, t in times.items()}
            print(f"  {batch:5}" + "".join(f"{batch / med[r]:12,.0f}" for r in runners) + "        "
                  + "".join(f"{med['cynn'] / med[r]:12.2f}" for r in ratio_cols), flush=True)


if __name__ == "__main__":
    main()
