"""Train the default small CNN on digits with cynn and with PyTorch, side by side.

    python benchmarks/bench_training.py [--epochs 20] [--seeds 0 1 2] [--threads 2]

Both frameworks get the same data split, the same batches in the same order, the same
architecture (Conv-BN-ReLU x2, MaxPool, Linear-ReLU-Dropout, Linear), Adam at lr 1e-3,
float32, batch 64, the same thread count, and use their own initializations.  Seconds
per epoch are the median over the epochs after the first (warm-up); the test accuracy
is taken after the last epoch (no model selection) and summarized as the median
over the seeds.  PyTorch (torch==2.13.0) is optional: without it only cynn runs.
"""
import argparse
import statistics
import time

import numpy as np

import cynn
from cynn.datasets import iterate_minibatches, load_digits
from cynn.trainers.models import small_cnn

try:
    import torch
except ImportError:
    torch = None


def run_cynn(data, epochs, seed):
    model = small_cnn(data.input_shape, data.n_classes, random_state=seed)
    criterion = cynn.CrossEntropyCriterion()
    opt = cynn.Adam(model, lr=1e-3)
    rng = np.random.default_rng(seed)
    times = []
    for _ in range(epochs):
        model.train()
        t0 = time.perf_counter()
        for xb, yb in iterate_minibatches(data.X_train, data.y_train, 64, random_state=rng):
            opt.zero_grad()
            out = model.forward(xb)
            criterion.forward(out, yb)
            model.backward(xb, criterion.backward(out, yb))
            opt.step()
        times.append(time.perf_counter() - t0)
    model.evaluate()
    acc = float(np.mean(model.forward(data.X_test).argmax(axis=1) == data.y_test))
    return statistics.median(times[1:]), acc


def run_torch(data, epochs, seed):
    torch.manual_seed(seed)
    nn = torch.nn
    c, h, w = data.input_shape
    model = nn.Sequential(
        nn.Conv2d(c, 16, 3, padding=1), nn.BatchNorm2d(16, eps=1e-3), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32, eps=1e-3), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * (h // 2) * (w // 2), 64), nn.ReLU(),
        nn.Dropout(0.25), nn.Linear(64, data.n_classes))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(seed)
    times = []
    for _ in range(epochs):
        model.train()
        t0 = time.perf_counter()
        for xb, yb in iterate_minibatches(data.X_train, data.y_train, 64, random_state=rng):
            opt.zero_grad()
            loss = loss_fn(model(torch.from_numpy(xb)), torch.from_numpy(yb))
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(data.X_test)).argmax(dim=1).numpy()
    return statistics.median(times[1:]), float(np.mean(pred == data.y_test))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    cynn.set_num_threads(args.threads)
    if torch is not None:
        torch.set_num_threads(args.threads)
    print(f"digits, small CNN, Adam lr=1e-3, batch 64, float32, {args.threads} thread(s), "
          f"{args.epochs} epochs; PyTorch: {torch.__version__ if torch else 'not installed'}")
    print(f"{'seed':>4} {'cynn s/epoch':>13} {'cynn acc':>9} {'torch s/epoch':>14} {'torch acc':>10} {'ratio':>7}")
    rows = []
    for seed in args.seeds:
        data = load_digits(random_state=seed)
        c_time, c_acc = run_cynn(data, args.epochs, seed)
        t_time, t_acc = run_torch(data, args.epochs, seed) if torch else (float("nan"), float("nan"))
        rows.append((c_time, c_acc, t_time, t_acc))
        print(f"{seed:>4} {c_time:13.4f} {c_acc:9.4f} {t_time:14.4f} {t_acc:10.4f} {c_time / t_time:7.2f}")
    med = [statistics.median(col) for col in zip(*rows)]
    print(f"{'med':>4} {med[0]:13.4f} {med[1]:9.4f} {med[2]:14.4f} {med[3]:10.4f} {med[0] / med[2]:7.2f}")


if __name__ == "__main__":
    main()
