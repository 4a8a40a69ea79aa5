"""Query time of `microrep search`'s neighbour engine: exact (scikit-learn) vs faiss.

Random 64-d float32 vectors stand in for an embedded archive of 10^4, 10^5 and
10^6 micrographs; the index is memory-mapped from a .npy file as `microrep
search` reads it. Prints milliseconds per single query (median of --queries
queries, k=10) for each backend, their ratio, and whether both return the
same neighbours. Goal: under 50 ms per query at 10^6 on 2 cores.

    python benchmarks/search_speed.py [--sizes 10000 100000 1000000] [--queries 20]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from microrep.analysis.neighbours import NeighbourSearch, faiss_available  # noqa: E402


def time_queries(index, queries, backend, k=10):
    """(median ms per query, neighbours of every query); the index is built once, before."""
    search = NeighbourSearch(backend).fit(index)
    search.query(queries[:1], k)  # warm up
    times, rows = [], []
    for query in queries:
        started = time.perf_counter()
        _, found = search.query(query[None], k)
        times.append((time.perf_counter() - started) * 1000)
        rows.append(found[0])
    return float(np.median(times)), np.stack(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--queries", type=int, default=20)
    args = parser.parse_args()
    backends = ["exact"] + (["faiss"] if faiss_available() else [])
    rng = np.random.default_rng(0)
    print(f"{'vectors':>10} " + " ".join(f"{b + ' ms/query':>16}" for b in backends) +
          ("   faiss/exact  same neighbours" if len(backends) > 1 else ""))
    with tempfile.TemporaryDirectory() as folder:
        for size in args.sizes:
            path = Path(folder) / f"index-{size}.npy"
            np.save(path, rng.normal(size=(size, args.dim)).astype(np.float32))
            index = np.load(path, mmap_mode="r")
            queries = rng.normal(size=(args.queries, args.dim)).astype(np.float32)
            results = {backend: time_queries(index, queries, backend) for backend in backends}
            line = f"{size:>10} " + " ".join(f"{results[b][0]:>16.2f}" for b in backends)
            if len(backends) > 1:
                same = bool((results["exact"][1] == results["faiss"][1]).all())
                line += f"   {results['faiss'][0] / results['exact'][0]:>11.2f}  {same}"
            print(line, flush=True)
            del index
    if len(backends) == 1:
        print("faiss not installed (pip install microrep[faiss]): exact search only")


if __name__ == "__main__":
    main()
