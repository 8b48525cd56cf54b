"""Deprecated location of the model builders: they live in `cynn.models` now."""
from cynn.models import mlp, small_cnn  # noqa: F401

__all__ = ["small_cnn", "mlp"]
