"""Markdown reports of a run, written for a reader rather than a parser."""


def _accuracy(summary):
    if not summary:
        return "n/a"
    return f"{summary['accuracy_mean']:.1%} ± {summary['accuracy_std']:.1%}"


def _export_lines(export):
    savedmodel = (f"- SavedModel (reload with `tf.saved_model.load`): `{export['savedmodel']}`"
                  if export.get("savedmodel") else f"- SavedModel not written: {export.get('note', '')}")
    return f"{savedmodel}\n- Keras file (reload with `keras.saving.load_model`): `{export['keras']}`"


def demo_report(metrics):
    """report.md of the demo: what ran, the accuracy table, figures, export."""
    settings = metrics["settings"]
    methods = metrics["methods"]
    learned = methods["learned embedding"]["stratified"]["accuracy_mean"]
    best_baseline = max(m["stratified"]["accuracy_mean"] for name, m in methods.items()
                        if name != "learned embedding")
    verdict = ("beats" if learned > best_baseline else "does NOT beat")
    rows = "\n".join(
        f"| {name} | {_accuracy(m['stratified'])} | {_accuracy(m['grouped'])} |"
        for name, m in methods.items())
    classes = ", ".join(f"{name} ({count})" for name, count in metrics["dataset"]["classes"].items())
    figures = metrics["figures"]
    weights = settings["weights"]
    weights_note = ("randomly initialised VGG16 (no pretrained weights)" if weights == "none"
                    else f"VGG16 initialised from `{weights}`")
    return f"""# microrep demo report

A Siamese network with a shared VGG16 tower was trained under contrastive loss on
pairs of synthetic SEM micrographs, then its embeddings were classified with a
linear SVM. Backend: {metrics['backend']}; microrep {metrics['microrep_version']};
{metrics['seconds']:.0f} s in all.

## Data
{metrics['dataset']['images']} synthetic micrographs ({settings['image_size']}x{settings['image_size']} px) from
{metrics['dataset']['samples']} samples: {classes}.

## Training
{weights_note}, first {settings['vgg_blocks']} of its 5 blocks; {settings['input_size']}x{settings['input_size']} crops, embedding size
{settings['embedding_dim']}, margin {settings['margin']}, {metrics['training']['epochs_completed']} epochs of
{settings['pairs_per_epoch']} balanced pairs, Adam at {settings['learning_rate']}. Final loss
{metrics['training']['final_loss']:.4f}, pair accuracy {metrics['training']['final_pair_accuracy']:.1%}.

![training curves]({figures['training']})

## Classification (SVM, {settings['folds']}-fold CV, the same folds for every method)

| features | image-level stratified CV | grouped by sample |
|---|---|---|
{rows}

The learned embedding **{verdict}** the best baseline ({learned:.1%} vs {best_baseline:.1%}).
"Untrained tower" is the same architecture with the same initial weights before
contrastive training; "raw pixels" is the image shrunk to 32x32, PCA to 50
dimensions. Grouped CV keeps every sample's micrographs on one side of each split.

![accuracy]({figures['accuracy']})
![confusion matrix]({figures['confusion']})

## PCA of the embeddings

![learned embedding]({figures['pca']})
![untrained tower]({figures['pca_untrained']})

## Export
{_export_lines(metrics['export'])}

Figures and numbers are in `metrics.json`.
"""
