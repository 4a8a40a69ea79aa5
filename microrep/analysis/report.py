"""Markdown reports of a run, written for a reader rather than a parser."""

from microrep.analysis.interpret import strongest
from microrep.config.stages import is_random_weights


def _accuracy(summary):
    if not summary:
        return "n/a"
    return f"{summary['accuracy_mean']:.1%} ± {summary['accuracy_std']:.1%}"


def _export_lines(export):
    savedmodel = (f"- SavedModel (reload with `tf.saved_model.load`): `{export['savedmodel']}`"
                  if export.get("savedmodel") else f"- SavedModel not written: {export.get('note', '')}")
    return f"{savedmodel}\n- Keras file (reload with `keras.saving.load_model`): `{export['keras']}`"


def demo_summary(metrics):
    """The demo's verdict, computed from its held-out scores: does the learned embedding beat
    the best other features on the unseen samples? {learned, best_name, best, beats}."""
    heldout = {name: m["heldout"]["accuracy_mean"] for name, m in metrics["methods"].items()}
    learned = heldout.pop("learned embedding")
    best_name = max(heldout, key=heldout.get)
    return {"learned": learned, "best_name": best_name, "best": heldout[best_name],
            "beats": bool(learned > heldout[best_name])}


def demo_report(metrics):
    """report.md of the demo: what ran, what each number means, the tables, figures, export
    (the verdict is `demo_summary`'s, rendered here, never decided in the template)."""
    settings = {**flat_settings(metrics["settings"]), **flat_settings(metrics["train_settings"])}
    methods, split = metrics["methods"], metrics["split"]
    heldout = {name: m["heldout"] for name, m in methods.items()}
    summary = demo_summary(metrics)
    learned, best_name, best = summary["learned"], summary["best_name"], summary["best"]
    verdict = "beats" if summary["beats"] else "does NOT beat"
    rows = "\n".join(
        f"| {name} | {heldout[name]['accuracy_mean']:.1%} | {heldout[name]['balanced_accuracy']:.1%} | "
        f"{_accuracy(m['stratified'])} | {_accuracy(m['grouped'])} |" for name, m in methods.items())
    classes = ", ".join(f"{name} ({count})" for name, count in metrics["dataset"]["classes"].items())
    figures = metrics["figures"]
    recommended = metrics["recipe"] == "recommended"
    weights = settings["weights"]
    training = (f"Microrep's recommended recipe (what `microrep train` runs): VGG16 with weights "
                f"`{weights}`, frozen, its block 4 and 5 maps pooled, a residual head trained under "
                f"the graded contrastive loss with hard pairs; {settings['input_size']}x"
                f"{settings['input_size']} crops" if recommended else
                f"The paper's contrastive loss on a randomly initialised VGG16 (no pretrained "
                f"weights at hand), first {settings['vgg_blocks']} of its 5 blocks, "
                f"{settings['input_size']}x{settings['input_size']} crops, embedding size "
                f"{settings['embedding_dim']}, margin {settings['margin']}. This is not the "
                "recipe microrep recommends; with `--weights imagenet` (online) or a weights "
                "file the demo trains that recipe instead")
    untrained = ("the pretrained features the recipe starts from, before any training"
                 if recommended else "the same architecture with the same initial weights, before training")
    return f"""# microrep demo report

A Siamese network with a shared VGG16 tower was trained under contrastive loss on
pairs of synthetic SEM micrographs of **half of the samples**, then every micrograph
was embedded and classified with SVMs. Backend: {metrics['backend']}; microrep
{metrics['microrep_version']}; {metrics['seconds']:.0f} s in all.

## Data
{metrics['dataset']['images']} synthetic micrographs ({settings['synthetic_image_size']}x{settings['synthetic_image_size']} px) from
{metrics['dataset']['samples']} samples: {classes}. Training used {split['training_images']} micrographs of
{split['training_samples']} samples (half of each class's samples); the other {split['unseen_images']} micrographs, of
{split['unseen_samples']} samples, were never seen in training and are the test set below.

## Training
{training}; {metrics['training']['epochs_completed']} epoch(s) of {settings['pairs_per_epoch']} pairs, Adam at
{settings['learning_rate']}. Final loss {metrics['training']['final_loss']:.4f}{pair_accuracy_words(metrics['training'])}.

![training curves]({figures['training']})

## Classification of micrographs the training never saw

| features | linear SVM fitted on the training half, scored on the unseen half | balanced accuracy (same) | CV within the unseen half, stratified ({settings['folds']} folds) | CV within the unseen half, grouped by sample |
|---|---|---|---|---|
{rows}

What each number means: the first two columns fit the SVM on the embeddings of the
training half and score it on the unseen samples, as when a lab labels its archive and
classifies new samples; balanced accuracy is the mean recall over classes. The CV
columns cross-validate an SVM among the unseen micrographs only (grouped CV keeps every
sample's micrographs on one side of each split). "Untrained tower" is {untrained};
"raw pixels" is the image shrunk to 32x32 (PCA to 50 dimensions in CV).

On unseen samples the learned embedding **{verdict}** the best other features
({learned:.1%} vs {best:.1%}, {best_name}). This is one small synthetic split: for
real micrographs measure it on yours (README: held-out results).

![held-out accuracy]({figures['accuracy']})
![confusion matrix on unseen samples]({figures['confusion']})

## PCA of the embeddings (all micrographs)

![learned embedding]({figures['pca']})
![untrained tower]({figures['pca_untrained']})

## Export
{_export_lines(metrics['export'])}

Figures and numbers are in `metrics.json`.
"""


TASK_NAMES = {"3phase": "3 phases", "constituent": "primary microconstituent, all classes",
              "processing": "processing condition"}
#: What a reproduce CV flavour's folds split.
FOLD_UNITS = {"crops": "crops (DeCost et al.)", "stratified": "micrographs", "grouped": "samples"}


def _missing(value):
    return value is None or value != value  # None or NaN


def _signed(value):
    """A difference in points, or a dash where one side was not measured."""
    return "–" if _missing(value) else f"{100 * value:+.1f}"


def _pct(value, std=None):
    if _missing(value):
        return "–"
    return f"{value:.1%}" + (f" ± {std:.1%}" if std is not None and std == std else "")


def heldout_lines(rows, settings):
    """results.md's held-out section: microrep's recipe vs the pretrained features."""
    if not rows:
        return []
    lines = ["", "## On images the training never saw (microrep's recipe)", "",
             f"Each of {settings['heldout_splits']} seeded splits trains microrep's own recipe "
             "(frozen VGG16, residual head, graded similarity: the run's own training under "
             "`--preset cpu`, else `microrep train --preset cpu` at this run's input size and "
             "blocks) on one half of the images only; SVMs fitted on "
             "that half score the other. *within*: every sample on both sides; *disjoint*: whole "
             "samples held out (processing conditions are then unseen, so that row is near "
             "chance). Two untrained baselines: pretrained, the first tapped VGG16 layer mean-pooled "
             "(`embed --pretrained`); recipe input, every tapped layer standardised and "
             "L2-normalised per tile (the head before training). Mean over splits; the rows "
             "where learning loses are kept.", "",
             "| split | task | metric | pretrained | recipe input | learned | difference | over input |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['split']} | {TASK_NAMES.get(row['task'], row['task'])} | "
                     f"{row['metric']} | {_pct(row['pretrained'])} | {_pct(row['recipe input'])} | "
                     f"{_pct(row['learned'])} | {_signed(row['difference'])} | {_signed(row['over input'])} |")
    return lines


def flat_settings(settings):
    """A stage's recorded settings with nested groups (train, model, pairs, data) merged in.

    Leaf names are unique within a stage (each is one flag), so nothing is lost.
    """
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(flat_settings(value))
        else:
            flat.setdefault(key, value)
    return flat


def pair_accuracy_words(training):
    accuracy = training.get("final_pair_accuracy")
    return "" if accuracy is None else f", pair accuracy {accuracy:.1%}"


def image_scale_words(scale):
    """How the images were resized, in words (0 means: shrunk to four crops per short side)."""
    if scale == 0:
        return "images shrunk so their shorter side is four crops long"
    return "images at full resolution" if scale == 1 else f"images resized x{scale:g}"


def pc_readings(interpretation):
    """Which measured descriptor each of PC1 and PC2 follows most closely: a list of
    {pc, explained, descriptor, spearman}, computed before any sentence is written."""
    correlations = interpretation["correlations"]
    readings = []
    for pc in ("PC1", "PC2"):
        best = strongest(correlations[correlations["source"] == "measured"], pc)
        if best is not None:
            readings.append({"pc": pc, "explained": interpretation["explained_variance"][int(pc[-1]) - 1],
                             "descriptor": best["descriptor"], "spearman": best["spearman"]})
    return readings


def reproduce_report(table, confusions, interpretation, meta, out):
    """results.md of `microrep reproduce`: the side-by-side table, figures, PCA reading."""
    settings = flat_settings(meta["settings"])
    lines = ["# microrep: the paper, reproduced", "",
             "Sardeshmukh et al., *Towards better microstructure representations using deep "
             "learning* (MRS Communications), redone by `microrep reproduce`.", "",
             f"Data: {settings['data']} ({meta['images']} micrographs); backend "
             f"{meta['backend']}; microrep {meta['microrep_version']}; {meta['seconds']:.0f} s.",
             f"Settings: {settings['input_size']}x{settings['input_size']} crops, first "
             f"{settings['vgg_blocks']} VGG16 blocks ("
             f"{'fine-tuned in every fold' if settings['train_base'] else 'frozen; only the head trained, on features computed once'}), "
             f"weights `{settings['weights']}`, {image_scale_words(settings['image_scale'])}; "
             f"each micrograph seen as {meta.get('view', 'tiles')}; "
             f"{settings['epochs']} epochs x {settings['pairs_per_epoch']} pairs per fold, "
             f"{settings['similarity']} similarity, margin {settings['margin']}; "
             f"{settings['folds']}-fold CV ({settings['processing_folds']}-fold for processing "
             "conditions).", ""]
    if is_random_weights(settings["weights"]):
        lines += ["**The VGG16 weights were random (`--weights none`)**: the baseline is then a "
                  "random-feature baseline, not DeCost et al.'s ImageNet features.", ""]
    if settings.get("quick"):
        lines += ["**`--quick`: a smoke run, not the paper's protocol.** Its images are shrunk and "
                  "its crops small, so its figures are not comparable with the papers'; run "
                  "without `--quick` for those.", ""]
    lines += ["## Accuracy (linear SVM; mean ± std over folds)", "",
              "| task | folds over | PCA | paper: Siamese | paper: DeCost et al. | pretrained VGG16 "
              "| DeCost et al.'s VLAD, block4 | VLAD, block5 | Siamese (ours) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for row in table.itertuples():
        cells = [_pct(getattr(row, f"{m}_mean"), getattr(row, f"{m}_std"))
                 for m in ("pretrained", "vlad_block4", "vlad_block5", "siamese")]
        lines.append(f"| {TASK_NAMES.get(row.task, row.task)} ({row.classes} classes) | "
                     f"{FOLD_UNITS.get(row.cv, row.cv)} | {row.pca or '—'} | "
                     f"{_pct(row.paper_siamese)} | {_pct(row.paper_decost)} | {' | '.join(cells)} |")
    baseline = ("ImageNet VGG16" if not is_random_weights(settings["weights"]) else
                "a randomly initialised VGG16")
    lines += ["", "*folds over crops*: DeCost et al.'s way (their code): four crops from the "
              f"centre of each micrograph ({settings['input_size']} px), each a sample, so "
              "crops of one micrograph sit on both "
              "sides; the Siamese model is not scored this way. *micrographs*: stratified folds "
              "over whole micrographs (micrographs of one sample can sit on both sides). "
              "*samples*: no sample on both sides of a split, the honest estimate. The papers' "
              "figures are shown on every row: DeCost et al. split crops, the Siamese paper does "
              f"not say. *pretrained*: {baseline}'s block4_conv3 maps mean-pooled "
              "(microrep's `embed --pretrained`; on crop rows, each crop's); *VLAD*: DeCost et al.'s encoding of the four "
              "crops' local features (32-word dictionary fitted on a 10 % subsample of every "
              "image's features, as their code did). Every Siamese model was trained on its "
              "training fold only.", ""]
    for note in meta["notes"] + meta.get("dataset_notes", []):
        lines.append(f"- {note}")
    lines += heldout_lines(meta.get("heldout") or [], settings)
    lines += ["", "## Confusion matrices (Siamese, summed over test folds)", ""]
    lines += [f"![{name}]({path})" for name, path in confusions.items()]
    lines += ["", "## What the principal components mean", "",
              "The paper reads PC1 as particle morphology (spherical to needle-like) and PC2 as "
              "isotropy. Spearman correlation of each PC with descriptors measured from the "
              "images (and, on synthetic data, with the generator's ground truth):", "",
              "| source | descriptor | PC1 | PC2 |", "|---|---|---|---|"]
    correlations = interpretation["correlations"]
    for (source, descriptor), part in correlations.groupby(["source", "descriptor"], sort=False):
        by_pc = part.set_index("pc")["spearman"]
        lines.append(f"| {source} | {descriptor} | {by_pc.get('PC1', float('nan')):+.2f} | "
                     f"{by_pc.get('PC2', float('nan')):+.2f} |")
    lines.append("")
    for reading in pc_readings(interpretation):
        lines.append(f"- {reading['pc']} (explains {reading['explained']:.0%} of the variance) "
                     f"follows **{reading['descriptor']}** most closely (ρ = {reading['spearman']:+.2f}).")
    figures = interpretation["figures"]
    lines += ["", f"![classes on PC1/PC2]({figures['pca_classes']})",
              f"![descriptors on PC1/PC2]({figures['pc_descriptors']})",
              f"![extremes]({figures['pc_extremes']})", "",
              "Per-fold predictions are in `folds/`, the table in `results.csv`, correlations in "
              "`pc_correlations.csv`."]
    return "\n".join(lines) + "\n"
