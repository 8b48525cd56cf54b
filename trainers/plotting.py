"""plot_histories: overlay the curves of several training runs (matplotlib, optional)."""


def _pyplot():
    try:
        import matplotlib

        if matplotlib.get_backend().lower() not in ("agg",) and not _interactive():
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "plotting needs matplotlib, an optional extra: pip install 'matplotlib>=3.7' "
            "(or install cynn with the [plot] extra)"
        ) from None
    return plt


def _interactive():
    import sys

    return "ipykernel" in sys.modules or hasattr(sys, "ps1")


def plot_histories(histories, metrics=("loss", "accuracy"), title=None):
    """One subplot per metric; training curves solid, validation dashed, one colour per run.

    Parameters
    ----------
    histories : dict of str -> History
        Run name to its history, e.g. ``{"Adam": h1, "SGD": h2}``.
    metrics : sequence of str
        Metric names without the ``train_``/``val_`` prefix.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not histories:
        raise ValueError("plot_histories needs at least one history")
    if isinstance(metrics, str):
        metrics = (metrics,)
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.8), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, metric in zip(axes[0], metrics):
        drawn = False
        for i, (name, history) in enumerate(histories.items()):
            color = colors[i % len(colors)]
            epochs = history["epoch"]
            for split, style in (("train", "-"), ("val", "--")):
                column = f"{split}_{metric}"
                values = history[column] if column in history.columns else []
                points = [(e, v) for e, v in zip(epochs, values) if v is not None]
                if points:
                    ax.plot(*zip(*points), style, color=color, label=f"{name} ({split})")
                    drawn = True
        if not drawn:
            raise ValueError(f"no run has values for metric {metric!r}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
