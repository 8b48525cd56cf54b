"""Training loop, callbacks and scikit-learn estimators (installed as cynn.trainers)."""
