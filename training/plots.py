"""Training curves as a picture."""

import csv


def plot_curves(history_csv, path):
    """Writes loss and accuracy (train and validation) per epoch from a CSVLogger file to a PNG."""
    # The object API with the Agg canvas: no pyplot, so no global backend is chosen for the caller.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from keras_vit.files import atomic_path

    with open(history_csv) as file:
        rows = list(csv.DictReader(file))
    if not rows:
        return
    epochs = [int(r["epoch"]) + 1 for r in rows]
    figure = Figure(figsize=(9, 3.5))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2)
    for axis, metric in zip(axes, ("loss", "accuracy")):
        for prefix, label in (("", "train"), ("val_", "validation")):
            key = prefix + metric
            # CSVLogger writes "NA" for a score an epoch lacked.
            points = [
                (epoch, float(row[key])) for epoch, row in zip(epochs, rows) if row.get(key) not in (None, "", "NA")
            ]
            if points:
                axis.plot(*zip(*points), marker=".", label=label)
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    with atomic_path(path, ".png") as tmp:
        figure.savefig(tmp, format="png", dpi=90)
