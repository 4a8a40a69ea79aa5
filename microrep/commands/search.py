"""`microrep search`: which micrographs of an embedded archive look like these?

The index is a folder written by `microrep embed` (searched part by part from
memory maps, never concatenated in RAM) or by `microrep index`; queries are
image files or folders, embedded with the same model and tiling as the index
(embed.json records both), or rows of the index.
Prints the answer (each query, then its neighbours' rank, distance, label and path); with
--out also writes neighbours.csv (query, rank, path, distance, the index's metadata) and
neighbours.png (each query's thumbnail, then its nearest with distance and label).
"""

import os
from pathlib import Path

import numpy as np
import pandas as pd

from microrep.analysis.neighbours import resolve_backend
from microrep.analysis.plots import plot_neighbours
from microrep.config import EmbedConfig, ModelConfig, from_dict
from microrep.config.stages import ViewConfig
from microrep.data.folders import image_files
from microrep.data.images import read_image
from microrep.data.tasks import with_processing
from microrep.embedding.archive import (TABLE, archive_info, is_archive, open_archive,
                                        refuse_other_model)
from microrep.embedding.archive_search import search_parts
from microrep.embedding.index import is_index, open_index, search_index
from microrep.embedding.tiles import embed_images
from microrep.errors import ConfigError, DataError
from microrep.training.embedder import cached_embedder, embedding_tower, embedding_view, frozen_run
from microrep.config.stages import is_random_weights
from microrep.fileio import refuse_earlier_output, write_text

#: Queries drawn in neighbours.png (all of them are in neighbours.csv).
MAX_DRAWN = 12


def read_index(folder):
    """(vectors or faiss index, table with paths on disk, embed.json) of an embedded archive,
    or of a `microrep index` folder (its faiss index memory-mapped, its archive's table)."""
    if is_index(folder):
        index, index_info = open_index(folder)
        folder = index_info["archive"]
        archive = open_archive(folder)
        if len(archive) != index.ntotal:
            raise DataError(f"the index holds {index.ntotal} vectors but its archive {folder} "
                            f"{len(archive)}: the archive changed; run `microrep index` again")
        embeddings = IndexedArchive(index, archive)
    else:  # an archive, its rows read on demand from memory maps
        embeddings = archive = open_archive(folder)
    info = {**archive_info(folder), "folder": str(folder)}  # (its pooling's state lives there)
    table = with_processing(archive.table)
    return embeddings, table.assign(path=absolute_paths(table["path"], info)), info


class IndexedArchive:
    """A faiss index standing where the vectors would: its size and dimension, and the
    archive rows' vectors when queries are rows (read from the parts, not the index)."""

    def __init__(self, index, archive):
        self.index, self.archive = index, archive
        self.shape = archive.shape

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, rows):
        return self.archive[rows]


def absolute_paths(paths, info):
    """Index paths as files on disk: folder datasets record them relative to their folder."""
    base = Path(info.get("data_dir") or ".")
    if base.suffix.lower() == ".csv":  # a CSV's paths are relative to the CSV
        base = base.parent
    return [str(p) if Path(p).is_absolute() else str(base / p) for p in paths.astype(str)]


def listed_queries(path):
    """(paths, labels) named by a list file: a CSV with a path column (label optional,
    paths relative to the CSV), or a text file of one path per line (names may hold spaces)."""
    if path.suffix.lower() == ".csv":
        table = pd.read_csv(path, dtype=str, keep_default_na=False,
                            encoding_errors="surrogateescape")
        if "path" not in table:
            raise DataError(f"query list {path} has no path column")
        labels = table["label"].tolist() if "label" in table else [""] * len(table)
        paths = table["path"].tolist()
    else:
        paths = [line.strip() for line in path.read_text(errors="surrogateescape").splitlines()
                 if line.strip()]
        labels = [""] * len(paths)
    return [p if Path(p).is_absolute() else path.parent / p for p in map(str, paths)], labels


def query_sources(paths):
    """(image files with their labels, archive folders) named by --query: image files, folders
    of images, list files (.csv / .txt) and embeddings folders (their vectors are the queries)."""
    files, labels, archives = [], [], []
    for text in [p.strip() for p in paths.split(",") if p.strip()]:
        path = Path(text)
        if is_archive(path):
            archives.append(path)
        elif path.is_dir():
            found = image_files(path)
            if not found:
                raise DataError(f"query folder {path} holds no images")
            files += found
            labels += [""] * len(found)
        elif path.is_file() and path.suffix.lower() in (".csv", ".txt"):
            listed, listed_labels = listed_queries(path)
            files += listed
            labels += listed_labels
        elif path.is_file():
            files.append(path)
            labels.append("")
        else:
            raise DataError(f"query {path} not found")
    if not files and not archives:
        raise DataError(f"--query {paths} names no micrographs (an empty list or folder)")
    missing = [str(f) for f in files if not Path(f).is_file()]
    if missing:
        raise DataError(f"query {missing[0]} not found" + (f" (and {len(missing) - 1} more)"
                                                         if len(missing) > 1 else ""))
    return files, labels, archives


class ImageFiles:
    """Query images decoded when their batch is embedded (by reader threads), not all first."""

    def __init__(self, files):
        self.files = list(files)

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        return read_image(self.files[index])


def index_model(info, folder):
    """The EmbedConfig that rebuilds the index's model from its embed.json."""
    if "pretrained" not in info:
        raise DataError(f"{folder}/embed.json does not say which model embedded the index; "
                        "re-embed it with `microrep embed`, or query with --query-rows")
    if info["pretrained"] and is_random_weights(info["weights"]):
        raise DataError(f"{folder} was embedded with random VGG16 weights (--weights none), "
                        "which cannot be rebuilt to embed queries; use --query-rows, or embed "
                        "the archive with --weights imagenet or a weights file")
    if info.get("embedder"):  # what `microrep embed` recorded: its own settings, round-tripped
        embedder = info["embedder"]
        model = from_dict(ModelConfig, embedder["model"]) if embedder["model"] else ModelConfig()
        return EmbedConfig(pretrained=embedder["pretrained"], model=model,
                           image_view=recorded_view(embedder),
                           model_path=embedder["model_path"] or EmbedConfig().model_path,
                           recipe_input=embedder["recipe_input"])
    if info["pretrained"]:  # an archive embedded before embed.json held its settings
        model = ModelConfig(weights=info["weights"], input_size=info["input_size"],
                            vgg_blocks=info["vgg_blocks"], feature_layers=info["feature_layers"],
                            pooling=info.get("pooling", "mean"),
                            mixed_precision=info.get("mixed_precision", False), train_base=False)
        return EmbedConfig(pretrained=True, model=model, image_view=recorded_view(info))
    return EmbedConfig(model_path=info["model_path"], image_view=recorded_view(info))


def recorded_view(record):
    """The ViewConfig an archive was embedded with (an archive from before views: its tiling)."""
    if isinstance(record.get("view"), dict):
        return from_dict(ViewConfig, record["view"], "embed.json view")
    return ViewConfig(view="tiles", grid=int(record.get("grid", 3)))


def embed_queries(config, info, dim, log=print):
    """(query embeddings, query table) of --query: image files embedded with the index's model
    (a frozen-base run's feature cache serves the images it holds), and the vectors of any
    embeddings folder named, which must come from the same model."""
    files, labels, archives = query_sources(config.query)
    vectors, tables = [], []
    if files:
        model = index_model(info, config.index)
        tower = embedding_tower(model, info.get("folder"))
        if int(tower.output_shape[-1]) != dim:  # before any image is read
            raise DataError(f"the model recorded in {config.index}/embed.json makes "
                            f"{int(tower.output_shape[-1])}-d vectors but the index holds {dim}-d "
                            "ones: it is not the one that made the index (re-embed the archive)")
        view = embedding_view(model, tower)
        run = frozen_run(model)
        images = ImageFiles(files)
        if run is not None:
            vectors.append(np.concatenate([v for _, v in cached_embedder(tower, run, view, log)(images)]))
        else:
            vectors.append(embed_images(tower, images, view, progress=True))
        tables.append(pd.DataFrame({"query": [str(p) for p in files], "query_label": labels}))
    for folder in archives:
        archive = open_archive(folder)
        refuse_other_model((config.index, info, dim), (folder, archive_info(folder), archive.dim),
                           "searching one archive with another")
        vectors.append(archive.vectors())
        table = archive.table
        tables.append(pd.DataFrame({"query": table["path"].astype(str).to_numpy(),
                                    "query_label": (table["label"].fillna("").astype(str).to_numpy()
                                                    if "label" in table else "")}))
    return np.concatenate(vectors), pd.concat(tables, ignore_index=True)


def parse_rows(text, size):
    try:
        rows = [int(r) for r in text.split(",") if r.strip()]
    except ValueError:
        raise ConfigError(f"--query-rows takes comma-separated row numbers, got {text!r}") from None
    bad = [r for r in rows if not 0 <= r < size]
    if bad:
        raise ConfigError(f"--query-rows {bad[0]} is outside the index's rows 0..{size - 1}")
    return np.asarray(rows)


def run_search(config, log=print):
    """The search stage of a SearchConfig; returns the neighbours table it wrote."""
    if bool(config.query) == bool(config.query_rows):
        raise ConfigError("give either --query (image files or folders) or --query-rows")
    if config.out:
        refuse_earlier_output(Path(config.out) / "neighbours.csv", "a search", config.overwrite)
    index, table, info = read_index(config.index)
    groups = table["group"].astype(str).to_numpy() if "group" in table else None
    if config.exclude_same_group and groups is None:
        raise DataError(f"{config.index}/{TABLE} has no group column to exclude by")
    rows = None
    if config.query_rows:
        rows = parse_rows(config.query_rows, len(index))
        queries = np.asarray(index[rows])
        query_table = pd.DataFrame({"query": table["path"].iloc[rows].to_numpy(),
                                    "query_label": (table["label"].iloc[rows].to_numpy()
                                                    if "label" in table else "")})
        query_groups = groups[rows] if config.exclude_same_group else None
    else:
        queries, query_table = embed_queries(config, info, index.shape[1], log)
        query_groups = None  # outside images belong to no sample of the index
    candidates = len(index) - (1 if rows is not None else 0)
    if config.k > candidates:
        raise ConfigError(f"--k {config.k} is more than the {candidates} micrographs the index "
                          "can offer; lower --k")
    if isinstance(index, IndexedArchive):
        backend = "faiss index"
        distances, neighbours = search_index(index.index, queries, config.k, groups,
                                             query_groups, rows)
    else:
        backend = resolve_backend(config.backend, len(index))
        distances, neighbours = search_parts(index, queries, config.k, groups,
                                             query_groups, rows, backend)
        backend += ", part by part"
    result = neighbour_table(query_table, table, distances, neighbours)
    log(f"{len(query_table)} quer{'y' if len(query_table) == 1 else 'ies'}, {config.k} nearest "
        f"of {len(index)} ({backend} search)")
    ranked = ranked_conditions(result) if config.conditions else None
    for line in (condition_lines(ranked) if ranked is not None else answer_lines(result)):
        log(line)
    if ranked is not None and config.out:
        write_text(Path(config.out) / "conditions.csv", ranked.to_csv(index=False))
    if config.out:
        write_text(Path(config.out) / "neighbours.csv", result.to_csv(index=False))
        plot_neighbours(result, Path(config.out) / "neighbours.png", MAX_DRAWN)
        drawn = min(MAX_DRAWN, len(query_table))
        log(f"neighbours.csv (every query) and neighbours.png (the first {drawn} of "
            f"{len(query_table)} queries) in {config.out}")
    return result


def ranked_conditions(result):
    """Each query's neighbours grouped by processing condition, ranked by how many of the k
    neighbours have it, then by their mean distance: (query, rank, processing, neighbours,
    mean_distance, nearest_distance)."""
    if "processing" not in result or result["processing"].astype(str).eq("").all():
        raise DataError("the index's micrographs carry no processing (anneal_temperature, "
                        "anneal_time and cool_method columns), so --conditions has nothing to rank")
    known = result[result["processing"].astype(str) != ""]
    ranked = (known.groupby(["query", "processing"], sort=False)["distance"]
              .agg(neighbours="size", mean_distance="mean", nearest_distance="min").reset_index()
              .sort_values(["query", "neighbours", "mean_distance"], ascending=[True, False, True],
                           kind="stable"))
    order = {query: i for i, query in enumerate(dict.fromkeys(result["query"]))}
    ranked = ranked.sort_values("query", key=lambda q: q.map(order), kind="stable")
    ranked.insert(1, "rank", ranked.groupby("query", sort=False).cumcount() + 1)
    return ranked.reset_index(drop=True)


def condition_lines(ranked):
    lines = []
    for query, found in ranked.groupby("query", sort=False):
        lines.append(f"{printable(query)}: processing of its nearest micrographs")
        for row in found.itertuples():
            lines.append(f"  {row.rank:>2}. {row.processing}: {row.neighbours} of them, mean "
                         f"distance {row.mean_distance:.4f} (nearest {row.nearest_distance:.4f})")
    return lines


def printable(path):
    """A path as a terminal can show it: a name that is not UTF-8 (kept as surrogate escapes
    so the file still opens) is shown with its odd bytes as backslash escapes."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def answer_lines(result):
    """The answer as text: each query (and its label), then rank, distance, label, path."""
    lines = []
    for query, found in result.groupby("query", sort=False):
        label = found["query_label"].iloc[0]
        lines.append(printable(query) + (f" [{label}]" if str(label) not in ("", "nan") else ""))
        for hit in found.itertuples():
            hit_label = getattr(hit, "label", "")
            lines.append(f"  {hit.rank:>3}  {hit.distance:.4f}  "
                         + (f"{hit_label}  " if str(hit_label) not in ("", "nan") else "")
                         + printable(hit.path))
    return lines


def neighbour_table(query_table, table, distances, neighbours):
    """One row per (query, rank): the query, the neighbour's distance and its metadata row."""
    records = []
    for q, (query, query_label) in enumerate(zip(query_table["query"], query_table["query_label"])):
        for rank, (distance, row) in enumerate(zip(distances[q], neighbours[q]), start=1):
            if row < 0:
                break
            records.append({"query": query, "query_label": query_label, "rank": rank,
                            "distance": float(distance), "row": int(row),
                            **table.iloc[int(row)].to_dict()})
    return pd.DataFrame(records)
