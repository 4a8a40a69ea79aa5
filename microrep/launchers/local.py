"""The local launcher: this process embeds the parts it is given, one after another.

It is also the body of every SLURM array task, so parts are the same whoever runs them.
"""

from microrep.embedding.archive import embed_part
from microrep.embedding.parts import ANOTHER, DAMAGED, part_state
from microrep.errors import DataError
from microrep.training.embedder import (cached_embedder, embedding_tower, frozen_run,
                                       pretrained_cache_embedder)


def run_local(job):
    """Embed each of the job's parts that is not done yet, in this process."""
    config, log = job.config, job.log
    tower = job.tower if job.tower is not None else embedding_tower(config)
    run = frozen_run(config)
    embed = cached_embedder(tower, run, job.view, log) if run else \
        pretrained_cache_embedder(config, tower, job.view, log) if config.pretrained else None
    workers = None if config.read_workers < 0 else config.read_workers
    embedded, skipped, bad, named = [], [], 0, []
    for number, part in enumerate(job.parts):
        state = part_state(job.out, part, job.identity, verify=True)
        if state == "done":
            skipped.append(part)
            continue
        if state.startswith(ANOTHER):
            raise DataError(f"{job.out}: part {part} was {state[len(ANOTHER) + 2:]}; parts of "
                            "two models or manifests never mix: use another --out, or --overwrite")
        if state.startswith(DAMAGED):
            log(f"part {part} is {state}: recomputing it")
        if len(job.parts) > 1:
            log(f"part {part} ({number + 1} of {len(job.parts)} asked for)")
        record = embed_part(job.out, part, tower, job.identity, job.view, config.batch_size,
                            progress=True, workers=workers, log=log, embed=embed)
        embedded.append(part)
        bad += record["bad"]
        named += record["bad_images"]
    return {"launcher": "local", "embedded": embedded, "skipped": skipped, "bad": bad,
            "bad_images": named[:5]}
