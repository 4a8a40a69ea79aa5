"""Multi-host fine-tuning on JAX: two processes (one CPU device each) joined by
jax.distributed train the same weights as one process over two devices."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from test_distribute import TRAIN


def free_port():
    with socket.socket() as handle:
        handle.bind(("127.0.0.1", 0))
        return handle.getsockname()[1]


def weights_of(run):
    from microrep.training import load_tower

    return [np.asarray(w) for w in load_tower(run).get_weights()]


ENV = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """One process over two CPU devices: the weights every multi-process run must equal."""
    pytest.importorskip("jax", reason="multi-host training runs on JAX (part of the test install)")
    tmp = tmp_path_factory.mktemp("one")
    one = [a.replace("{tmp}", str(tmp)) for a in TRAIN]
    done = subprocess.run([sys.executable, "-m", "microrep", *one],
                          env={**ENV, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp


def multihost_argv(one_process, out):
    """TRAIN for --distribute multihost on the one-process run's images, into `out`."""
    many = [a.replace("{tmp}", str(out)) for a in TRAIN]
    many[many.index("data")] = "multihost"
    many[many.index("--data-dir") + 1] = str(one_process / "data")  # the same images
    return many


def assert_same_weights(expected_run, run):
    for expected, got in zip(weights_of(expected_run), weights_of(run)):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_two_processes_train_the_weights_of_one_process_over_two_devices(one_process, tmp_path):
    many = multihost_argv(one_process, tmp_path / "many")
    coordinator = f"127.0.0.1:{free_port()}"
    processes = [subprocess.Popen([sys.executable, "-m", "microrep", *many, "--coordinator",
                                   coordinator, "--num-processes", "2", "--process-id", str(k)],
                                  env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for k in range(2)]
    outputs = [p.communicate(timeout=600) for p in processes]
    for process, (out, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-3000:]
    assert "on 2 device(s)" in outputs[0][0]
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == ["run"], \
        "only process 0 writes, into --out"
    assert_same_weights(one_process / "run", tmp_path / "many" / "run")


@pytest.mark.slow
def test_srun_starts_processes_that_find_each_other_from_slurms_environment(one_process, slurm,
                                                                          tmp_path):
    """Two tasks of one `srun` step on a real SLURM node, no --coordinator flags: the
    coordinator (the first node's address, a port from the job id), the process count and
    each process's index come from SLURM, and they train what one process trains."""
    many = multihost_argv(one_process, tmp_path / "srun")
    done = subprocess.run(["srun", "--ntasks", "2", "--cpus-per-task", "1", "--chdir", str(tmp_path),
                           sys.executable, "-m", "microrep", *many],
                          env={**ENV, "SLURM_CONF": str(slurm.conf)}, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "on 2 device(s)" in done.stdout
    assert_same_weights(one_process / "run", tmp_path / "srun" / "run")


def test_tensorflow_multi_worker_is_refused_in_one_line(tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    argv = [a.replace("{tmp}", str(tmp_path)) for a in TRAIN]
    argv[argv.index("data")] = "multihost"
    done = subprocess.run([sys.executable, "-m", "microrep", *argv, "--coordinator", "h:1",
                           "--num-processes", "2"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert "runs on JAX" in last and "TF_CONFIG" in last and "Traceback" not in done.stderr


@pytest.mark.slow
def test_a_killed_peer_ends_the_other_process_with_one_line_and_resume_continues(one_process,
                                                                                 tmp_path):
    """Process 1 is killed once epoch 2 has begun (read from its output: an event); process 0
    says so in one line and exits, instead of hanging in its next collective. Both started
    again with --resume (a new coordinator port) end with the weights of an uninterrupted run."""
    import signal

    env = {**ENV, "PYTHONUNBUFFERED": "1"}
    argv = multihost_argv(one_process, tmp_path / "killed")
    argv[argv.index("--epochs") + 1] = "1000"
    processes = start_processes(argv, env)
    for line in processes[1].stdout:  # until process 1 is training its second epoch
        if line.startswith("Epoch 2/"):
            break
    else:
        pytest.fail(f"process 1 ended before epoch 2: {processes[1].stderr.read()[-2000:]}")
    processes[1].send_signal(signal.SIGKILL)
    processes[1].wait()
    out, err = processes[0].communicate(timeout=300)
    assert processes[0].returncode == 2, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert "another training process stopped mid-run" in last and "--resume" in last
    assert "Traceback" not in err

    argv[argv.index("--epochs") + 1] = "3"
    resumed = start_processes([*argv, "--resume"], env)
    for process, (out, err) in zip(resumed, [p.communicate(timeout=600) for p in resumed]):
        assert process.returncode == 0, err[-3000:]
    whole = [a.replace("{tmp}", str(tmp_path / "whole")) for a in TRAIN]
    whole[whole.index("--data-dir") + 1] = str(one_process / "data")
    whole[whole.index("--epochs") + 1] = "3"
    done = subprocess.run([sys.executable, "-m", "microrep", *whole],
                          env={**ENV, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_weights(tmp_path / "whole" / "run", tmp_path / "killed" / "run")


def start_processes(argv, env):
    """Two training processes joined by a coordinator on a free local port."""
    coordinator = f"127.0.0.1:{free_port()}"
    return [subprocess.Popen([sys.executable, "-m", "microrep", *argv, "--coordinator", coordinator,
                              "--num-processes", "2", "--process-id", str(k)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for k in range(2)]
