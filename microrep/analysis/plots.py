"""Figures people would rather look at than read: PCA scatter, confusion, curves.

Every function draws onto a new figure, writes a PNG atomically and closes the
figure. The backend is left as the user has it: matplotlib itself falls back to
Agg on a machine without a display, and forcing Agg here would stop a notebook's
own figures from showing once microrep had drawn one.
"""

import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from microrep.data.images import read_image
from microrep.fileio import atomic_path


def _save(figure, path):
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(figure)
    return path


#: Markers that, with the ten colours of tab10, keep up to 60 classes apart: colour alone
#: cannot (29 processing conditions in UHCSDB).
MARKERS = ("o", "s", "^", "D", "v", "P")


def class_styles(classes):
    """{class: (colour, marker)}: ten distinct colours, then the next marker shape."""
    colours = sns.color_palette("tab10", 10)
    return {name: (colours[i % 10], MARKERS[(i // 10) % len(MARKERS)])
            for i, name in enumerate(classes)}


def plot_pca_scatter(scores, labels, explained, path, title="Embeddings on PC1/PC2", hue_name="class"):
    """Scatter of the first two principal components, coloured (and shaped) by class."""
    labels = np.asarray(labels).astype(str)
    classes = sorted(set(labels))
    figure, axis = plt.subplots(figsize=(7.5 if len(classes) <= 15 else 9, 5.5))
    second = scores[:, 1] if scores.shape[1] > 1 else np.zeros(len(scores))
    for name, (colour, marker) in class_styles(classes).items():
        rows = labels == name
        axis.scatter(scores[rows, 0], second[rows], color=colour, marker=marker, s=28,
                     alpha=0.85, label=name, edgecolors="none")
    axis.set_xlabel(f"PC1 ({explained[0]:.0%} of variance)")
    if len(explained) > 1:
        axis.set_ylabel(f"PC2 ({explained[1]:.0%} of variance)")
    axis.set_title(title)
    axis.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, title=hue_name,
                ncol=1 if len(classes) <= 15 else 2, fontsize=8 if len(classes) > 15 else None)
    return _save(figure, path)


def plot_confusion(confusion, classes, path, title="Confusion matrix (summed over test folds)"):
    """Heat map of a confusion matrix, rows normalised to recall."""
    confusion = np.asarray(confusion, dtype=float)
    recall = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    size = max(4.5, 0.6 * len(classes) + 2.5)
    figure, axis = plt.subplots(figsize=(size + 1, size))
    sns.heatmap(recall, annot=confusion.astype(int), fmt="d", cmap="Blues", vmin=0, vmax=1,
                xticklabels=classes, yticklabels=classes, cbar_kws={"label": "share of true class"},
                ax=axis)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title)
    return _save(figure, path)


def plot_training_curves(log_table, path):
    """Loss and pair accuracy per epoch from a training_log.csv table."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    epochs = log_table["epoch"] + 1
    axes[0].plot(epochs, log_table["loss"], marker="o")
    axes[0].set_title("contrastive loss")
    if "pair_accuracy" in log_table:
        axes[1].plot(epochs, log_table["pair_accuracy"], marker="o", color="tab:green")
    axes[1].set_title("pair accuracy (distance < margin / 2)")
    for axis in axes:
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    return _save(figure, path)


def plot_accuracy_bars(accuracies, path, title="SVM accuracy on the same CV folds"):
    """Bar chart of mean +- std accuracy per method: {name: (mean, std)}."""
    names = list(accuracies)
    means = [accuracies[n][0] for n in names]
    stds = [accuracies[n][1] for n in names]
    figure, axis = plt.subplots(figsize=(1.8 * len(names) + 2, 3.8))
    axis.bar(names, means, yerr=stds, capsize=5, color=sns.color_palette("deep", len(names)))
    for position, (mean, std) in enumerate(zip(means, stds)):  # above the error bar, not on it
        axis.text(position, mean + std + 0.02, f"{mean:.1%}", ha="center", va="bottom")
    axis.set_ylim(0, max(1.1, max(m + s for m, s in zip(means, stds)) + 0.12))
    axis.set_ylabel("accuracy")
    axis.set_title(title)
    return _save(figure, path)


def plot_pc_descriptors(scores, descriptors, path, title="Embedding PCs coloured by measured descriptors"):
    """PC1/PC2 scatter, one panel per descriptor column, coloured by its value."""
    columns = list(descriptors.columns)
    figure, axes = plt.subplots(1, len(columns), figsize=(4.8 * len(columns), 3.8), squeeze=False,
                                layout="constrained")  # colour bars never cover the next panel
    for axis, column in zip(axes[0], columns):
        points = axis.scatter(scores[:, 0], scores[:, 1], c=descriptors[column], cmap="viridis", s=14)
        figure.colorbar(points, ax=axis, shrink=0.8)
        axis.set_title(column.replace("_", " "))
        axis.set_xlabel("PC1")
        axis.set_ylabel("PC2")
    figure.suptitle(title)
    return _save(figure, path)


def plot_pc_extremes(scores, images, path, count=6, thumb=96):
    """Thumbnails of the images at each end of PC1 and PC2, ordered along the PC."""
    figure, axes = plt.subplots(2, count, figsize=(1.6 * count, 3.6))
    for row, pc in enumerate((0, 1)):
        order = np.argsort(scores[:, pc])
        chosen = np.concatenate([order[:count // 2], order[-(count - count // 2):]])
        for column, index in enumerate(chosen):
            image = images[index]
            side = min(image.shape)
            axes[row, column].imshow(image[:side, :side], cmap="gray", vmin=0, vmax=255)
            axes[row, column].set_xticks([])
            axes[row, column].set_yticks([])
            axes[row, column].set_title(f"{scores[index, pc]:+.1f}", fontsize=8)
        axes[row, 0].set_ylabel(f"PC{pc + 1}\nlow → high", fontsize=9)
    figure.suptitle("Micrographs at the ends of each principal component")
    return _save(figure, path)


def short_name(path, width=22):
    """A file name cut in the middle, so names that differ at the end still read apart."""
    name = Path(str(path)).name
    return name if len(name) <= width else name[:width // 2 - 1] + "…" + name[-(width // 2):]


def plot_neighbours(neighbours, path, max_queries=12, thumb=96):
    """Each query's thumbnail, then its nearest micrographs with distance and label, one row each.

    `neighbours` is `microrep search`'s table (query, rank, distance, path, label...).
    """
    every = list(dict.fromkeys(neighbours["query"]))
    queries = every[:max_queries]
    k = int(neighbours["rank"].max()) if len(neighbours) else 0
    figure, axes = plt.subplots(len(queries), k + 1, figsize=(1.6 * (k + 1), 2.0 * len(queries)),
                                squeeze=False)

    def show(axis, image_path, title):
        try:
            image = read_image(image_path)
            side = min(image.shape)
            axis.imshow(image[:side, :side], cmap="gray", vmin=0, vmax=255)
        except Exception:  # a moved archive: say so in the cell instead of failing the figure
            axis.text(0.5, 0.5, "image\nnot found", ha="center", va="center", fontsize=7)
        axis.set_title(title, fontsize=7)
        axis.set_xticks([])
        axis.set_yticks([])

    def wrapped(text, width=16):  # class names like "pearlite+spheroidite" break after a "+"
        if str(text) in ("", "nan"):
            return ""
        lines = textwrap.wrap(str(text).replace("+", "+ "), width, break_long_words=False)
        return "\n".join(line.replace("+ ", "+") for line in lines[:2])

    for row, query in enumerate(queries):
        found = neighbours[neighbours["query"] == query].sort_values("rank")
        query_label = found["query_label"].iloc[0] if "query_label" in found and len(found) else ""
        show(axes[row, 0], query, f"query: {short_name(query)}\n{wrapped(query_label)}".strip())
        axes[row, 0].patch.set_edgecolor("tab:red")
        for column in range(1, k + 1):
            axis = axes[row, column]
            if column - 1 < len(found):
                hit = found.iloc[column - 1]
                show(axis, hit["path"], f"{hit['distance']:.2f}\n{wrapped(hit.get('label', ''))}")
            else:
                axis.axis("off")
    shown = (f"the first {len(queries)} of {len(every)} queries (all in neighbours.csv)"
             if len(every) > len(queries) else f"{len(queries)} quer{'y' if len(queries) == 1 else 'ies'}")
    figure.suptitle(f"Nearest micrographs (distance, label): {shown}", fontsize=9)
    return _save(figure, path)


def plot_parity(predictions, summary, path):
    """Predicted against true values of a numeric target, with each image's 90 % interval,
    coloured by sample; the diagonal is a perfect prediction."""
    true, predicted = predictions["true"], predictions["predicted"]
    lower, upper = predictions["lower"], predictions["upper"]
    figure, axis = plt.subplots(figsize=(5.2, 5))
    samples = np.unique(predictions["group"], return_inverse=True)[1]
    axis.errorbar(true, predicted, yerr=[predicted - lower, upper - predicted], fmt="none",
                  ecolor="0.8", elinewidth=0.8, zorder=1)
    axis.scatter(true, predicted, c=samples, cmap="tab20", s=14, zorder=2)
    low, high = np.nanmin([true.min(), lower.min()]), np.nanmax([true.max(), upper.max()])
    axis.plot([low, high], [low, high], "k--", linewidth=0.8)
    unit = f" ({summary['unit']})" if summary.get("unit") else ""
    axis.set_xlabel(f"true {summary['target']}{unit}")
    axis.set_ylabel(f"predicted{unit}")
    axis.set_title(f"{summary['target']}: MAE {summary['mae']:.3g} (no information "
                   f"{summary['no_information_mae']:.3g}), {summary['confidence']:.0%} intervals "
                   f"cover {summary['coverage']:.0%}\n(sample-grouped CV; colour = sample)",
                   fontsize=8)
    return _save(figure, path)
