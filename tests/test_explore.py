"""`microrep explore`: the offline explorer in a real headless browser, and TensorBoard's files."""


import numpy as np
import pandas as pd
import pytest
from PIL import Image

from microrep.cli import main
from microrep.embedding.archive import read_embeddings, write_embeddings

from conftest import chrome


def archive(root, count, size=64, seed=0):
    """`count` micrographs in three classes, with embeddings as `microrep embed` writes them."""
    from microrep.data.synthetic import CONDITIONS, generate_micrograph

    rng = np.random.default_rng(seed)
    classes = ("spheroidite", "pearlite", "network")
    rows = []
    for i in range(count):
        name = classes[i % 3]
        image, _ = generate_micrograph(rng, name, CONDITIONS[name][i % len(CONDITIONS[name])], size)
        path = root / "images" / f"{name}_{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
        rows.append({"path": str(path), "label": name, "group": f"sample-{i % 6}",
                     "anneal_time": float(i)})
    centres = rng.normal(size=(3, 16)) * 3
    embeddings = np.stack([centres[i % 3] + rng.normal(size=16) for i in range(count)])
    write_embeddings(root / "emb", embeddings.astype(np.float32), pd.DataFrame(rows),
                     {"pretrained": True, "weights": "imagenet", "grid": 3})
    return root / "emb"


def test_projector_files_read_back_with_tensorboards_own_parser(tmp_path):
    from google.protobuf import text_format
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    folder = archive(tmp_path, 12)
    assert main(["explore", str(folder), "--out", str(tmp_path / "map.html"),
                 "--tensorboard", str(tmp_path / "tb")]) == 0
    config = text_format.Parse((tmp_path / "tb" / "projector_config.pbtxt").read_text(),
                               ProjectorConfig())
    embedding = config.embeddings[0]
    tensor = np.loadtxt(tmp_path / "tb" / embedding.tensor_path, delimiter="\t")
    metadata = pd.read_csv(tmp_path / "tb" / embedding.metadata_path, sep="\t")
    assert tensor.shape == (12, 16) and len(metadata) == 12 and "label" in metadata
    sprite = Image.open(tmp_path / "tb" / embedding.sprite.image_path)
    side = embedding.sprite.single_image_dim[0]
    assert sprite.size == (4 * side, 4 * side)  # a 4x4 grid holds 12 thumbnails


#: Every element matching a CSS selector, inside Bokeh's shadow roots too.
DEEP_QUERY = """
const selector = arguments[0], found = [];
(function walk(root) {
  for (const el of root.querySelectorAll('*')) {
    if (el.matches(selector)) found.push(el);
    if (el.shadowRoot) walk(el.shadowRoot);
  }
})(document);
return found.filter(el => el.offsetWidth > 0).length;
"""

#: Viewport pixel of point i: the plot view's scales applied to its data coordinates.
POINT_PIXEL = """
const doc = window.Bokeh && Bokeh.documents[0];
const plot = doc && doc.get_model_by_name('map');
function find(view) {
  if (view.model === plot) return view;
  for (const child of (view.child_views || [])) { const hit = find(child); if (hit) return hit; }
  return null;
}
if (!window.Bokeh || !Bokeh.documents.length || !Bokeh.index) return null;
const roots = typeof Bokeh.index.values === 'function' ? [...Bokeh.index.values()]
                                                       : Object.values(Bokeh.index);
let view = null;
for (const root of roots) { view = find(root); if (view) break; }
if (!view) return null;
const data = doc.get_model_by_name('points_source').data, i = arguments[0];
const rect = view.canvas_view.el.getBoundingClientRect();
return [rect.left + view.frame.x_scale.compute(data.x[i]),
        rect.top + view.frame.y_scale.compute(data.y[i])];
"""


@pytest.mark.slow
def test_explorer_works_offline_in_a_real_browser(tmp_path):
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.support.ui import WebDriverWait

    folder = archive(tmp_path, 30)
    page = tmp_path / "explorer.html"
    assert main(["explore", str(folder), "--out", str(page), "--neighbours", "5"]) == 0
    assert main(["explore", str(folder), "--out", str(page)]) == 2, "an earlier page is kept"
    assert main(["explore", str(folder), "--out", str(page), "--neighbours", "5",
                 "--overwrite"]) == 0
    driver = chrome(tmp_path)
    try:
        driver.get(page.as_uri())
        wait = WebDriverWait(driver, 60)
        x, y = wait.until(lambda d: d.execute_script(POINT_PIXEL, 7))  # the map is drawn
        assert driver.execute_script(
            "return Bokeh.documents[0].get_model_by_name('points_source').data.x.length") == 30

        def pointer(click=False):
            actions = ActionBuilder(driver)
            actions.pointer_action.move_to_location(int(round(x)), int(round(y)))
            if click:
                actions.pointer_action.click()
            actions.perform()

        pointer()  # hover: the card shows the micrograph's thumbnail
        wait.until(lambda d: d.execute_script(DEEP_QUERY, "img[src^='data:image/jpeg']") >= 1)
        pointer(click=True)  # click: its nearest neighbours' thumbnails
        wait.until(lambda d: d.execute_script(DEEP_QUERY, "img.microrep-neighbour") == 5)
        assert driver.execute_script(
            "return Bokeh.documents[0].get_model_by_name('points_source').selected.indices") == [7]
        legend_before = driver.execute_script(
            "return Bokeh.documents[0].get_model_by_name('legend').text")
        driver.execute_script("""const s = Bokeh.documents[0].get_model_by_name('colour');
                                 s.value = 'anneal_time';""")  # colour by another column
        wait.until(lambda d: d.execute_script(
            "const d = Bokeh.documents[0].get_model_by_name('points_source').data;"
            "return d._colour[0] === d._colour_anneal_time[0] && d._colour[29] === d._colour_anneal_time[29]"))
        legend_after = driver.execute_script("return Bokeh.documents[0].get_model_by_name('legend').text")
        assert legend_before and legend_after and legend_after != legend_before, "the legend follows"
        driver.save_screenshot(str(tmp_path / "explorer.png"))
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        driver.quit()
    assert (tmp_path / "explorer.png").stat().st_size > 10_000


@pytest.mark.slow
def test_two_thousand_micrographs_make_a_page_under_15_mb(tmp_path):
    folder = archive(tmp_path, 2000, size=128)
    assert main(["explore", str(folder), "--out", str(tmp_path / "big.html")]) == 0
    size = (tmp_path / "big.html").stat().st_size
    assert size < 15e6, f"{size / 1e6:.1f} MB"


def test_metadata_with_gaps_and_mixed_types_still_colours(tmp_path):
    from microrep.commands.explore import colour_columns

    table = pd.DataFrame({"path": ["a", "b", "c", "d"], "label": ["x", "y", "x", "y"],
                          "cool": pd.array(["Q", None, "FC", "Q"], dtype="string"),
                          "time": [1.0, np.nan, 3.0, 1.0]})
    colours, legends = colour_columns(table)
    assert set(colours) == {"label", "cool", "time"} and len(colours["cool"]) == 4
    assert colours["cool"][0] == colours["cool"][3] != colours["cool"][1]
    assert set(legends) == set(colours) and "(none)" in legends["cool"] and colours["cool"][1] in legends["cool"]


def test_an_archive_and_a_new_batch_share_one_map_and_other_models_are_refused(tmp_path, capsys):
    import json

    from microrep.commands.explore import read_folders

    archive_folder = archive(tmp_path / "archive", 9)
    batch = archive(tmp_path / "batch", 6)
    embeddings, table, total = read_folders([str(archive_folder), str(batch)])
    assert embeddings.shape == (15, 16) and len(table) == 15 == total
    assert list(table["folder"].unique()) == [str(archive_folder), str(batch)]
    sample, sampled, total = read_folders([str(archive_folder), str(batch)], max_points=7, seed=3)
    assert len(sample) == len(sampled) == 7 and total == 15
    where = {path: row for row, path in enumerate(table["path"])}  # each sampled row is its own
    np.testing.assert_array_equal(sample, embeddings[[where[path] for path in sampled["path"]]])
    assert main(["explore", str(archive_folder), str(batch), "--max-points", "7",
                 "--out", str(tmp_path / "sample.html")]) == 0
    assert "the map shows a random 7 of them" in capsys.readouterr().out
    assert main(["explore", str(archive_folder), str(batch), "--out", str(tmp_path / "both.html")]) == 0
    other = archive(tmp_path / "other", 6)
    vectors, table = read_embeddings(other)
    info = json.loads((other / "embed.json").read_text())
    write_embeddings(other, vectors, table,  # an archive's own table is listed anew
                     {"pretrained": True, "weights": "none", "grid": info["grid"]})
    capsys.readouterr()
    assert main(["explore", str(archive_folder), str(other), "--out", str(tmp_path / "x.html")]) == 2
    assert "another model" in capsys.readouterr().err


def test_tsne_and_umap_maps(tmp_path, capsys):
    """t-SNE draws a map whose near points are the embeddings' near points; UMAP draws one
    where umap-learn is installed and is refused in one line naming it where it is not."""
    import importlib.util

    from microrep.commands.explore import project

    folder = archive(tmp_path, 12)
    vectors = read_embeddings(folder)[0]
    xy = project(vectors, "tsne", seed=0)
    assert xy.shape == (12, 2) and np.isfinite(xy).all()
    classes = np.arange(12) % 3  # the archive's three clusters
    nearest = np.linalg.norm(xy[:, None] - xy[None], axis=-1) + np.eye(12) * 1e9
    assert (classes[nearest.argmin(axis=1)] == classes).mean() >= 0.9
    assert main(["explore", str(folder), "--projection", "tsne",
                 "--out", str(tmp_path / "tsne.html")]) == 0
    capsys.readouterr()
    code = main(["explore", str(folder), "--projection", "umap", "--out", str(tmp_path / "u.html")])
    if importlib.util.find_spec("umap") is None:
        assert code == 2 and "pip install umap-learn" in capsys.readouterr().err
    else:
        assert code == 0 and (tmp_path / "u.html").is_file()
