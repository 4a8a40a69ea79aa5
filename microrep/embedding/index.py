"""A persistent faiss index of an embedded archive, built part by part, read as a memory map.

    INDEX/index.faiss   the faiss index (row i is row i of the archive's usable rows)
    INDEX/index.json    kind, settings, the archive it indexes, and recall@10 against
                        exact search on held-out queries, measured when it was built

Which kind (`kind_for`): exact (Flat) up to 200,000 vectors, where a query scans the
whole archive in about a millisecond on 2 cores; IVF-Flat up to 20 million (a query
scans only the `nprobe` nearest of about 4 sqrt(n) cells; vectors stay exact, 4 bytes
per dimension); IVF-PQ above (16-byte codes per vector, so 10^8 vectors fit in 1.6 GB).
`nprobe` is the smallest that reaches the recall asked for on the held-out queries.
"""

import time
from pathlib import Path

import numpy as np

from microrep.analysis.neighbours import first_allowed
from microrep.embedding.archive_search import search_parts
from microrep.embedding.archive import open_archive
from microrep.errors import ConfigError, DataError
from microrep.fileio import atomic_path, first_line, read_checked, read_json, write_json

INDEX_FILE = "index.faiss"
INDEX_INFO = "index.json"
EXACT_UP_TO = 200_000
IVF_FLAT_UP_TO = 20_000_000


def import_faiss():
    try:
        import faiss
    except ImportError:
        raise ConfigError("indexing needs faiss: pip install 'microrep[faiss]' (or faiss-cpu)") from None
    return faiss


def kind_for(rows):
    if rows <= EXACT_UP_TO:
        return "flat"
    return "ivf-flat" if rows <= IVF_FLAT_UP_TO else "ivf-pq"


def factory_string(kind, rows, dim):
    """faiss's description of the index: cells ~ 4 sqrt(n); PQ codes of 16 bytes (or dim)."""
    if kind == "flat":
        return "Flat", 0
    cells = int(min(max(4 * np.sqrt(rows), 16), 65536))
    if kind == "ivf-flat":
        return f"IVF{cells},Flat", cells
    subquantizers = 16 if dim % 16 == 0 else next(m for m in (8, 4, 2, 1) if dim % m == 0)
    return f"IVF{cells},PQ{subquantizers}x8", cells


def sample_rows(archive, count, seed):
    """`count` usable rows of the archive drawn at random (positions in archive.table), sorted."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(len(archive), size=min(count, len(archive)), replace=False))


def exact_neighbours(archive, queries, k):
    """The true k nearest rows of each query, by a flat scan of every part (merged)."""
    import_faiss()  # the flat scan is faiss's, as the index it measures
    return search_parts(archive, queries, k, backend="faiss")[1]


def recall_at(found, truth):
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def tune_nprobe(index, queries, truth, cells, target):
    """The smallest nprobe (1, 2, 4, ...) whose recall@10 reaches `target`: (nprobe, recall)."""
    nprobe = 1
    while True:
        index.nprobe = nprobe
        recall = recall_at(index.search(queries, truth.shape[1])[1], truth)
        if recall >= target or nprobe >= cells:
            return nprobe, recall
        nprobe = min(nprobe * 2, cells)


def build_index(archive_dir, out, kind="auto", target_recall=0.95, queries=1000, seed=0, log=print):
    """Build, tune, measure and write the index of archive `archive_dir` into `out`."""
    faiss = import_faiss()
    archive = open_archive(archive_dir)
    if len(archive) == 0:
        raise DataError(f"{archive_dir} holds no usable embeddings to index")
    kind = kind_for(len(archive)) if kind == "auto" else kind
    description, cells = factory_string(kind, len(archive), archive.dim)
    index = faiss.index_factory(archive.dim, description)
    started = time.perf_counter()
    if not index.is_trained:
        training = archive[sample_rows(archive, max(64 * cells, 10_000), seed)]
        log(f"training {description} on {len(training)} sampled vectors")
        index.train(training)
    for _, embeddings, rows in archive.parts():  # filled part by part: never the whole archive
        index.add(np.ascontiguousarray(embeddings[rows], np.float32))
    build_s = time.perf_counter() - started
    held_out = archive[sample_rows(archive, queries, seed + 1)]
    truth = exact_neighbours(archive, held_out, min(10, len(archive)))
    nprobe, recall = (tune_nprobe(index, held_out, truth, cells, target_recall) if cells
                      else (0, recall_at(index.search(held_out, truth.shape[1])[1], truth)))
    started = time.perf_counter()
    index.search(held_out, truth.shape[1])
    query_ms = 1000 * (time.perf_counter() - started) / len(held_out)
    out = Path(out)
    with atomic_path(out / INDEX_FILE) as tmp:
        faiss.write_index(index, str(tmp))
    info = {"kind": kind, "faiss": description, "rows": len(archive), "dim": archive.dim,
            "cells": cells, "nprobe": nprobe, "recall_at_10": round(recall, 4),
            "held_out_queries": len(held_out), "query_ms": round(query_ms, 3),
            "build_s": round(build_s, 2), "archive": str(Path(archive_dir).resolve()),
            "identity": archive.identity,
            "bytes": (out / INDEX_FILE).stat().st_size}
    write_json(out / INDEX_INFO, info)
    return info


def is_index(folder):
    return (Path(folder) / INDEX_INFO).is_file()


def open_index(folder):
    """(faiss index memory-mapped from disk with its nprobe set, index.json)."""
    faiss = import_faiss()
    advice = "build the index again (`microrep index ... --overwrite`)"
    info = read_checked(Path(folder) / INDEX_INFO, read_json, advice, ("archive", "nprobe"))
    try:
        index = faiss.read_index(str(Path(folder) / INDEX_FILE), faiss.IO_FLAG_MMAP)
    except RuntimeError as error:  # faiss says what it could not read, in C++ words
        raise DataError(f"{Path(folder) / INDEX_FILE} is damaged or missing "
                        f"({first_line(error)}); {advice}") from None
    if info["nprobe"]:
        faiss.extract_index_ivf(index).nprobe = info["nprobe"]
    return index, info


def search_index(index, queries, k, index_groups=None, query_groups=None, query_rows=None):
    """(distances, rows) of the k nearest per query from a faiss index, Euclidean.

    Skipping a query's own row, or every row of its own group (sample), is done by
    asking for more neighbours than k and filtering, asking again for more (up to the
    whole index) while a query still lacks k. Missing neighbours are -1 / inf.
    """
    queries = np.ascontiguousarray(queries, np.float32)
    ask = k + (1 if query_rows is not None else 0)
    ask *= 4 if query_groups is not None else 1
    while True:
        ask = min(ask, index.ntotal)
        squared, found = index.search(queries, ask)
        distances, rows, short = first_allowed(np.sqrt(np.maximum(squared, 0)), found, k,
                                               query_rows, index_groups, query_groups)
        if not short or ask >= index.ntotal:
            return distances.astype(np.float32), rows
        ask *= 4
