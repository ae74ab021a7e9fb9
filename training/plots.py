"""Training curves as a picture."""

import csv
import os


def plot_curves(history_csv, path):
    """Writes loss and accuracy (train and validation) per epoch from a CSVLogger file to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(history_csv) as file:
        rows = list(csv.DictReader(file))
    if not rows:
        return
    epochs = [int(r["epoch"]) + 1 for r in rows]
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.5))
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
    tmp = f"{path}.tmp.png"
    figure.savefig(tmp, dpi=90)
    plt.close(figure)
    os.replace(tmp, path)
