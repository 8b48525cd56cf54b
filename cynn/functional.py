"""Row-wise softmax and log-softmax on plain arrays: the one home of these formulas,
shared by the SoftMax/LogSoftMax layers, CrossEntropyCriterion and the estimators'
``predict_proba``.
"""
import numpy as np

__all__ = ["softmax", "log_softmax"]


def softmax(x):
    """``exp(x) / sum(exp(x))`` over axis 1 of a 2-D array, in ``x``'s dtype.

    The row maximum is subtracted first, which changes nothing mathematically and
    keeps every exponent <= 0, so nothing overflows.
    """
    e = np.exp(x - x.max(axis=1, keepdims=True))
    e /= e.sum(axis=1, keepdims=True)
    return e


def log_softmax(x):
    """``x - log(sum(exp(x)))`` over axis 1 of a 2-D array, after subtracting the row
    maximum so that the largest exponent is exactly 0 (the sum is >= 1)."""
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
