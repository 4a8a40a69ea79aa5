"""Multi-host fine-tuning on JAX: several processes (one per host, or per GPU) train one
model data-parallel, each feeding its slice of every batch of the seeded pair plan.

Why JAX only: `keras.distribution` spans processes on JAX (jax.distributed, with Gloo
collectives between CPU processes); TensorFlow's multi-worker strategy needs TF_CONFIG
and a tf.data input sharded by TensorFlow, which the pair feed is not. Only process 0
writes the run folder: the others write theirs into a scratch folder that is deleted,
so every process runs the same code (saving includes collectives all must join).
"""

import dataclasses
import os
import re
import shutil
import subprocess
import tempfile

from microrep.errors import ConfigError, MicrorepError

#: The coordinator's port when it comes from SLURM's node list: this plus the job id modulo
#: PORT_SPREAD, so two jobs sharing a node do not meet.
DEFAULT_PORT = 12355
PORT_SPREAD = 20000


def from_slurm():
    """(coordinator, processes, process id) from a SLURM step's environment, or None."""
    if "SLURM_PROCID" not in os.environ or "SLURM_NTASKS" not in os.environ:
        return None
    nodes = os.environ.get("SLURM_STEP_NODELIST") or os.environ.get("SLURM_JOB_NODELIST", "")
    try:
        hosts = subprocess.run(["scontrol", "show", "hostnames", nodes], capture_output=True,
                               text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        hosts = [nodes.split(",")[0]] if nodes and "[" not in nodes else []
    if not hosts:
        return None
    port = DEFAULT_PORT + int(os.environ.get("SLURM_JOB_ID", "0") or 0) % PORT_SPREAD
    return (f"{node_address(hosts[0])}:{port}", int(os.environ["SLURM_NTASKS"]),
            int(os.environ["SLURM_PROCID"]))


def node_address(name):
    """Where a SLURM node is reached: its NodeAddr (a node's name need not resolve), else the name."""
    try:
        shown = subprocess.run(["scontrol", "show", "node", "-o", name], capture_output=True,
                               text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return name
    match = re.search(r"\bNodeAddr=(\S+)", shown)
    return match.group(1) if match else name


def process_plan(config):
    """(coordinator, processes, process id): the flags, else SLURM's environment."""
    if config.coordinator:
        if config.num_processes < 2 or not 0 <= config.process_id < config.num_processes:
            raise ConfigError("--distribute multihost with --coordinator needs --num-processes "
                              "(at least 2) and --process-id 0..num_processes-1")
        return config.coordinator, config.num_processes, config.process_id
    plan = from_slurm()
    if plan is None:
        raise ConfigError("--distribute multihost needs --coordinator HOST:PORT, --num-processes "
                          "and --process-id, or a SLURM step (srun) to read them from")
    return plan


_JOINED = {}


class PeerLostError(MicrorepError):
    """Another training process stopped (killed, crashed, its node lost) mid-run.

    `exit_now`: the CLI leaves at once after saying so, because JAX's coordination
    service would otherwise wait minutes at exit for the process that is gone.
    """

    exit_now = True


#: What JAX says when a collective loses its peer (Gloo on CPU; NCCL on GPUs).
PEER_LOST = ("Connection reset by peer", "Connection closed by peer", "Gloo", "NCCL",
             "coordination service", "heartbeat")


def peer_lost(error):
    """A PeerLostError for a JAX runtime error that says a peer is gone, else None."""
    text = str(error)
    if type(error).__name__ not in ("JaxRuntimeError", "XlaRuntimeError") or \
            not any(word in text for word in PEER_LOST):
        return None
    return PeerLostError("another training process stopped mid-run ("
                         + text.splitlines()[0][:160] + "); the last complete epoch's checkpoint "
                         "is in process 0's --out: start every process again with --resume")


def join_processes(config):
    """Join the other processes (once); return the config this process trains under.

    Process 0 keeps --out; the others get a scratch folder in its place.
    """
    if config.distribute != "multihost":
        return config
    import keras

    if keras.backend.backend() != "jax":
        raise ConfigError("--distribute multihost runs on JAX (KERAS_BACKEND=jax): TensorFlow's "
                          "multi-worker strategy needs TF_CONFIG and a tf.data input sharded by "
                          "TensorFlow, which microrep's seeded pair feed is not")
    if not config.model.train_base:
        raise ConfigError("--distribute multihost fine-tunes the whole tower (--train-base); a "
                          "head on a frozen base trains in seconds on one process")
    if "plan" not in _JOINED:
        coordinator, processes, index = process_plan(config)
        import jax

        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator, processes, index, heartbeat_timeout_seconds=30,
                                   shutdown_timeout_seconds=10)
        _JOINED["plan"] = (processes, index)
        if index != 0:
            _JOINED["scratch"] = tempfile.mkdtemp(prefix="microrep-process-")
    processes, index = _JOINED["plan"]
    if config.batch_size % processes:
        raise ConfigError(f"--batch-size {config.batch_size} must be a multiple of the "
                          f"{processes} processes it is split over")
    own = config if index == 0 else dataclasses.replace(config, out=os.path.join(_JOINED["scratch"], "run"))
    if config.resume and "resumed" not in _JOINED:
        resume_from_process_zero(config.out, own.out, index)
        _JOINED["resumed"] = True
    return own


def resume_from_process_zero(out, own_out, index):
    """--resume: every process continues from process 0's run folder (read where it lies,
    as on a shared file system), the others from a copy in their scratch folder; all wait
    until the copies are made, before process 0 changes anything in it."""
    from jax.experimental import multihost_utils

    from microrep.training.run_dir import LOCK

    if index != 0 and os.path.isdir(out):
        shutil.copytree(out, own_out, ignore=shutil.ignore_patterns(LOCK, ".*.tmp*"))
    multihost_utils.sync_global_devices("microrep resume: run folder copied")


def process_slice():
    """(this process's index, process count) once joined, else (0, 1)."""
    processes, index = _JOINED.get("plan", (1, 0))
    return index, processes


def leave_processes():
    """Wait for every process, then delete this one's scratch folder."""
    if "plan" not in _JOINED:
        return
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices("microrep training done")
    if "scratch" in _JOINED:
        shutil.rmtree(_JOINED.pop("scratch"), ignore_errors=True)
