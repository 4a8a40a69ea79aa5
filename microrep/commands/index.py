"""`microrep index`: a persistent faiss index of an embedded archive, built part by part."""

from pathlib import Path

from microrep.embedding.index import INDEX_INFO, build_index
from microrep.fileio import refuse_earlier_output


def run_index(config, log=print):
    """Build the index of `config.embeddings` into `config.out`; returns its index.json."""
    refuse_earlier_output(Path(config.out) / INDEX_INFO, "an index", config.overwrite)
    info = build_index(config.embeddings, config.out, config.kind, config.target_recall,
                       config.queries, config.seed, log)
    how = "exact (Flat)" if not info["nprobe"] else f"{info['faiss']}, nprobe {info['nprobe']}"
    log(f"indexed {info['rows']} vectors ({how}): recall@10 {info['recall_at_10']:.3f} against "
        f"exact search for {info['held_out_queries']} of its vectors as queries, "
        f"{info['query_ms']:.2f} ms a query; {Path(config.out) / 'index.faiss'} "
        f"({info['bytes'] / 1e6:.1f} MB)")
    return info
