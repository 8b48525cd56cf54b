"""Wall time of a 4-candidate grid search with n_jobs=1 and n_jobs=2.

    python benchmarks/bench_search.py [--repeats 3] [--epochs 5]

The small CNN on scikit-learn's digits (1,797 8x8 images), GridSearchCV over
lr x batch_size (2 x 2 candidates), cv=3, refit=False: 12 fits.  With n_jobs=2 joblib's
process workers each get cores // 2 threads (OMP_NUM_THREADS), which cynn follows, so
the two jobs share the cores instead of running 2 x cores threads.  Prints the median
of the repeats (alternating the two settings) and the kernel threads each fit saw.
"""
import argparse
import os
import statistics
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV

from cynn.trainers import NeuralNetClassifier


def search(n_jobs, X, y, epochs):
    def threads(estimator, X, y):
        import cynn

        return float(cynn.get_num_threads())

    grid = GridSearchCV(NeuralNetClassifier(image_shape=(1, 8, 8), max_epochs=epochs,
                                            random_state=0),
                        {"lr": [1e-3, 3e-3], "batch_size": [32, 64]}, cv=3, n_jobs=n_jobs,
                        scoring={"accuracy": "accuracy", "threads": threads},
                        refit=False)
    start = time.perf_counter()
    grid.fit(X, y)
    seconds = time.perf_counter() - start
    return seconds, sorted({int(t) for t in grid.cv_results_["mean_test_threads"]}), \
        float(np.max(grid.cv_results_["mean_test_accuracy"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    print(f"cores: {len(os.sched_getaffinity(0))}, OPENBLAS_CORETYPE="
          f"{os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, {args.repeats} repeats, "
          f"{args.epochs} epochs per fit, 12 fits")
    search(2, X[:200], y[:200], 1)          # start the worker processes once
    times = {1: [], 2: []}
    for _ in range(args.repeats):
        for n_jobs in (1, 2):
            seconds, threads, best = search(n_jobs, X, y, args.epochs)
            times[n_jobs].append(seconds)
            print(f"  n_jobs={n_jobs}: {seconds:7.2f} s, kernel threads per fit {threads}, "
                  f"best accuracy {best:.4f}")
    one, two = (statistics.median(times[n]) for n in (1, 2))
    print(f"median: n_jobs=1 {one:.2f} s, n_jobs=2 {two:.2f} s, speed-up {one / two:.2f}x")


if __name__ == "__main__":
    main()
