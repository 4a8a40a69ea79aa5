"""Launchers: who embeds the parts of an archive (this process, a SLURM job array, Ray).

Each is one entry of `microrep.registry.LAUNCHERS`: a function taking an `EmbedJob`
(the settings, the archive, its identity and the parts asked for) and returning what
it did. Every launcher writes the same part files (`microrep.embedding.parts`), so an
archive may be started by one and finished by another.
"""

from microrep.launchers.job import EmbedJob
from microrep.launchers.local import run_local
from microrep.registry import LAUNCHERS

LAUNCHERS.register("local", run_local)


def _slurm(job):
    from microrep.launchers.slurm import run_slurm

    return run_slurm(job)


def _ray(job):
    from microrep.launchers.ray import run_ray

    return run_ray(job)


LAUNCHERS.register("slurm", _slurm)
LAUNCHERS.register("ray", _ray)

__all__ = ["EmbedJob", "LAUNCHERS", "run_local"]
