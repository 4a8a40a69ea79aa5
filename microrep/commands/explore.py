"""`microrep explore`: see how an embedded archive is organised, offline, in a browser.

Writes one self-contained HTML file (Bokeh with inline resources: no network,
no server): a 2-D map of the embeddings (PCA, or t-SNE / UMAP), points coloured
by any metadata column chosen in the page, a hover card with the micrograph's
thumbnail and metadata, and, on click, the thumbnails of its nearest
neighbours in the embedding (computed here, in the embedding's own distance).
With `--tensorboard DIR` it also writes TensorBoard's projector files.
"""

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from microrep.analysis.neighbours import NeighbourSearch
from microrep.analysis.svm import pca_projection
from microrep.data.images import read_image
from microrep.errors import ConfigError
from microrep.fileio import atomic_path, refuse_earlier_output, write_text
from microrep.commands.search import read_index
from microrep.data.tasks import with_processing
from microrep.embedding.archive import refuse_other_model
from microrep.embedding.tiles import default_read_workers

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
#: Metadata columns never offered for colouring (paths and row ids tell nothing apart).
NOT_COLOURS = {"path", "row"}


def project(embeddings, method="pca", seed=0):
    """(n, 2) map of the embeddings: PCA of standardised features, or t-SNE / UMAP."""
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if method == "pca":
        scores = pca_projection(embeddings, 2)[0]
        return scores if scores.shape[1] == 2 else np.c_[scores, np.zeros(len(scores))]
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = max(2.0, min(30.0, (len(embeddings) - 1) / 3))
        return TSNE(2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(embeddings)
    if method == "umap":
        try:
            import umap
        except ImportError:
            raise ConfigError("--projection umap needs umap-learn: pip install umap-learn") from None
        return umap.UMAP(random_state=seed).fit_transform(embeddings)
    raise ConfigError(f"--projection must be pca, tsne or umap, got {method!r}")


def thumbnail(path, size=96):
    """The micrograph shrunk to fit size x size (decoded once for the page and the sprite)."""
    try:
        image = Image.fromarray(read_image(path))
    except Exception:  # a moved archive: a grey square, and the page still works
        image = Image.new("L", (size, size), 128)
    image.thumbnail((size, size))
    return image


def data_uri(image, quality=80):
    """A small image as a JPEG data: URI (inlined, so the page needs no files)."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def colour_columns(table):
    """({column: colours per row}, {column: legend HTML}): categories get the palette (cycled),
    numbers a grey-blue ramp from low to high."""
    columns, legends = {}, {}
    for name in table.columns:
        if name in NOT_COLOURS or name.startswith("_"):
            continue
        values = table[name]
        if values.nunique(dropna=False) <= 1:
            continue
        if pd.api.types.is_numeric_dtype(values) and values.nunique() > 12:
            low, high = float(values.min()), float(values.max())
            share = ((values.fillna(low) - low) / (high - low or 1.0)).to_numpy()
            columns[name] = [ramp(s) for s in share]
            legends[name] = (f"{_swatch(ramp(0.0))} {low:g} &rarr; {_swatch(ramp(0.5))} &rarr; "
                             f"{_swatch(ramp(1.0))} {high:g}")
        else:
            text = [("(none)" if pd.isna(v) else str(v)) for v in values]  # NaN is a category too
            order = {v: i for i, v in enumerate(sorted(set(text)))}
            columns[name] = [PALETTE[order[v] % len(PALETTE)] for v in text]
            legends[name] = " ".join(f"<span style='white-space:nowrap'>{_swatch(PALETTE[i % len(PALETTE)])} "
                                     f"{html.escape(v)}</span>" for v, i in order.items())
    return columns, legends


def ramp(share):
    return f"#{int(40 + 180 * share):02x}{int(80 + 100 * share):02x}{int(200 - 150 * share):02x}"


def _swatch(colour):
    return (f"<span style='display:inline-block;width:11px;height:11px;background:{colour};"
            "border:1px solid #888'></span>")


HOVER = """
<div style="width:200px">
  <img src="@_thumb" width="96" height="96" style="float:left;margin:0 6px 4px 0">
  <div style="font-size:11px">@_card{safe}</div>
</div>
"""

ON_TAP = """
const chosen = source.selected.indices;
if (!chosen.length) { return; }
const i = chosen[0];
const data = source.data;
let html = '<b>nearest to ' + data['_name'][i] + '</b><br>';
for (const j of data['_neighbours'][i]) {
  html += '<figure style="display:inline-block;margin:2px;text-align:center">' +
          '<img class="microrep-neighbour" src="' + data['_thumb'][j] + '" width="96" height="96">' +
          '<figcaption style="font-size:10px">' + data['_name'][j] + '</figcaption></figure>';
}
panel.text = html;
"""

ON_COLOUR = """
const data = source.data;
data['_colour'] = data['_colour_' + select.value];
legend.text = legends[select.value];
source.change.emit();
"""


def build_page(table, xy, thumbs, neighbours, title):
    """The Bokeh layout: the map, the colour selector, the neighbours panel."""
    from bokeh.layouts import column
    from bokeh.models import ColumnDataSource, CustomJS, Div, HoverTool, Select
    from bokeh.plotting import figure

    colours, legends = colour_columns(table)
    default = "label" if "label" in colours else next(iter(colours), None)
    names = [Path(str(p)).name for p in table["path"]]
    cards = ["<br>".join(f"<b>{c}</b>: {table[c].iloc[i]}" for c in table.columns
                         if c not in NOT_COLOURS) for i in range(len(table))]
    data = {"x": xy[:, 0].tolist(), "y": xy[:, 1].tolist(), "_thumb": thumbs, "_name": names,
            "_card": cards, "_neighbours": [list(map(int, row)) for row in neighbours],
            "_colour": colours[default] if default else [PALETTE[0]] * len(table)}
    data.update({f"_colour_{name}": values for name, values in colours.items()})
    source = ColumnDataSource(data, name="points_source")
    plot = figure(title=title, width=760, height=560, tools="pan,wheel_zoom,box_zoom,reset,tap",
                  name="map", x_axis_label="1st axis", y_axis_label="2nd axis")
    plot.scatter("x", "y", source=source, size=9, color="_colour", line_color="white",
                 alpha=0.9, nonselection_alpha=0.45, selection_line_color="black", name="points")
    plot.add_tools(HoverTool(tooltips=HOVER, renderers=plot.select(name="points")))
    panel = Div(text="<i>click a point to see its nearest neighbours</i>", width=760,
                name="neighbours")
    select = Select(title="colour by", value=default or "", options=list(colours), name="colour")
    legend = Div(text=legends.get(default, ""), width=760, name="legend")
    select.js_on_change("value", CustomJS(args=dict(source=source, select=select, legend=legend,
                                                    legends=legends), code=ON_COLOUR))
    source.selected.js_on_change("indices", CustomJS(args=dict(source=source, panel=panel),
                                                     code=ON_TAP))
    return column(select, legend, plot, panel)


def read_folders(folders, max_points=None, seed=0):
    """(embeddings, table, how many rows the folders hold) of one or more embeddings folders,
    with a `folder` column when several; at most `max_points` rows, a seeded random sample.

    Only the sampled rows' vectors are read (an archive's parts are memory maps).
    Folders embedded by different models are refused: their distances would mean nothing.
    """
    parts = [read_index(folder) for folder in folders]
    for folder, (vectors, _, info) in zip(folders[1:], parts[1:]):
        refuse_other_model((folders[0], parts[0][2], parts[0][0].shape[1]),
                           (folder, info, vectors.shape[1]), "one map")
    names = [Path(folder).name for folder in folders]
    if len(set(names)) < len(names):  # e.g. two runs' `emb` folders: name them by their paths
        names = [str(Path(folder)) for folder in folders]
    tables = [table.assign(folder=name) if len(folders) > 1 else table
              for name, (_, table, _) in zip(names, parts)]
    total = sum(len(table) for table in tables)
    chosen = np.arange(total) if not max_points or total <= max_points else \
        np.sort(np.random.default_rng([seed, 5]).choice(total, max_points, replace=False))
    vectors, offset = [], 0
    for (folder_vectors, _, _), table in zip(parts, tables):
        mine = chosen[(chosen >= offset) & (chosen < offset + len(table))] - offset
        vectors.append(np.asarray(folder_vectors[mine], dtype=np.float32))
        offset += len(table)
    table = pd.concat(tables, ignore_index=True).iloc[chosen].reset_index(drop=True)
    return np.concatenate(vectors), with_processing(table), total


def write_explorer(config, log=print):
    """The explore stage of an ExploreConfig: explorer.html (and the projector files)."""
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    refuse_earlier_output(config.out, "an explorer page", config.overwrite)
    folders = [f.strip() for f in config.embeddings.split(",") if f.strip()]
    embeddings, table, total = read_folders(folders, config.max_points, config.seed)
    if len(table) < total:
        log(f"note: {total} micrographs; the map shows a random {len(table)} of them "
            "(--max-points, --seed)")
    xy = project(embeddings, config.projection, config.seed)
    k = min(config.neighbours, len(embeddings) - 1)
    _, neighbours = NeighbourSearch().fit(embeddings).query(
        embeddings, k, query_rows=np.arange(len(embeddings)))
    small = thumbnails(table["path"], config.thumbnail_size)
    thumbs = [data_uri(image) for image in small]
    title = f"{len(table)} micrographs of {', '.join(Path(f).resolve().name for f in folders)} " \
            f"({config.projection.upper()})"
    page = file_html(build_page(table, xy, thumbs, neighbours, title), INLINE, "microrep explorer")
    write_text(config.out, page)
    log(f"explorer of {len(table)} micrographs: {config.out} "
        f"({Path(config.out).stat().st_size / 1e6:.1f} MB, opens offline)")
    if config.tensorboard:
        write_projector(config.tensorboard, embeddings, table, small, config.thumbnail_size)
        log(f"TensorBoard projector files in {config.tensorboard} "
            f"(tensorboard --logdir {config.tensorboard})")


def thumbnails(paths, size):
    """Every row's thumbnail, decoded by reader threads (PNG and TIFF decoding release the
    GIL) under a progress bar: thousands of micrographs take a while, said as it goes."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    paths = list(paths)
    with ThreadPoolExecutor(default_read_workers(), thread_name_prefix="microrep-thumb") as pool:
        return list(tqdm(pool.map(lambda path: thumbnail(path, size), paths), total=len(paths),
                         desc="thumbnails", unit="image", disable=len(paths) < 200))


def write_projector(folder, embeddings, table, thumbnails, thumb=64):
    """TensorBoard projector files: tensor, metadata.tsv, sprite image, projector_config.pbtxt.

    Written directly: the Keras 3 TensorBoard callback does not export embeddings.
    `thumbnails` are the rows' images (PIL, e.g. the page's), tiled into the sprite.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "embeddings.tsv") as tmp:
        np.savetxt(tmp, embeddings, delimiter="\t", fmt="%.6g")
    columns = [c for c in table.columns if c != "row"]
    clean = table[columns].astype(str).apply(lambda col: col.str.replace(r"[\t\n]", " ", regex=True))
    write_text(folder / "metadata.tsv", clean.to_csv(sep="\t", index=False))
    side = int(np.ceil(np.sqrt(len(table))))
    thumb = min(thumb, 8192 // max(side, 1))  # TensorBoard's sprite is at most 8192 px wide
    sprite = Image.new("L", (side * thumb, side * thumb), 0)
    for i, image in enumerate(thumbnails):
        tile = image.convert("L").resize((thumb, thumb))
        sprite.paste(tile, ((i % side) * thumb, (i // side) * thumb))
    with atomic_path(folder / "sprite.png") as tmp:
        sprite.save(tmp, format="PNG")
    config = ("embeddings {\n  tensor_name: \"microrep\"\n  tensor_path: \"embeddings.tsv\"\n"
              "  metadata_path: \"metadata.tsv\"\n  sprite {\n    image_path: \"sprite.png\"\n"
              f"    single_image_dim: {thumb}\n    single_image_dim: {thumb}\n  }}\n}}\n")
    write_text(folder / "projector_config.pbtxt", config)
    write_text(folder / "microrep.json", json.dumps({"images": len(table), "thumb": thumb}))
