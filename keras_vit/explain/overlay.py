"""PNG pictures of explanations: heat maps over the image, with colour bars and the prediction.

Drawn on a `matplotlib.figure.Figure` with the Agg canvas (no pyplot, no global
backend state, no display needed) and written atomically.
"""

import os

import numpy as np

from keras_vit.explain.explainer import METHOD_TITLES

PANEL_INCHES = 2.3


def _display_image(image):
    image = np.clip(np.asarray(image, dtype="float32"), 0, 255).astype("uint8")
    if image.ndim == 3 and image.shape[-1] == 1:
        return image[..., 0], "gray"
    return image, None


def _label(class_names, class_id):
    class_id = int(class_id)
    if class_names is not None and 0 <= class_id < len(class_names):
        return str(class_names[class_id])
    return str(class_id)


def save_figure_atomic(figure, path, dpi=100):
    """Writes a matplotlib figure as PNG through a temporary file in the same folder."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from keras_vit.files import atomic_path

    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"output folder does not exist: {folder}")
    FigureCanvasAgg(figure)
    with atomic_path(path, ".png") as tmp:
        figure.savefig(tmp, format="png", dpi=dpi)


def _heat_panel(figure, axis, image, heat, cmap, alpha):
    from matplotlib.ticker import ScalarFormatter

    shown, gray = _display_image(image)
    axis.imshow(shown, cmap=gray, interpolation="nearest")
    heat = np.asarray(heat, dtype="float32")
    low, high = float(heat.min()), float(heat.max())
    flat = high <= low
    if flat:
        # A constant map (e.g. a CAM that ReLU zeroed everywhere) has no colour
        # scale; say so instead of painting it mid-scale as if it meant something.
        low, high = low - 0.5, low + 0.5
    artist = axis.imshow(heat, cmap=cmap, alpha=alpha, vmin=low, vmax=high, interpolation="nearest")
    # No offset ("+5e-3" above the bar collides with the title), and as many
    # digits as the ticks need to differ (a fixed "%.2g" repeats labels on narrow ranges).
    formatter = ScalarFormatter(useOffset=False)
    formatter.set_powerlimits((-4, 4))
    colorbar = figure.colorbar(artist, ax=axis, fraction=0.046, pad=0.03, format=formatter)
    colorbar.ax.tick_params(labelsize=6)
    if flat:
        axis.text(
            0.5, 0.5, f"constant\n{heat.flat[0]:.2g}", transform=axis.transAxes, ha="center", va="center",
            fontsize=8, color="white", bbox={"facecolor": "black", "alpha": 0.6, "pad": 2},
        )
    axis.set_axis_off()


def render_explanations(
    path,
    images,
    explanation,
    class_names=None,
    labels=None,
    methods=None,
    title=None,
    cmap="jet",
    alpha=0.5,
    dpi=100,
):
    """Draws a grid of images (rows) x [input, methods...] (columns) and writes it as PNG.

    Each row's input panel names the explained class and its probability (and the
    true label when `labels` is given); each method panel overlays the method's
    map on the image with a colour bar of the map's own values.

    Args:
        path: output `.png` path (written atomically).
        images: raw 0..255 images `[B, H, W, C]`.
        explanation: an `Explanation` from `Explainer.explain`.
        class_names: names indexed by class id (None: the ids).
        labels: optional true class ids `[B]`.
        methods: subset and order of `explanation.maps` to draw (default all).

    Returns:
        the PNG's `(width, height)` in pixels.
    """
    from matplotlib.figure import Figure

    images = np.asarray(images)
    methods = list(explanation.maps) if methods is None else list(methods)
    missing = [m for m in methods if m not in explanation.maps]
    if missing:
        raise ValueError(f"the explanation has no {missing[0]!r} map; it has {', '.join(explanation.maps)}")
    rows, cols = len(images), 1 + len(methods)
    figure = Figure(figsize=(PANEL_INCHES * cols, PANEL_INCHES * rows + (0.35 if title else 0.1)), dpi=dpi)
    axes = figure.subplots(rows, cols, squeeze=False)
    for row in range(rows):
        class_id = explanation.class_ids[row]
        probability = float(explanation.probabilities[row, class_id])
        caption = f"{_label(class_names, class_id)} (p={probability:.2f})"
        if labels is not None:
            caption += f"\ntrue: {_label(class_names, labels[row])}"
        axis = axes[row, 0]
        shown, gray = _display_image(images[row])
        axis.imshow(shown, cmap=gray, interpolation="nearest")
        axis.set_title(caption, fontsize=8)
        axis.set_axis_off()
        for col, method in enumerate(methods, start=1):
            _heat_panel(figure, axes[row, col], images[row], explanation.maps[method][row], cmap, alpha)
            if row == 0:
                name = explanation.titles.get(method) or METHOD_TITLES.get(method, method)
                axes[row, col].set_title(name, fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    save_figure_atomic(figure, path, dpi=dpi)
    width, height = figure.get_size_inches() * dpi
    return int(round(width)), int(round(height))


def render_layer_heads(path, image, head_maps, cmap="jet", alpha=0.5, dpi=100):
    """Draws one image's attention for every block (rows) and head (columns) as PNG.

    Args:
        image: raw 0..255 image `[H, W, C]`.
        head_maps: `[num_layers, num_heads, H, W]` (one image of `layer_head_maps`).
    """
    from matplotlib.figure import Figure

    head_maps = np.asarray(head_maps)
    if head_maps.ndim != 4:
        raise ValueError(f"head_maps must be [layers, heads, H, W], got shape {head_maps.shape}")
    num_layers, num_heads = head_maps.shape[:2]
    figure = Figure(figsize=(PANEL_INCHES * num_heads, PANEL_INCHES * num_layers), dpi=dpi)
    axes = figure.subplots(num_layers, num_heads, squeeze=False)
    for layer in range(num_layers):
        for head in range(num_heads):
            _heat_panel(figure, axes[layer, head], image, head_maps[layer, head], cmap, alpha)
            axes[layer, head].set_title(f"block {layer}, head {head}", fontsize=8)
    figure.tight_layout()
    save_figure_atomic(figure, path, dpi=dpi)
