"""Parallel searches do not oversubscribe the cores: each worker's fits use their share."""
import os

import numpy as np
from joblib import parallel_config
from sklearn.model_selection import GridSearchCV

from cynn.trainers import NeuralNetClassifier


def _search(n_jobs, **config):
    # Defined here so that joblib pickles it by value; it runs where the fit ran, in
    # the worker process.
    def threads_scorer(estimator, X, y):
        import cynn

        return float(cynn.get_num_threads())

    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 8)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    search = GridSearchCV(NeuralNetClassifier(module="mlp", max_epochs=1, random_state=0),
                          {"lr": [1e-3, 1e-2]}, cv=2, n_jobs=n_jobs, scoring=threads_scorer,
                          refit=False)
    with parallel_config(**config):
        search.fit(X, y)
    return set(search.cv_results_["mean_test_score"])


def test_two_jobs_share_the_cores():
    cores = len(os.sched_getaffinity(0))
    # joblib's process workers get cores // n_jobs threads each, and cynn follows.
    assert _search(2) == {float(max(1, cores // 2))}


def test_the_inner_thread_count_of_joblib_is_followed():
    # More than this machine's share, so that the count seen can only come from joblib.
    assert _search(2, backend="loky", inner_max_num_threads=3) == {3.0}
