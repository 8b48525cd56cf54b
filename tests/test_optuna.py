"""OptunaSearchCV (optuna-integration) drives the estimators like GridSearchCV does."""
import numpy as np
import pytest

optuna = pytest.importorskip("optuna")
optuna_integration = pytest.importorskip("optuna_integration")

from cynn.trainers import NeuralNetClassifier  # noqa: E402


def test_optuna_search_tunes_a_classifier():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 6)).astype(np.float32)
    y = (X[:, 0] - X[:, 1] > 0).astype(int)
    search = optuna_integration.OptunaSearchCV(
        NeuralNetClassifier(module="mlp", max_epochs=3, random_state=0),
        {"lr": optuna.distributions.FloatDistribution(1e-3, 3e-2, log=True),
         "batch_size": optuna.distributions.CategoricalDistribution([16, 32])},
        n_trials=4, cv=2, random_state=0, refit=True)
    search.fit(X, y)
    assert len(search.trials_) == 4
    assert 1e-3 <= search.best_params_["lr"] <= 3e-2
    assert search.best_params_["batch_size"] in (16, 32)
    assert search.best_estimator_.n_iter_ == 3
    assert search.score(X, y) == search.best_estimator_.score(X, y) > 0.6
