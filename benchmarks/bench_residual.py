"""ResNet-20 against PyTorch on 32x32 colour images, and plain versus residual networks.

    python benchmarks/bench_residual.py step   [--batch 128] [--repeats 7] [--threads 2]
    python benchmarks/bench_residual.py epoch  [--n-samples 50000] [--epochs 2] [--cifar]
    python benchmarks/bench_residual.py degradation [--n-samples 10000] [--epochs 10]

``step`` times one training step (forward, loss, backward, SGD) of ResNet-20 on one
batch, cynn and PyTorch alternating in one process, and reports medians and their ratio;
``--model`` picks another network (``resnet8``, ``plain20``...).

``epoch`` trains ResNet-20 on ``make_shapes(n, 32, channels=3)`` (or on CIFAR-10 with
``--cifar``, when it is in scikit-learn's cache) with each framework in its own child
process, so that each one's peak RSS can be read.  The two children take turns, one
epoch (and its test evaluation) at a time, in the order cynn, torch, torch, cynn,
cynn, ... so that a shared host's load drifting over the run falls on both alike
(the children ran one after the other before: 0.81 and 1.04 in two runs).  Both get the same split, the same
batches in the same order, the same initial weights (cynn's, copied into the PyTorch
network), SGD with momentum 0.9, lr 0.1 annealed to 0 along a half cosine, weight decay
5e-4, batch 128, float32, the same thread count.  Seconds per epoch is the median over
the epochs; the test accuracy is taken after the last epoch.

``degradation`` trains a 20-layer plain CNN and ResNet-20 (the same layers with and
without shortcuts, cynn only) on the same data and prints the training loss and the
test accuracy after every epoch.
"""
import argparse
import contextlib
import json
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

import cynn
from cynn.datasets import iterate_minibatches, make_shapes
from cynn.models import build

try:
    import torch
except ImportError:
    torch = None


def torch_twin(model):
    """A PyTorch network with the same layers as a cynn resnet/plain network, starting
    from the same weights (parameters are listed in the same order by both)."""
    nn = torch.nn

    class Residual(nn.Module):
        def __init__(self, body, shortcut):
            super().__init__()
            self.body, self.shortcut = body, shortcut or nn.Identity()

        def forward(self, x):
            return self.body(x) + self.shortcut(x)

    def convert(m):
        if isinstance(m, cynn.Sequential):
            # Conv + BN + scaling is PyTorch's Conv + affine BatchNorm2d
            return nn.Sequential(*(convert(layer) for layer in m
                                   if not isinstance(layer, cynn.ChannelwiseScaling)))
        if isinstance(m, cynn.Residual):
            return Residual(convert(m.body), m.shortcut and convert(m.shortcut))
        if isinstance(m, cynn.Conv2d):
            return nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                             groups=m.groups, bias=m.b is not None)
        if isinstance(m, cynn.BatchNormalization):
            return nn.BatchNorm2d(m.n_features, eps=m.eps, momentum=1 - m.alpha)
        if isinstance(m, cynn.ReLU):
            return nn.ReLU(inplace=True)
        if isinstance(m, cynn.GlobalAvgPool2d):
            return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        if isinstance(m, cynn.Linear):
            return nn.Linear(m.n_in, m.n_out)
        if isinstance(m, cynn.MaxPool2d):
            return nn.MaxPool2d(m.kernel_size, m.stride, m.padding)
        if isinstance(m, cynn.Flatten):
            return nn.Flatten()
        if isinstance(m, cynn.Dropout):
            return nn.Dropout(m.p)
        raise TypeError(f"no PyTorch twin for {m!r}")

    twin = convert(model)
    params = list(twin.parameters())
    assert len(params) == len(model.get_parameters())
    with torch.no_grad():
        for p, q in zip(params, model.get_parameters()):
            p.copy_(torch.from_numpy(np.ascontiguousarray(q)).reshape(p.shape))
    return twin


def cynn_step(model, criterion, opt):
    def step(x, y):
        opt.zero_grad()
        out = model.forward(x)
        loss = criterion.forward(out, y)
        model.backward(x, criterion.backward(out, y))
        opt.step()
        return loss
    return step


def torch_step(model, opt):
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        opt.step()
        return loss.detach().item()
    return step


def step_main(args):
    cynn.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x = rng.random((args.batch, 3, 32, 32), dtype=np.float32)
    y = rng.integers(0, 10, args.batch)
    model = build(args.model, (3, 32, 32), 10, random_state=0)
    steps = {"cynn": cynn_step(model, cynn.CrossEntropyCriterion(),
                               cynn.SGD(model, lr=0.01, momentum=0.9))}
    if torch is not None:
        torch.set_num_threads(args.threads)
        twin = torch_twin(model)
        steps["torch"] = torch_step(twin, torch.optim.SGD(twin.parameters(), lr=0.01,
                                                          momentum=0.9))
    times = {name: [] for name in steps}
    for name, step in steps.items():
        step(x, y)  # warm-up
    for _ in range(args.repeats):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step(x, y)
            times[name].append(time.perf_counter() - t0)
    print(f"{args.model}, one training step on a batch of {args.batch} 3x32x32 float32 images, "
          f"{args.threads} thread(s), median of {args.repeats} (frameworks alternating)")
    med = {name: statistics.median(t) for name, t in times.items()}
    for name, t in med.items():
        print(f"  {name:6} {t * 1000:9.1f} ms/step  {args.batch / t:8.0f} img/s")
    if "torch" in med:
        print(f"  cynn/torch {med['cynn'] / med['torch']:.2f}")


def load_data(args):
    from sklearn.model_selection import train_test_split

    if args.cifar:
        from cynn.datasets import fetch_cifar10

        data = fetch_cifar10(val_size=0.0)
        return data.X_train, data.y_train, data.X_test, data.y_test
    X, y = make_shapes(args.n_samples, 32, channels=3, random_state=args.seed)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=1 / 6, random_state=args.seed,
                                              stratify=y)
    return X_tr, y_tr, X_te, y_te


def train(framework, model_name, X_tr, y_tr, X_te, y_te, epochs, seed, threads, batch=128,
          turn=None):
    """Train one framework; per-epoch seconds, train loss and test accuracy.  ``turn``,
    when given, is a context manager factory entered around each epoch and its test
    evaluation (the epoch benchmark's children wait there for their turn)."""
    cynn.set_num_threads(threads)
    n_classes = int(max(y_tr.max(), y_te.max())) + 1
    model = build(model_name, X_tr.shape[1:], n_classes, random_state=seed)
    n_steps = epochs * -(-len(X_tr) // batch)
    if framework == "cynn":
        opt = cynn.SGD(model, lr=0.1, momentum=0.9, weight_decay=5e-4)
        sched = cynn.CosineAnnealingLR(opt, T_max=n_steps)
        step = cynn_step(model, cynn.CrossEntropyCriterion(), opt)
        modes = (model.train, model.evaluate)

        def predict(xb):
            with cynn.inference_mode():
                return model.forward(xb).argmax(axis=1)
    else:
        torch.set_num_threads(threads)
        net = torch_twin(model)
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=n_steps)
        step = torch_step(net, opt)
        modes = (net.train, net.eval)

        def predict(xb):
            with torch.inference_mode():
                return net(torch.from_numpy(xb)).argmax(dim=1).numpy()
    rng = np.random.default_rng(seed)
    rows = []
    for epoch in range(epochs):
        with turn() if turn is not None else contextlib.nullcontext():
            modes[0]()
            t0 = time.perf_counter()
            losses = []
            for xb, yb in iterate_minibatches(X_tr, y_tr, batch, random_state=rng):
                losses.append(step(xb, yb))
                sched.step()
            seconds = time.perf_counter() - t0
            modes[1]()
            pred = np.concatenate([predict(xb) for xb in
                                   iterate_minibatches(X_te, None, 500, shuffle=False)])
        rows.append({"epoch": epoch + 1, "seconds": seconds, "loss": float(np.mean(losses)),
                     "acc": float(np.mean(pred == y_te))})
    return rows


@contextlib.contextmanager
def _parent_turn():
    """Wait for the parent's GO on stdin, and say DONE on stdout after the block."""
    print("READY", flush=True)
    if sys.stdin.readline().strip() != "GO":
        raise SystemExit("epoch child: the parent went away")
    yield
    print("DONE", flush=True)


def epoch_child(args):
    X_tr, y_tr, X_te, y_te = load_data(args)
    rows = train(args.child, args.model, X_tr, y_tr, X_te, y_te, args.epochs, args.seed,
                 args.threads, turn=_parent_turn)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps({"rows": rows, "peak_rss_mib": rss}))


def epoch_main(args):
    what = "CIFAR-10" if args.cifar else f"make_shapes({args.n_samples}, 32, channels=3)"
    print(f"{args.model} on {what}, SGD momentum 0.9 lr 0.1 cosine, weight decay 5e-4, batch "
          f"128, float32, {args.threads} thread(s), {args.epochs} epochs, same initial weights; "
          "each framework in its own process, epochs taking turns")
    names = ("cynn", "torch") if torch else ("cynn",)
    children = {}
    for name in names:
        cmd = [sys.executable, __file__, "epoch", "--child", name, "--model", args.model,
               "--n-samples", str(args.n_samples), "--epochs", str(args.epochs),
               "--threads", str(args.threads), "--seed", str(args.seed)]
        if args.cifar:
            cmd.append("--cifar")
        children[name] = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          text=True)

    def until(child, word):
        for line in child.stdout:
            if line.startswith(word):
                return line
        raise RuntimeError(f"epoch child exited with {child.wait()} before {word}")

    try:
        for epoch in range(args.epochs):
            for name in (names if epoch % 2 == 0 else names[::-1]):
                until(children[name], "READY")
                children[name].stdin.write("GO\n")
                children[name].stdin.flush()
                until(children[name], "DONE")
        results = {name: json.loads(until(child, "RESULT")[7:])
                   for name, child in children.items()}
    finally:
        for child in children.values():
            child.stdin.close()
            child.wait()
    for name in names:
        for r in results[name]["rows"]:
            print(f"  {name:6} epoch {r['epoch']:2}  {r['seconds']:8.1f} s  train loss "
                  f"{r['loss']:.4f}  test acc {r['acc']:.4f}", flush=True)
    print(f"{'':8}{'s/epoch':>9}{'test acc':>10}{'peak RSS MiB':>14}")
    med = {}
    for name, res in results.items():
        med[name] = statistics.median(r["seconds"] for r in res["rows"])
        print(f"  {name:6}{med[name]:9.1f}{res['rows'][-1]['acc']:10.4f}"
              f"{res['peak_rss_mib']:14.0f}")
    if "torch" in med:
        print(f"  cynn/torch seconds per epoch: {med['cynn'] / med['torch']:.2f}; test accuracy "
              f"cynn - torch: {100 * (results['cynn']['rows'][-1]['acc'] - results['torch']['rows'][-1]['acc']):+.2f} points")


def degradation_main(args):
    X_tr, y_tr, X_te, y_te = load_data(args)
    depth = "".join(ch for ch in args.model if ch.isdigit()) or "20"
    print(f"plain{depth} vs resnet{depth} (cynn), same data and seeds, {args.epochs} epochs, "
          f"{len(X_tr)} training images")
    curves = {}
    for name in (f"plain{depth}", f"resnet{depth}"):
        curves[name] = train("cynn", name, X_tr, y_tr, X_te, y_te, args.epochs, args.seed,
                             args.threads)
    print(f"{'epoch':>5}" + "".join(f"{n + ' loss':>16}{n + ' acc':>14}" for n in curves))
    for i in range(args.epochs):
        print(f"{i + 1:5}" + "".join(f"{c[i]['loss']:16.4f}{c[i]['acc']:14.4f}"
                                     for c in curves.values()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["step", "epoch", "degradation"])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-samples", type=int, default=None,
                        help="default 50000 for epoch, 10000 for degradation")
    parser.add_argument("--epochs", type=int, default=None,
                        help="default 2 for epoch, 10 for degradation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cifar", action="store_true")
    parser.add_argument("--child", choices=["cynn", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.n_samples is None:
        args.n_samples = 10000 if args.what == "degradation" else 50000
    if args.epochs is None:
        args.epochs = 10 if args.what == "degradation" else 2
    if args.child:
        return epoch_child(args)
    {"step": step_main, "epoch": epoch_main, "degradation": degradation_main}[args.what](args)


if __name__ == "__main__":
    main()
