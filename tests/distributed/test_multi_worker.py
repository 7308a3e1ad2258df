"""WGAN under MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1."""

import glob
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mwms_worker.py")


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_workers(commands, timeout):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TF_CONFIG", None)
    processes = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for c in commands]
    deadline = time.monotonic() + timeout
    try:
        for process in processes:
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pytest.fail("multi-worker training did not finish in time")
    finally:
        for process in processes:  # never leave a worker behind
            if process.poll() is None:
                process.kill()
                process.wait()
    for process in processes:
        assert process.returncode == 0, process.stderr.read().decode()[-3000:]


def load(path):
    data = np.load(path)
    return [data[k] for k in data.files if k != "logs"], json.loads(str(data["logs"]))


@pytest.mark.parametrize("penalty", ["gp", pytest.param("maxal", marks=pytest.mark.slow)])
def test_two_workers_match_each_other_and_a_single_worker(tmp_path, penalty):
    port0, port1 = free_ports(2)
    outputs = [str(tmp_path / f"worker{i}.npz") for i in (0, 1)] + [str(tmp_path / "single.npz")]
    commands = [
        [sys.executable, WORKER, str(i), str(port0), str(port1), outputs[i], penalty] for i in (0, 1)
    ] + [[sys.executable, WORKER, "-1", str(port0), str(port1), outputs[2], penalty]]
    run_workers(commands, timeout=300)
    (w0, logs0), (w1, logs1), (single, single_logs) = (load(p) for p in outputs)
    for a, b in zip(w0, w1):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(w0, single):
        np.testing.assert_allclose(a, b, atol=1e-5)
    for key in single_logs:
        np.testing.assert_allclose(logs0[key], single_logs[key], rtol=1e-4, atol=1e-6, err_msg=key)
    # Callbacks write TensorBoard events from the chief only.
    assert glob.glob(outputs[0] + ".logs/events.*")
    assert not os.path.exists(outputs[1] + ".logs")
    assert glob.glob(outputs[2] + ".logs/events.*")
