"""The course seed's formulas, written out as plain functions.

These are the notebook's definitions (BatchNormalization, ChannelwiseScaling and a
stride-1, 'same'-padded Conv2d built from ``scipy.signal`` loops), kept as the
reference the tests compare cynn against and the baseline the benchmarks time.
They are slow on purpose: one 2-D correlation per (sample, out channel, in channel).
"""
import itertools

import numpy as np
from scipy import signal


def batchnorm_forward(x, moving_mean, moving_variance, alpha, eps, training):
    """(x - mu) / sqrt(sigma + eps) over an (N, C) batch; returns (y, new moving stats)."""
    mean, variance = x.mean(axis=0), x.var(axis=0)
    if training:
        moving_mean = moving_mean * alpha + mean * (1 - alpha)
        moving_variance = moving_variance * alpha + variance * (1 - alpha)
    else:
        mean, variance = moving_mean, moving_variance
    return (x - mean) / np.sqrt(variance + eps), moving_mean, moving_variance


def batchnorm_input_grad(x, output_grad, eps):
    """The seed's closed form, from batch statistics:
    dx = (dy - mean(dy) - xn * sum(xn * dy) / n) / std."""
    n = output_grad.shape[0]
    centered = x - x.mean(axis=0, keepdims=True)
    std = np.sqrt((centered ** 2).mean(axis=0, keepdims=True) + eps)
    normalized = centered / std
    grad_centered = output_grad - output_grad.mean(axis=0, keepdims=True)
    projection = np.sum(normalized * output_grad, axis=0, keepdims=True)
    return (grad_centered - normalized * projection / n) / std


def channelwise_scaling(x, gamma, beta, output_grad):
    """y = x * gamma + beta and its gradients (dx, dgamma, dbeta) for (N, C) input."""
    y = x * gamma + beta
    return y, output_grad * gamma, np.sum(output_grad * x, axis=0), np.sum(output_grad, axis=0)


def _pairs(n, weight):
    """Every (sample, out channel, in channel) triple, in the seed's loop order."""
    return itertools.product(range(n), range(weight.shape[0]), range(weight.shape[1]))


def _pad(a, pad):
    return np.pad(a, ((0, 0), (0, 0), (pad, pad), (pad, pad)))


def conv2d_forward(x, weight, bias):
    """Y_f = B_f + sum_c X_c (cross-correlation) K_fc with 'same' zero padding, stride 1."""
    xp = _pad(x, weight.shape[2] // 2)
    out = np.zeros((x.shape[0], weight.shape[0]) + x.shape[2:]) + bias[None, :, None, None]
    for s, f, c in _pairs(x.shape[0], weight):
        out[s, f] += signal.correlate2d(xp[s, c], weight[f, c], "valid")
    return out


def conv2d_input_grad(x, weight, output_grad):
    """dL/dX_c = sum_f dL/dY_f (full convolution) K_fc, cropped back to 'same'."""
    gp = _pad(output_grad, weight.shape[2] // 2)
    grad = np.zeros_like(x, dtype=np.float64)
    for s, f, c in _pairs(x.shape[0], weight):
        grad[s, c] += signal.convolve2d(gp[s, f], weight[f, c], "valid")
    return grad


def conv2d_parameter_grads(x, weight, output_grad):
    """dL/dK_fc = X_c (cross-correlation) dL/dY_f and dL/dB_f = sum dL/dY_f."""
    xp = _pad(x, weight.shape[2] // 2)
    grad_w = np.zeros(weight.shape)
    for s, f, c in _pairs(x.shape[0], weight):
        grad_w[f, c] += signal.correlate2d(xp[s, c], output_grad[s, f], "valid")
    return grad_w, output_grad.sum(axis=(0, 2, 3))
