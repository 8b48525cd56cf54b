"""Slow, obviously correct NumPy twins of the Cython kernels.

Each function follows the definition directly (pad, slide, sum) with no cleverness,
so the kernels can be tested against it over dtypes and awkward shapes.
"""
import numpy as np


def _output_size(size, kernel, stride, pad):
    return (size + 2 * pad - kernel) // stride + 1


def conv2d_forward(x, weight, bias, stride, padding):
    """y[n, f, oh, ow] = b[f] + sum_{c,i,j} xpad[n, c, oh*sh + i, ow*sw + j] * W[f, c, i, j]."""
    (sh, sw), (ph, pw) = stride, padding
    n, c, h, w = x.shape
    f, _, kh, kw = weight.shape
    ho, wo = _output_size(h, kh, sh, ph), _output_size(w, kw, sw, pw)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    y = np.zeros((n, f, ho, wo), dtype=np.result_type(x, weight))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
            y += np.einsum("nchw,fc->nfhw", patch, weight[:, :, i, j])
    if bias is not None:
        y += bias[None, :, None, None]
    return y


def conv2d_backward(x, weight, dy, stride, padding):
    """Gradients (dx, dW, db) of sum(y * dy) for `conv2d_forward`."""
    (sh, sw), (ph, pw) = stride, padding
    n, c, h, w = x.shape
    f, _, kh, kw = weight.shape
    ho, wo = dy.shape[2], dy.shape[3]
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(weight)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i, i + sh * (ho - 1) + 1, sh)
            cols = slice(j, j + sw * (wo - 1) + 1, sw)
            dxp[:, :, rows, cols] += np.einsum("nfhw,fc->nchw", dy, weight[:, :, i, j])
            dw[:, :, i, j] = np.einsum("nfhw,nchw->fc", dy, xp[:, :, rows, cols])
    dx = dxp[:, :, ph:ph + h, pw:pw + w]
    return dx, dw, dy.sum(axis=(0, 2, 3))


def maxpool2d_forward(x, kernel, stride, padding):
    """Window maxima over -inf padding, and the flat in-plane index of each winner.

    Ties go to the first element in row-major window order.
    """
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    n, c, h, w = x.shape
    ho, wo = _output_size(h, kh, sh, ph), _output_size(w, kw, sw, pw)
    y = np.empty((n, c, ho, wo), dtype=x.dtype)
    idx = np.empty((n, c, ho, wo), dtype=np.int64)
    for oh in range(ho):
        for ow in range(wo):
            best = np.full((n, c), -np.inf)
            best_idx = np.full((n, c), -1, dtype=np.int64)
            for i in range(kh):
                for j in range(kw):
                    ih, iw = oh * sh - ph + i, ow * sw - pw + j
                    if 0 <= ih < h and 0 <= iw < w:
                        v = x[:, :, ih, iw]
                        better = (v > best) | (best_idx < 0)
                        best = np.where(better, v, best)
                        best_idx = np.where(better, ih * w + iw, best_idx)
            y[:, :, oh, ow] = best
            idx[:, :, oh, ow] = best_idx
    return y, idx


def maxpool2d_backward(dy, indices, input_shape):
    """Scatter-add dy into the positions the forward pass selected."""
    n, c, h, w = input_shape
    dx = np.zeros((n, c, h * w), dtype=dy.dtype)
    for a in range(n):
        for b in range(c):
            np.add.at(dx[a, b], indices[a, b].ravel(), dy[a, b].ravel())
    return dx.reshape(input_shape)


def global_avgpool2d_forward(x):
    """y[n, c] = mean over the (n, c) plane."""
    return x.mean(axis=(2, 3))


def global_avgpool2d_backward(dy, input_shape):
    """Every pixel of a plane gets an equal share of its output's gradient."""
    n, c, h, w = input_shape
    return np.broadcast_to((dy / (h * w))[:, :, None, None], input_shape).copy()


def _channel_axes(x):
    return (0,) if x.ndim == 2 else (0, 2, 3)


def _per_channel(v, x):
    return v.reshape((1, -1) + (1,) * (x.ndim - 2))


def batchnorm_forward(x, eps):
    """The seed's training-mode normalization: (x - mean) / sqrt(biased var + eps),
    statistics over every axis but the channel axis 1."""
    axes = _channel_axes(x)
    mean = x.mean(axis=axes)
    var = x.var(axis=axes)
    y = (x - _per_channel(mean, x)) / np.sqrt(_per_channel(var, x) + eps)
    return y, mean, var


def batchnorm_backward(x, dy, eps):
    """The seed's formula: dx = (dy - mean(dy) - xn * mean(xn * dy)) / std."""
    axes = _channel_axes(x)
    centered = x - x.mean(axis=axes, keepdims=True)
    std = np.sqrt((centered ** 2).mean(axis=axes, keepdims=True) + eps)
    xn = centered / std
    dy_centered = dy - dy.mean(axis=axes, keepdims=True)
    return (dy_centered - xn * (xn * dy).mean(axis=axes, keepdims=True)) / std


def channelwise_scaling(x, gamma, beta, dy):
    """y = gamma * x + beta per channel (axis 1), and (dx, dgamma, dbeta) for ``dy``."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    y = x * gamma.reshape(shape) + beta.reshape(shape)
    return y, dy * gamma.reshape(shape), (dy * x).sum(axis=axes), dy.sum(axis=axes)


def matmul(a, b, trans_a, trans_b):
    """op(a) @ op(b), the product the dense kernel computes."""
    return (a.T if trans_a else a) @ (b.T if trans_b else b)


def _depthwise_pairs(stride, padding):
    pair = lambda v: (v, v) if np.isscalar(v) else tuple(v)  # noqa: E731
    return pair(stride), pair(padding)


def depthwise_forward(x, weight, bias, stride, padding):
    """Depthwise correlation: output channel f of the F = C * m reads input channel f // m.

    y[n, f, oh, ow] = b[f] + sum_{i,j} xpad[n, f // m, oh*sh + i, ow*sw + j] * w[f, i, j],
    weight (F, kh, kw); ``bias`` may be None.
    """
    (sh, sw), (ph, pw) = _depthwise_pairs(stride, padding)
    n, c, h, w = x.shape
    f, kh, kw = weight.shape
    ho, wo = _output_size(h, kh, sh, ph), _output_size(w, kw, sw, pw)
    # Repeating each input channel m times lines channel f up with f // m.
    xp = np.repeat(np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))), f // c, axis=1)
    y = np.zeros((n, f, ho, wo), dtype=np.result_type(x, weight))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
            y += patch * weight[None, :, i, j, None, None]
    if bias is not None:
        y += bias[None, :, None, None]
    return y


def depthwise_backward(x, weight, dy, stride, padding):
    """Gradients (dx, dW, db) of sum(y * dy) for `depthwise_forward`: dx sums the m
    output channels of each input channel."""
    (sh, sw), (ph, pw) = _depthwise_pairs(stride, padding)
    n, c, h, w = x.shape
    f, kh, kw = weight.shape
    ho, wo = dy.shape[2], dy.shape[3]
    xp = np.repeat(np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))), f // c, axis=1)
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(weight)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i, i + sh * (ho - 1) + 1, sh)
            cols = slice(j, j + sw * (wo - 1) + 1, sw)
            dxp[:, :, rows, cols] += dy * weight[None, :, i, j, None, None]
            dw[:, i, j] = (dy * xp[:, :, rows, cols]).sum(axis=(0, 2, 3))
    dxp = dxp.reshape(n, c, f // c, h + 2 * ph, w + 2 * pw).sum(axis=2)
    dx = dxp[:, :, ph:ph + h, pw:pw + w]
    return dx, dw, dy.sum(axis=(0, 2, 3))
