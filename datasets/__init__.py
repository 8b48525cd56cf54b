"""Dataset loaders and minibatching (installed as cynn.datasets)."""
