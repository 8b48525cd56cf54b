"""How far onnxruntime's outputs are from cynn's, for every exported layer and model.

    python benchmarks/onnx_parity.py [--batch 16] [--seed 0]

Each layer alone (with non-trivial BatchNormalization statistics), then small_cnn, the
MLP and ResNet-20 after two SGD steps, is exported with `cynn.export_onnx` and run by
onnxruntime (CPUExecutionProvider) on one float32 batch of random inputs; the table
gives the largest relative difference (over entries larger than 1e-3 times the output
scale, where a relative figure means something), the largest absolute difference, the
output scale (largest magnitude) and the absolute difference over that scale (what
tests/test_onnx.py bounds by 1e-6, beside its 1e-5 relative bound).  Not a speed
benchmark: nothing is timed.  Needs the onnx extra: ``pip install -e ".[onnx]"``.
"""
import argparse
import os
import tempfile

import numpy as np
import onnxruntime as ort

import cynn
from cynn import (ELU, AvgPool2d, BatchNormalization, ChannelwiseScaling, Concat, Conv2d,
                  Dropout, Flatten, GlobalAvgPool2d, Identity, LeakyReLU, Linear,
                  LogSoftMax, MaxPool2d, ReLU, Residual, Sequential, Sigmoid, SoftMax,
                  SoftPlus, Tanh)


def _bn(channels, rng):
    bn = BatchNormalization(alpha=0.9, n_features=channels)
    bn.moving_mean[...] = rng.standard_normal(channels)
    bn.moving_variance[...] = rng.uniform(0.05, 3.0, channels)
    return bn


def layer_cases(rng):
    """(name, module, one sample's input shape, input scale)."""
    return [
        ("Conv2d 3x3", Conv2d(3, 8, 3, random_state=rng), (3, 16, 16), 1),
        ("Conv2d stride 2, pad (1, 2)", Conv2d(3, 6, (3, 5), stride=2, padding=(1, 2),
                                               random_state=rng), (3, 16, 15), 1),
        ("Conv2d groups=2, no bias", Conv2d(4, 6, 3, groups=2, bias=False,
                                            random_state=rng), (4, 12, 12), 1),
        ("Conv2d depthwise x2", Conv2d(4, 8, 3, groups=4, random_state=rng), (4, 12, 12), 1),
        ("BatchNormalization (N,C,H,W)", _bn(5, rng), (5, 8, 8), 2),
        ("BatchNormalization (N,C)", _bn(7, rng), (7,), 2),
        ("BatchNormalization untrained", BatchNormalization(), (3, 4, 4), 1),
        ("ChannelwiseScaling (N,C,H,W)", ChannelwiseScaling(5, random_state=rng), (5, 8, 8), 1),
        ("ChannelwiseScaling (N,C)", ChannelwiseScaling(6, random_state=rng), (6,), 1),
        ("MaxPool2d 2", MaxPool2d(2), (3, 16, 15), 1),
        ("MaxPool2d 3, stride 2, pad 1", MaxPool2d(3, stride=2, padding=1), (3, 15, 16), 1),
        ("AvgPool2d 3, stride 2", AvgPool2d(3, stride=2), (3, 15, 16), 1),
        ("GlobalAvgPool2d", GlobalAvgPool2d(), (5, 8, 8), 1),
        ("Linear", Linear(64, 10, random_state=rng), (64,), 1),
        ("Linear no bias", Linear(64, 10, bias=False, random_state=rng), (64,), 1),
        ("ReLU", ReLU(), (3, 8, 8), 1),
        ("LeakyReLU(0.2)", LeakyReLU(0.2), (3, 8, 8), 1),
        ("ELU(0.7)", ELU(0.7), (3, 8, 8), 3),
        ("SoftPlus", SoftPlus(), (3, 8, 8), 10),
        ("Sigmoid", Sigmoid(), (3, 8, 8), 10),
        ("Tanh", Tanh(), (64,), 3),
        ("SoftMax", SoftMax(), (10,), 5),
        ("LogSoftMax", LogSoftMax(), (10,), 5),
        ("Dropout", Dropout(0.5, random_state=rng), (3, 8, 8), 1),
        ("Flatten", Flatten(), (3, 8, 8), 1),
        ("Identity", Identity(), (3, 8, 8), 1),
        ("Residual (identity shortcut)", Residual(Sequential(Conv2d(3, 3, 3, random_state=rng),
                                                             ReLU())), (3, 8, 8), 1),
        ("Concat", Concat(Conv2d(3, 4, 3, random_state=rng), Identity()), (3, 8, 8), 1),
    ]


def _trained(model, input_shape, rng, steps=2, batch=8):
    optimizer = cynn.SGD(model, lr=0.05, momentum=0.9)
    criterion = cynn.CrossEntropyCriterion()
    model.train()
    for _ in range(steps):
        x = (1.0 + rng.standard_normal((batch, *input_shape))).astype(np.float32)
        y = rng.integers(0, 10, batch)
        model.zero_grad()
        out = model.forward(x)
        criterion.forward(out, y)
        model.backward(x, criterion.backward(out, y))
        optimizer.step()
    return model.evaluate()


def model_cases(rng):
    return [
        ("small_cnn (1, 28, 28)", _trained(cynn.models.build("small_cnn", (1, 28, 28), 10,
                                                             random_state=1), (1, 28, 28), rng),
         (1, 28, 28), 1),
        ("mlp (64,)", _trained(cynn.models.build("mlp", (64,), 10, random_state=1), (64,), rng),
         (64,), 1),
        ("resnet20 (3, 32, 32)", _trained(cynn.models.resnet(20, random_state=1), (3, 32, 32),
                                          rng), (3, 32, 32), 1),
    ]


def differences(module, input_shape, scale, batch, rng, folder):
    path = os.path.join(folder, "model.onnx")
    cynn.export_onnx(module, path, input_shape)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = (scale * rng.standard_normal((batch, *input_shape))).astype(np.float32)
    got = session.run(None, {"input": x})[0].astype(np.float64)
    with cynn.inference_mode():
        want = np.asarray(module.forward(x), np.float64)
    diff = np.abs(got - want)
    size = float(np.abs(want).max())
    meaningful = np.abs(want) > 1e-3 * size
    rel = float((diff[meaningful] / np.abs(want[meaningful])).max()) if meaningful.any() else 0.0
    return rel, float(diff.max()), size


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"onnxruntime {ort.__version__}, opset {cynn.onnx_export.OPSET}, float32, "
          f"batch {args.batch}")
    print(f"{'':32s} {'max rel diff':>13s} {'max abs diff':>13s} {'output scale':>13s} "
          f"{'abs / scale':>12s}")
    worst = 0.0
    with tempfile.TemporaryDirectory() as folder:
        for name, module, shape, scale in layer_cases(rng) + model_cases(rng):
            rel, abs_, size = differences(module.evaluate(), shape, scale, args.batch, rng,
                                          folder)
            worst = max(worst, rel)
            print(f"{name:32s} {rel:13.2e} {abs_:13.2e} {size:13.2e} {abs_ / size:12.2e}")
    print(f"worst relative difference: {worst:.2e}")


if __name__ == "__main__":
    main()
