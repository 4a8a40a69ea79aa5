"""Nearest neighbours of query embeddings in an index of embeddings.

Exact search (scikit-learn, brute force in blocks) by default; faiss (an exact
flat L2 index) when installed and asked for, for large archives. Both return
the same neighbours; distances are Euclidean, the distance the Siamese model is
trained under. Queries may skip neighbours from their own sample (group), the
usual question being "which *other* micrographs look like this one".
"""

import numpy as np

from microrep.errors import ConfigError

def faiss_available():
    import importlib.util

    return importlib.util.find_spec("faiss") is not None


def resolve_backend(backend, index_size):
    """'exact' or 'faiss': auto picks faiss for indexes above 200,000 rows when it is installed."""
    if backend == "faiss" and not faiss_available():
        raise ConfigError("--backend faiss needs faiss: pip install microrep[faiss] "
                          "(or faiss-cpu)")
    if backend == "auto":
        return "faiss" if faiss_available() and index_size > 200_000 else "exact"
    return backend


def _search_exact(index, queries, count, block=1024):
    """(distances, rows) of the `count` nearest index rows per query, by blocks of queries."""
    from sklearn.metrics import pairwise_distances

    distances, rows = [], []
    for start in range(0, len(queries), block):
        part = pairwise_distances(queries[start:start + block], index, metric="euclidean")
        nearest = np.argpartition(part, min(count, part.shape[1]) - 1, axis=1)[:, :count]
        order = np.take_along_axis(part, nearest, axis=1).argsort(axis=1, kind="stable")
        nearest = np.take_along_axis(nearest, order, axis=1)
        rows.append(nearest)
        distances.append(np.take_along_axis(part, nearest, axis=1))
    return np.concatenate(distances), np.concatenate(rows)


class NeighbourSearch:
    """Nearest-neighbour search over an index of embeddings (scikit-learn's habits).

    Constructing is cheap; `fit` takes the index (a memory map is read in place
    by the exact backend; faiss copies it once into its flat index); `query`
    answers as often as asked without rebuilding anything.
    """

    def __init__(self, backend="exact"):
        self.backend = backend

    def fit(self, index):
        self.index_ = index if isinstance(index, np.memmap) else np.asarray(index, np.float32)
        self.faiss_index_ = None
        if self.backend == "faiss":
            import faiss

            self.faiss_index_ = faiss.IndexFlatL2(self.index_.shape[1])
            self.faiss_index_.add(np.ascontiguousarray(self.index_, dtype=np.float32))
        return self

    def _search(self, queries, count):
        if self.faiss_index_ is None:
            return _search_exact(self.index_, queries, count)
        squared, rows = self.faiss_index_.search(np.ascontiguousarray(queries, np.float32), count)
        return np.sqrt(np.maximum(squared, 0.0)), rows

    def query(self, queries, k=10, index_groups=None, query_groups=None, query_rows=None):
        """(distances, rows), each (n_queries, k): the k nearest index rows of each query.

        `query_rows`: the queries are these rows of the index, never their own
        neighbour. With `index_groups` and `query_groups`, neighbours from the
        query's own group (sample) are skipped. Missing neighbours are -1 / inf.
        """
        queries = np.asarray(queries, dtype=np.float32)
        skip_own = query_groups is not None and index_groups is not None
        extra = 0
        if skip_own:
            index_groups = np.asarray(index_groups)
            extra = int(np.unique(index_groups, return_counts=True)[1].max())
        elif query_rows is not None:
            extra = 1
        distances, rows = self._search(queries, min(k + extra, len(self.index_)))
        return first_allowed(distances, rows, k, query_rows, index_groups if skip_own else None,
                             query_groups)[:2]


def first_allowed(distances, rows, k, query_rows=None, index_groups=None, query_groups=None):
    """(distances, rows, short) of the first k candidates of each query that are allowed: not
    the query's own row (`query_rows`), not of its own group (`index_groups`/`query_groups`).

    The one exclusion every search uses (exact, faiss, part by part, a faiss index).
    Candidates are in nearest-first order, -1 for none; missing neighbours are -1 / inf,
    and `short` says some query has fewer than k (a caller may ask for more candidates).
    """
    out_d = np.full((len(rows), k), np.inf, dtype=np.float64)
    out_r = np.full((len(rows), k), -1, dtype=np.int64)
    short = False
    for q in range(len(rows)):
        keep = rows[q] >= 0
        if query_rows is not None:
            keep &= rows[q] != query_rows[q]
        if index_groups is not None and query_groups is not None:
            keep &= np.asarray(index_groups)[np.clip(rows[q], 0, None)] != query_groups[q]
        chosen = np.flatnonzero(keep)[:k]
        out_d[q, :len(chosen)] = distances[q, chosen]
        out_r[q, :len(chosen)] = rows[q, chosen]
        short |= len(chosen) < k
    return out_d, out_r, short


def nearest_neighbours(index, queries, k=10, index_groups=None, query_groups=None,
                       query_rows=None, backend="exact"):
    """`NeighbourSearch(backend).fit(index).query(...)` in one call."""
    return NeighbourSearch(backend).fit(index).query(queries, k, index_groups, query_groups,
                                                     query_rows)
