"""What every launcher is given: the settings, the archive, its identity, the parts asked for."""

import dataclasses
from pathlib import Path


@dataclasses.dataclass
class EmbedJob:
    """One `microrep embed` request, prepared: the manifest is listed, the identity known.

    `tower` is the embedding model, built once by the preparing process (launchers that
    run elsewhere rebuild it from `config`); `parts` are the part numbers this request
    covers (after --parts and --num-shards/--shard-index); `view` (data.views) is how
    each image is seen.
    """

    config: object
    out: Path
    info: dict
    identity: dict
    parts: list
    tower: object = None
    log: object = print
    view: object = None
