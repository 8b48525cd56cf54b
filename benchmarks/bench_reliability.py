"""Reliability figures: concurrent inference, float32 accuracy beside PyTorch, long runs.

    python benchmarks/bench_reliability.py threads    # mismatches and 2-thread scaling
    python benchmarks/bench_reliability.py float32    # error vs float64, cynn beside PyTorch
    python benchmarks/bench_reliability.py long       # resident memory over 100 epochs
    python benchmarks/bench_reliability.py all

threads: one small_cnn in evaluation mode, 8 Python threads x 50 forward calls on
different batches, compared bit for bit with serial calls (and the same for
NeuralNetClassifier.predict_proba); then, with cynn.set_num_threads(1), images per
second of one Python thread against two threads sharing the model, median of
--repeats rounds, at batches of 16, 64 and 256, so the GIL release of the kernels
shows as a ratio near 2.  Run it also with MALLOC_MMAP_THRESHOLD_=4294967296
MALLOC_TRIM_THRESHOLD_=4294967296: glibc then reuses freed output arrays instead of
mapping fresh pages, whose page faults the two threads take under one kernel lock.

float32: each layer's float32 output and gradients against a float64 computation of
the same inputs, as the maximum absolute error divided by the largest float64 value;
PyTorch's float32 layer on the same data in the next column, the ratio last (the
target is at most 2).

long: 100 epochs of the digits small CNN; resident set size after every epoch (peak
RSS from getrusage, and current RSS from /proc), printing the growth after epoch 2.
"""
import argparse
import os
import resource
import statistics
import sys
import threading
import time

import numpy as np

import cynn
from cynn.models import small_cnn

try:
    import torch
except ImportError:  # PyTorch is an optional extra
    torch = None


# -- threads ----------------------------------------------------------------------------
def _run_threads(n, target):
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def concurrency_mismatches(threads=8, calls=50):
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(0)
    model = small_cnn((1, 8, 8), 10, random_state=0)
    model.forward(rng.random((64, 1, 8, 8), dtype=np.float32))   # moving statistics move
    model.evaluate()
    batches = [rng.random((int(rng.integers(1, 65)), 1, 8, 8), dtype=np.float32)
               for _ in range(threads * calls)]
    expected = [model.forward(b).copy() for b in batches]
    results = [None] * len(batches)

    def work(i):
        for j in range(i, len(batches), threads):
            results[j] = model.forward(batches[j])

    _run_threads(threads, work)
    forward = sum(not np.array_equal(r, e) for r, e in zip(results, expected))

    from cynn.trainers import NeuralNetClassifier
    X, y = load_digits(return_X_y=True)
    clf = NeuralNetClassifier(image_shape=(1, 8, 8), max_epochs=2, random_state=0).fit(X / 16, y)
    chunks = [X[i::40] / 16 for i in range(40)]
    expected = [clf.predict_proba(c) for c in chunks]
    probs = [None] * len(chunks)

    def predict(i):
        for j in range(i, len(chunks), threads):
            probs[j] = clf.predict_proba(chunks[j])

    _run_threads(threads, predict)
    estimator = sum(not np.array_equal(r, e) for r, e in zip(probs, expected))
    print(f"{threads} threads x {calls} forward calls, small_cnn: {forward} of {len(batches)} "
          f"differ from serial")
    print(f"{threads} threads, NeuralNetClassifier.predict_proba: {estimator} of {len(chunks)} "
          f"differ from serial")


def thread_scaling(repeats, batch=64, calls=40):
    cynn.set_num_threads(1)
    rng = np.random.default_rng(1)
    model = small_cnn((1, 28, 28), 10, random_state=0).evaluate()
    x = rng.random((batch, 1, 28, 28), dtype=np.float32)
    model.forward(x)

    def rate(n):
        t0 = time.perf_counter()
        _run_threads(n, lambda i: [model.forward(x) for _ in range(calls)])
        return n * calls * batch / (time.perf_counter() - t0)

    one, two = [], []
    for _ in range(repeats):
        one.append(rate(1))
        two.append(rate(2))
    r1, r2 = statistics.median(one), statistics.median(two)
    print(f"small_cnn 28x28, batch {batch}, cynn.set_num_threads(1), median of {repeats}: "
          f"1 thread {r1:,.0f} img/s, 2 threads {r2:,.0f} img/s, scaling {r2 / r1:.2f}x")


# -- float32 ----------------------------------------------------------------------------
def _rel_error(approx, exact):
    exact = np.asarray(exact, np.float64)
    return float(np.max(np.abs(np.asarray(approx, np.float64) - exact)) / max(np.max(np.abs(exact)), 1e-300))


def _cynn_case(make, x, dy, extra_forward=None):
    """Output, input grad and parameter grads of one cynn layer, float32 and float64."""
    results = {}
    for dtype in (np.float32, np.float64):
        layer = make(dtype)
        xi = x.astype(dtype)
        y = layer.forward(xi)
        dx = layer.backward(xi, dy.astype(dtype))
        results[dtype] = [y, dx, *[g.copy() for g in layer.get_parameters_grad()]]
        if extra_forward is not None:
            results[dtype].append(extra_forward(layer))
    return [_rel_error(a, b) for a, b in zip(results[np.float32], results[np.float64])]


def _torch_case(make, x, dy, copy_params, extra_forward=None):
    results = {}
    for dtype in (torch.float32, torch.float64):
        layer = make().to(dtype)
        copy_params(layer, dtype)
        xt = torch.tensor(x, dtype=dtype, requires_grad=True)
        y = layer(xt)
        y.backward(torch.tensor(dy, dtype=dtype))
        results[dtype] = [y.detach().numpy(), xt.grad.numpy(),
                          *[p.grad.numpy() for p in layer.parameters()]]
        if extra_forward is not None:
            results[dtype].append(extra_forward(layer))
    return [_rel_error(a, b) for a, b in zip(results[torch.float32], results[torch.float64])]


def _weight_and_bias_case(make_cynn, make_torch, w, b, x, dy):
    """Errors of a cynn layer and its PyTorch twin, both given weight ``w``, bias ``b``."""
    def cynn_layer(dtype):
        layer = make_cynn(dtype)
        layer.W[...] = w
        layer.b[...] = b
        return layer

    def torch_params(layer, dtype):
        with torch.no_grad():
            layer.weight.copy_(torch.tensor(w, dtype=dtype))
            layer.bias.copy_(torch.tensor(b, dtype=dtype))

    return _cynn_case(cynn_layer, x, dy), _torch_case(make_torch, x, dy, torch_params)


def float32_table(draws):
    if torch is None:
        print("PyTorch is not installed: float32 table skipped")
        return
    torch.set_num_threads(cynn.get_num_threads())
    found = {}
    for seed in range(draws):
        for name, ours, theirs in _float32_rows(np.random.default_rng(seed)):
            worst = found.setdefault(name, [0.0, 0.0])
            worst[0], worst[1] = max(worst[0], ours), max(worst[1], theirs)
    print(f"max relative error of float32 against float64 (output, input grad, parameter grads,"
          f" moving mean), worst of {draws} random draws")
    print(f"{'layer':<28}{'cynn':>11}{'PyTorch':>11}{'ratio':>8}")
    worst = 0.0
    for name, (ours, theirs) in found.items():
        ratio = ours / theirs if theirs > 0 else (0.0 if ours == 0 else float("inf"))
        worst = max(worst, ratio)
        print(f"{name:<28}{ours:>11.2e}{theirs:>11.2e}{ratio:>8.2f}")
    print(f"worst ratio: {worst:.2f} (target <= 2)")


def _float32_rows(rng):
    rows = []

    def add(name, ours, theirs):
        rows.append((name, max(ours), max(theirs)))

    # Conv2d
    x = rng.standard_normal((16, 8, 16, 16))
    dy = rng.standard_normal((16, 12, 16, 16))
    w = rng.uniform(-0.3, 0.3, (12, 8, 3, 3))
    b = rng.uniform(-0.3, 0.3, 12)

    add("Conv2d 8->12 3x3", *_weight_and_bias_case(
        lambda d: cynn.Conv2d(8, 12, 3, dtype=d), lambda: torch.nn.Conv2d(8, 12, 3, padding=1),
        w, b, x, dy))
    # Linear
    x = rng.standard_normal((256, 300))
    dy = rng.standard_normal((256, 100))
    w = rng.uniform(-0.05, 0.05, (100, 300))
    b = rng.uniform(-0.05, 0.05, 100)
    add("Linear 300->100", *_weight_and_bias_case(
        lambda d: cynn.Linear(300, 100, dtype=d), lambda: torch.nn.Linear(300, 100), w, b, x, dy))
    # Batch norm: vectors and images, centred and with a large mean
    for shape, name in (((256, 64), "BN (256, 64)"), ((32, 16, 14, 14), "BN (32, 16, 14, 14)")):
        for shift in (0.0, 100.0):
            x = rng.standard_normal(shape) * 3 + shift
            dy = rng.standard_normal(shape)
            bn_torch = torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d
            add(f"{name}{' mean 100' if shift else ''}",
                _cynn_case(lambda d: cynn.BatchNormalization(alpha=0.9, eps=1e-3, dtype=d), x, dy,
                           extra_forward=lambda layer: layer.moving_mean.copy()),
                _torch_case(lambda bt=bn_torch, c=shape[1]: bt(c, eps=1e-3, momentum=0.1,
                                                               affine=False),
                            x, dy, lambda layer, dtype: None,
                            extra_forward=lambda layer: layer.running_mean.numpy().copy()))
    # Pooling
    x = rng.standard_normal((32, 16, 28, 28))
    dy = rng.standard_normal((32, 16, 14, 14))
    add("MaxPool2d 2", _cynn_case(lambda d: cynn.MaxPool2d(2), x, dy),
        _torch_case(lambda: torch.nn.MaxPool2d(2), x, dy, lambda layer, dtype: None))
    add("AvgPool2d 2", _cynn_case(lambda d: cynn.AvgPool2d(2), x, dy),
        _torch_case(lambda: torch.nn.AvgPool2d(2), x, dy, lambda layer, dtype: None))
    # Softmax family
    x = rng.standard_normal((256, 10)) * 5
    dy = rng.standard_normal((256, 10))
    add("SoftMax", _cynn_case(lambda d: cynn.SoftMax(), x, dy),
        _torch_case(lambda: torch.nn.Softmax(dim=1), x, dy, lambda layer, dtype: None))
    add("LogSoftMax", _cynn_case(lambda d: cynn.LogSoftMax(), x, dy),
        _torch_case(lambda: torch.nn.LogSoftmax(dim=1), x, dy, lambda layer, dtype: None))
    # Criterions
    labels = rng.integers(0, 10, 256)
    targets = rng.standard_normal((256, 10))
    for name, ours, theirs, target in (
            ("CrossEntropyCriterion", cynn.CrossEntropyCriterion, torch.nn.CrossEntropyLoss, labels),
            ("MSECriterion", cynn.MSECriterion, torch.nn.MSELoss, targets)):
        errs_ours, errs_theirs = {}, {}
        for dtype, tdtype in ((np.float32, torch.float32), (np.float64, torch.float64)):
            crit = ours()
            xi = x.astype(dtype)
            t = target if target.dtype.kind == "i" else target.astype(dtype)
            errs_ours[dtype] = [crit.forward(xi, t), crit.backward(xi, t)]
            xt = torch.tensor(x, dtype=tdtype, requires_grad=True)
            tt = torch.tensor(target) if target.dtype.kind == "i" else torch.tensor(target, dtype=tdtype)
            loss = theirs()(xt, tt)
            loss.backward()
            errs_theirs[dtype] = [loss.item(), xt.grad.numpy()]
        add(name, [_rel_error(a, b) for a, b in zip(errs_ours[np.float32], errs_ours[np.float64])],
            [_rel_error(a, b) for a, b in zip(errs_theirs[np.float32], errs_theirs[np.float64])])

    return rows


# -- long runs --------------------------------------------------------------------------
def _rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def long_run(epochs):
    from cynn.datasets import load_digits
    from cynn.trainers import Callback, Trainer

    data = load_digits(random_state=0)
    model = small_cnn(data.input_shape, 10, random_state=0)
    rss = []

    class Memory(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            rss.append(_rss_mb())

    trainer = Trainer(model, cynn.CrossEntropyCriterion(), cynn.Adam(model), callbacks=[Memory()],
                      verbose=0, random_state=0)
    trainer.fit(data.train, data.val, epochs=epochs)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{epochs} epochs on digits: RSS after epoch 2 {rss[1]:.1f} MB, after epoch {epochs} "
          f"{rss[-1]:.1f} MB, growth {rss[-1] - rss[1]:+.2f} MB (target < 5 MB); peak {peak:.1f} MB")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("threads", "float32", "long", "all"))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--draws", type=int, default=5, help="random draws per float32 case")
    args = parser.parse_args(argv)
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, cynn threads "
          f"{cynn.get_num_threads()}, OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}")
    if args.what in ("threads", "all"):
        concurrency_mismatches()
        for batch in (16, 64, 256):
            thread_scaling(args.repeats, batch=batch)
    if args.what in ("float32", "all"):
        float32_table(args.draws)
    if args.what in ("long", "all"):
        long_run(args.epochs)


if __name__ == "__main__":
    main()
