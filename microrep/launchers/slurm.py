"""The SLURM launcher: an `sbatch --array` job, one array task per range of missing parts.

Why SLURM job arrays: they are what HPC facilities run, schedule and account for; each
task is the local launcher (`microrep embed --config ... --parts ...`) on one part range,
so a failed or pre-empted task is resubmitted by running the same command again, which
submits only the parts still missing.
"""

import dataclasses
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from microrep.config.fields import ranges_text
from microrep.embedding.parts import part_state
from microrep.errors import ConfigError, MicrorepError
from microrep.fileio import write_json, write_text

LAUNCH = "launch"


class LaunchError(MicrorepError):
    """The cluster refused or failed the job."""


def task_settings(config):
    """The settings each array task runs with: this embedding, on this machine's paths."""
    task = dataclasses.replace(config, launcher="local", parts="", num_shards=1, shard_index=0,
                               overwrite=False, wait=False)
    values = dataclasses.asdict(task)
    for key in ("launcher", "slurm_args", "parts_per_task", "wait", "ray_address", "ray_actors"):
        values.pop(key)
    return values


def sbatch_script(tasks_file, settings_file, log_dir, count, workdir):
    """The job array's script: task i embeds the parts on line i + 1 of `tasks_file`."""
    python = shlex.quote(sys.executable)
    return f"""#!/bin/bash
#SBATCH --job-name=microrep-embed
#SBATCH --array=0-{count - 1}
#SBATCH --output={log_dir}/task-%A_%a.out
#SBATCH --chdir={workdir}
# Written by `microrep embed --launcher slurm`; each task embeds one range of parts.
set -eu
PARTS=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {shlex.quote(str(tasks_file))})
echo "microrep: array task $SLURM_ARRAY_TASK_ID embeds parts $PARTS"
exec {python} -m microrep embed --config {shlex.quote(str(settings_file))} --parts "$PARTS"
"""


def write_job(job, missing):
    """Write tasks.txt, embed.json and embed.sbatch under `out/launch`; return the script."""
    config, launch = job.config, job.out.resolve() / LAUNCH
    tasks = [missing[i:i + config.parts_per_task]
             for i in range(0, len(missing), config.parts_per_task)]
    (launch / "logs").mkdir(parents=True, exist_ok=True)
    write_text(launch / "tasks.txt", "".join(ranges_text(t) + "\n" for t in tasks))
    write_json(launch / "embed.json", task_settings(config))
    script = launch / "embed.sbatch"
    write_text(script, sbatch_script(launch / "tasks.txt", launch / "embed.json", launch / "logs",
                                     len(tasks), Path.cwd()))
    return script, len(tasks)


def submit(script, config):
    """sbatch the script; (job id, sbatch's exit code). With --wait, returns when the array ends."""
    if shutil.which("sbatch") is None:
        raise ConfigError("--launcher slurm needs SLURM's `sbatch` on PATH: run on the cluster's "
                          "login node (or use --launcher local or ray)")
    command = ["sbatch", "--parsable", *(["--wait"] if config.wait else []),
               *shlex.split(config.slurm_args), str(script)]
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
    job_id = done.stdout.strip().split(";")[0]
    if not job_id:
        said = (done.stderr.strip().splitlines() or ["no answer"])[-1]
        raise LaunchError(f"sbatch refused the job array: {said}")
    return job_id, done.returncode


def run_slurm(job):
    """Submit the missing parts of the job as one SLURM job array."""
    missing = [p for p in job.parts if part_state(job.out, p, job.identity, verify=True) != "done"]
    skipped = [p for p in job.parts if p not in missing]
    summary = {"launcher": "slurm", "embedded": [], "skipped": skipped, "bad": 0}
    if not missing:
        return {**summary, "message": "every part asked for is done: nothing to submit"}
    script, count = write_job(job, missing)
    job_id, code = submit(script, job.config)
    logs = job.out.resolve() / LAUNCH / "logs"
    if job.config.wait and code != 0:
        raise LaunchError(f"SLURM job {job_id} ended with failed array tasks; their logs are in "
                          f"{logs}; run the same command again to resubmit the missing parts")
    verb = "ran" if job.config.wait else "submitted"
    return {**summary, "job_id": job_id,
            "message": f"{verb} SLURM job array {job_id}: {count} task(s) for part(s) "
                       f"{ranges_text(missing)} (script {script}, logs in {logs})"
                       + ("" if job.config.wait else "; `microrep status` shows progress")}
