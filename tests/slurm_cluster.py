"""A real one-node SLURM cluster for tests: munged, slurmctld and slurmd on this machine.

Started from a slurm.conf in a temporary folder (own ports, state and spool folders, so
two test runs on one machine do not meet), stopped at the end. Needs Debian's
`slurm-wlm` and `munge` and root (slurmd runs jobs as their users); CI installs them.
"""

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

CONF = """ClusterName=microrep{suffix}
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
MaxArraySize=10000
FirstJobId={first_job}
NodeName=node{suffix} NodeHostname={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=test Nodes=node{suffix} Default=YES MaxTime=INFINITE State=UP
"""


def missing_parts():
    """What this machine lacks to run the cluster ('' when nothing)."""
    tools = [t for t in ("munged", "slurmctld", "slurmd", "sbatch", "sinfo")
             if shutil.which(t) is None and not Path(f"/usr/sbin/{t}").exists()]
    if tools:
        return f"{', '.join(tools)} not installed (apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "slurmd must run as root"
    return ""


def free_port():
    with socket.socket() as handle:
        handle.bind(("127.0.0.1", 0))
        return handle.getsockname()[1]


def start_munge():
    """munged as user munge, unless one is already answering."""
    if subprocess.run(["munge", "-n"], capture_output=True).returncode == 0:
        return
    run_dir = Path("/run/munge")
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.chown(run_dir, "munge", "munge")
    if not Path("/etc/munge/munge.key").exists():
        subprocess.run(["mungekey", "--create"], check=True)
        shutil.chown("/etc/munge/munge.key", "munge", "munge")
    # munged returns once its socket answers (its parent waits for the daemon's start)
    subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True)
    if subprocess.run(["munge", "-n"], capture_output=True).returncode != 0:
        raise RuntimeError("munged started but does not answer `munge -n`")


class SlurmCluster:
    """slurmctld + slurmd with their own slurm.conf; `env` points sbatch and friends at it."""

    def __init__(self, root):
        self.root = Path(root)
        suffix = str(os.getpid())
        (self.root / "state").mkdir(parents=True)
        (self.root / "spool").mkdir()
        self.conf = self.root / "slurm.conf"
        self.node = f"node{suffix}"
        self.conf.write_text(CONF.format(
            suffix=suffix, host=socket.gethostname().split(".")[0], root=self.root,
            ctld_port=free_port(), slurmd_port=free_port(), cpus=os.cpu_count() or 1,
            # job ids apart from another test run's cluster on this machine: multihost
            # training's coordinator port follows the job id
            first_job=1 + os.getpid() % 20 * 1000))
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    def start(self):
        start_munge()
        subprocess.run(["/usr/sbin/slurmctld", "-i"], env=self.env, check=True)
        subprocess.run(["/usr/sbin/slurmd", "-N", self.node], env=self.env, check=True)
        self.wait_until_idle()
        return self

    def wait_until_idle(self, limit_s=120):
        """Until a one-task job has run on the node: srun waits for the controller to answer
        and for the node to register (events), and returns when the job ends."""
        done = subprocess.run(["srun", "--quiet", "--ntasks", "1", "true"], env=self.env,
                              capture_output=True, text=True, timeout=limit_s)
        if done.returncode != 0:
            raise RuntimeError(f"the SLURM node ran no job ({done.stderr.strip()[-500:]}); see "
                               f"{self.root}/slurmctld.log and slurmd.log")

    def stop(self):
        subprocess.run(["scancel", "--full", "-u", "root"], env=self.env, capture_output=True)
        for name in ("slurmd.pid", "slurmctld.pid"):
            pid_file = self.root / name
            if pid_file.exists():
                try:
                    os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
                except (ProcessLookupError, ValueError):
                    pass
