"""Exact nearest neighbours in an archive of parts, one part in memory at a time.

Why: `search` on an embeddings folder (no `microrep index` built) must answer
for an archive of any size without concatenating its parts in RAM. Each part's
usable vectors are searched on their own (the query's own row and sample
skipped there), and the parts' best are merged: a part's k best after skipping
hold every one of its rows among the archive's k best, so the merge is the
exact answer the whole matrix would give (tests/test_index.py checks it).
"""

import numpy as np

from microrep.analysis.neighbours import NeighbourSearch


def search_parts(archive, queries, k, index_groups=None, query_groups=None, query_rows=None,
                 backend="exact"):
    """(distances, rows), each (n_queries, k), over a PartsArchive's usable rows.

    Arguments as `NeighbourSearch.query`; rows are positions in `archive.table`.
    Missing neighbours are -1 / inf.
    """
    queries = np.asarray(queries, np.float32)
    best_d = np.full((len(queries), k), np.inf)
    best_r = np.full((len(queries), k), -1, np.int64)
    offset = 0
    for _, embeddings, rows in archive.parts():
        span = slice(offset, offset + len(rows))
        if len(rows):
            local_rows = None if query_rows is None else np.asarray(query_rows) - offset
            groups = None if index_groups is None else np.asarray(index_groups)[span]
            search = NeighbourSearch(backend).fit(np.asarray(embeddings[rows], np.float32))
            distances, found = search.query(queries, min(k, len(rows)), groups, query_groups,
                                            local_rows)
            best_d, best_r = _merge(best_d, best_r, distances, np.where(found >= 0, found + offset, -1), k)
        offset += len(rows)
    return best_d, best_r


def _merge(best_d, best_r, distances, rows, k):
    """The k nearest of two candidate lists per query (ties keep the earlier part first)."""
    all_d, all_r = np.concatenate([best_d, distances], 1), np.concatenate([best_r, rows], 1)
    order = np.argsort(all_d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(all_d, order, 1), np.take_along_axis(all_r, order, 1)
