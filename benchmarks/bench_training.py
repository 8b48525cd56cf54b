"""Train the default small CNN on digits with cynn and with PyTorch, side by side.

    python benchmarks/bench_training.py [--epochs 20] [--seeds 0 1 2] [--threads 2]
    python benchmarks/bench_training.py --shapes [--n-samples 60000] [--epochs 3] [--seeds 0 1 2]

``--shapes`` runs the MNIST-size comparison instead: ``make_shapes(60000, 28)`` with an
MNIST-style CNN (Conv 1->32, BN, ReLU, MaxPool, Conv 32->64, BN, ReLU, MaxPool,
Linear 3136->128, ReLU, Dropout, Linear), each framework in its own child process so
that the peak RSS of its training run can be read side by side, plus a logistic
regression on the same pixels.  Both anneal the rate along a half cosine over all the
steps, so that the accuracy after the last step is not the noise of a constant-rate
Adam run (with a constant rate it moved by up to a point between seeds).  The ``torch`` row starts from cynn's initial weights
(so the accuracies compare the training, not two initialization schemes);
``torch-own-init`` is PyTorch with its own initialization, for reference.

Both frameworks get the same data split, the same batches in the same order, the same
architecture (Conv-BN-ReLU x2, MaxPool, Linear-ReLU-Dropout, Linear), Adam at lr 1e-3,
float32, batch 64, the same thread count, and use their own initializations.  Seconds
per epoch are the median over the epochs after the first (warm-up); on digits the two
frameworks take turns, one epoch at a time (cynn, torch, torch, cynn, ...), so that a
shared host's load drifting over the run falls on both alike.  The test accuracy
is taken after the last epoch (no model selection) and summarized as the median
over the seeds.  PyTorch (torch==2.13.0) is optional: without it only cynn runs.
"""
import argparse
import statistics
import time

import numpy as np

import cynn
from cynn.datasets import iterate_minibatches, load_digits
from cynn.models import small_cnn

try:
    import torch
except ImportError:
    torch = None


def _n_batches(data, batch_size=64):
    return -(-len(data.X_train) // batch_size)


def train_cynn(model, data, epochs, seed, cosine=False):
    """Train with Adam, one epoch per ``next()``: a generator of the seconds of each
    epoch, then of the test predictions (`collect` gathers them).

    ``cosine``: anneal the rate to 0 along a half cosine over all the steps.
    """
    criterion = cynn.CrossEntropyCriterion()
    opt = cynn.Adam(model, lr=1e-3)
    sched = cynn.CosineAnnealingLR(opt, T_max=epochs * _n_batches(data)) if cosine else None
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        model.train()
        t0 = time.perf_counter()
        for xb, yb in iterate_minibatches(data.X_train, data.y_train, 64, random_state=rng):
            opt.zero_grad()
            out = model.forward(xb)
            criterion.forward(out, yb)
            model.backward(xb, criterion.backward(out, yb))
            opt.step()
            if sched is not None:
                sched.step()
        yield time.perf_counter() - t0
    model.evaluate()
    pred = np.concatenate([model.forward(xb).argmax(axis=1)
                           for xb in iterate_minibatches(data.X_test, None, 512, shuffle=False)])
    yield pred


def train_torch(model, data, epochs, seed, cosine=False):
    """The same loop in PyTorch, on the same batches in the same order (a generator as
    `train_cynn`)."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * _n_batches(data))
             if cosine else None)
    loss_fn = torch.nn.CrossEntropyLoss()
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        model.train()
        t0 = time.perf_counter()
        for xb, yb in iterate_minibatches(data.X_train, data.y_train, 64, random_state=rng):
            opt.zero_grad()
            loss_fn(model(torch.from_numpy(xb)), torch.from_numpy(yb)).backward()
            opt.step()
            if sched is not None:
                sched.step()
        yield time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(data.X_test)).argmax(dim=1).numpy()
    yield pred


def collect(run, epochs):
    """All of a training generator: (seconds of each epoch, test predictions)."""
    times = [next(run) for _ in range(epochs)]
    return times, next(run)


def digits_cynn(data, epochs, seed):
    model = small_cnn(data.input_shape, data.n_classes, random_state=seed)
    return train_cynn(model, data, epochs, seed)


def digits_torch(data, epochs, seed):
    torch.manual_seed(seed)
    nn = torch.nn
    c, h, w = data.input_shape
    model = nn.Sequential(
        nn.Conv2d(c, 16, 3, padding=1), nn.BatchNorm2d(16, eps=1e-3), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32, eps=1e-3), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * (h // 2) * (w // 2), 64), nn.ReLU(),
        nn.Dropout(0.25), nn.Linear(64, data.n_classes))
    return train_torch(model, data, epochs, seed)


def side_by_side(runs, epochs):
    """Run the training generators an epoch at a time, taking turns in the order
    A B B A A B ... so that a shared host's load drifting over the run falls on all
    alike; per run: (median seconds per epoch after the first, test predictions)."""
    times = {name: [] for name in runs}
    names = list(runs)
    for epoch in range(epochs):
        for name in (names if epoch % 2 == 0 else names[::-1]):
            times[name].append(next(runs[name]))
    return {name: (statistics.median(times[name][1:]), next(run))
            for name, run in runs.items()}


def mnist_style_cynn(seed):
    rng = np.random.default_rng(seed)
    bn = dict(alpha=0.9)
    model = cynn.Sequential(
        cynn.Conv2d(1, 32, 3, init="fan_in", random_state=rng), cynn.BatchNormalization(n_features=32, **bn),
        cynn.ChannelwiseScaling(32, random_state=rng), cynn.ReLU(), cynn.MaxPool2d(2),
        cynn.Conv2d(32, 64, 3, init="fan_in", random_state=rng), cynn.BatchNormalization(n_features=64, **bn),
        cynn.ChannelwiseScaling(64, random_state=rng), cynn.ReLU(), cynn.MaxPool2d(2),
        cynn.Flatten(), cynn.Linear(3136, 128, random_state=rng), cynn.ReLU(),
        cynn.Dropout(0.25, random_state=rng), cynn.Linear(128, 6, random_state=rng))
    for layer in model:
        if isinstance(layer, cynn.ChannelwiseScaling):
            layer.gamma[...] = 1
            layer.beta[...] = 0
    return model


def copy_initial_weights(cynn_model, torch_model):
    """Start the PyTorch model from the cynn model's weights.

    The cynn model draws its convolutions from PyTorch's distribution (``init='fan_in'``;
    cynn's default is the course's three times wider one, and ahead of a BatchNorm that
    scale changes the effective step size).  From the same weights, the same batches and
    the same optimizer, the accuracies compare the training itself.
    """
    ours = [layer for layer in cynn_model
            if isinstance(layer, (cynn.Conv2d, cynn.Linear, cynn.ChannelwiseScaling))]
    theirs = [layer for layer in torch_model
              if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.BatchNorm2d))]
    assert len(ours) == len(theirs)
    with torch.no_grad():
        for a, b in zip(ours, theirs):
            if isinstance(a, cynn.ChannelwiseScaling):
                b.weight.copy_(torch.from_numpy(a.gamma.reshape(-1)))
                b.bias.copy_(torch.from_numpy(a.beta.reshape(-1)))
            else:
                b.weight.copy_(torch.from_numpy(a.W).reshape(b.weight.shape))
                b.bias.copy_(torch.from_numpy(a.b))


def shapes_child(framework, n_samples, epochs, seed, threads):
    """One framework's MNIST-size run; prints one line of key=value results."""
    import resource

    from cynn.datasets import make_shapes
    from sklearn.model_selection import train_test_split

    X, y = make_shapes(n_samples, 28, random_state=seed)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=1 / 6, random_state=seed,
                                                        stratify=y)
    data = type("D", (), {"X_train": X_train, "y_train": y_train, "X_test": X_test,
                          "y_test": y_test, "input_shape": (1, 28, 28), "n_classes": 6})
    cynn.set_num_threads(threads)
    if framework == "cynn":
        times, pred = collect(train_cynn(mnist_style_cynn(seed), data, epochs, seed,
                                         cosine=True), epochs)
    else:
        torch.set_num_threads(threads)
        torch.manual_seed(seed)
        nn = torch.nn
        model = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32, eps=1e-3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64, eps=1e-3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Dropout(0.25), nn.Linear(128, 6))
        if framework == "torch":
            copy_initial_weights(mnist_style_cynn(seed), model)
        times, pred = collect(train_torch(model, data, epochs, seed, cosine=True), epochs)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"RESULT s_per_epoch={statistics.median(times):.3f} acc={np.mean(pred == y_test):.4f} "
          f"peak_rss_mib={rss:.0f}")


def shapes_main(args):
    import subprocess
    import sys

    from cynn.datasets import make_shapes
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    print(f"make_shapes({args.n_samples}, 28), MNIST-style CNN, Adam lr=1e-3 annealed to 0 along "
          f"a half cosine over all steps, batch 64, float32, "
          f"{args.threads} thread(s), {args.epochs} epochs; each framework in its own process")
    frameworks = ("cynn", "torch", "torch-own-init") if torch else ("cynn",)
    rows = {name: [] for name in frameworks}
    print(f"{'':16}{'seed':>5}{'s/epoch':>9}{'test acc':>10}{'peak RSS MiB':>14}")
    for seed in args.seeds:
        for name in frameworks:
            out = subprocess.run([sys.executable, __file__, "--child", name, "--n-samples",
                                  str(args.n_samples), "--epochs", str(args.epochs), "--threads",
                                  str(args.threads), "--seeds", str(seed)],
                                 capture_output=True, text=True, check=True).stdout
            line = next(x for x in out.splitlines() if x.startswith("RESULT"))
            r = {k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
            rows[name].append(r)
            print(f"{name:16}{seed:5}{r['s_per_epoch']:9.2f}{r['acc']:10.4f}"
                  f"{r['peak_rss_mib']:14.0f}", flush=True)
    med = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in rows.items()}
    for name, r in med.items():
        print(f"{name:16}{'med':>5}{r['s_per_epoch']:9.2f}{r['acc']:10.4f}{r['peak_rss_mib']:14.0f}")
    if torch:
        fastest = min(med["torch"]["s_per_epoch"], med["torch-own-init"]["s_per_epoch"])
        print(f"cynn/torch seconds per epoch (medians, against the faster torch row): "
              f"{med['cynn']['s_per_epoch'] / fastest:.2f}")
        diffs = [100 * (a["acc"] - b["acc"]) for a, b in zip(rows["cynn"], rows["torch"])]
        print(f"test accuracy cynn - torch from the same initial weights, per seed: "
              + ", ".join(f"{d:+.2f}" for d in diffs) + " points")
    X, y = make_shapes(args.n_samples, 28, random_state=0)
    X_tr, X_te, y_tr, y_te = train_test_split(X.reshape(len(X), -1), y, test_size=1 / 6,
                                              random_state=0, stratify=y)
    logreg = LogisticRegression(max_iter=300).fit(X_tr[:20000], y_tr[:20000])
    print(f"logistic regression on the same pixels (20,000 training images): "
          f"test accuracy {logreg.score(X_te, y_te):.4f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="default: 20 on digits, 3 with --shapes")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shapes", action="store_true", help="the MNIST-size comparison")
    parser.add_argument("--n-samples", type=int, default=60000)
    parser.add_argument("--child", choices=["cynn", "torch", "torch-own-init"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.epochs is None:
        args.epochs = 3 if (args.shapes or args.child) else 20
    if args.child:
        return shapes_child(args.child, args.n_samples, args.epochs, args.seeds[0], args.threads)
    if args.shapes:
        return shapes_main(args)
    cynn.set_num_threads(args.threads)
    if torch is not None:
        torch.set_num_threads(args.threads)
    print(f"digits, small CNN, Adam lr=1e-3, batch 64, float32, {args.threads} thread(s), "
          f"{args.epochs} epochs; PyTorch: {torch.__version__ if torch else 'not installed'}")
    print(f"{'seed':>4} {'cynn s/epoch':>13} {'cynn acc':>9} {'torch s/epoch':>14} {'torch acc':>10} {'ratio':>7}")
    rows = []
    for seed in args.seeds:
        data = load_digits(random_state=seed)
        runs = {"cynn": digits_cynn(data, args.epochs, seed)}
        if torch is not None:
            runs["torch"] = digits_torch(data, args.epochs, seed)
        res = {name: (t, float(np.mean(pred == data.y_test)))
               for name, (t, pred) in side_by_side(runs, args.epochs).items()}
        c_time, c_acc = res["cynn"]
        t_time, t_acc = res.get("torch", (float("nan"), float("nan")))
        rows.append((c_time, c_acc, t_time, t_acc))
        print(f"{seed:>4} {c_time:13.4f} {c_acc:9.4f} {t_time:14.4f} {t_acc:10.4f} {c_time / t_time:7.2f}")
    med = [statistics.median(col) for col in zip(*rows)]
    print(f"{'med':>4} {med[0]:13.4f} {med[1]:9.4f} {med[2]:14.4f} {med[3]:10.4f} {med[0] / med[2]:7.2f}")


if __name__ == "__main__":
    main()
