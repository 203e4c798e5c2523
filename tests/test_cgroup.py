"""Training on a memory-mapped data set larger than the memory the process may use.

The training process runs in a Linux memory cgroup (v1 ``memory.limit_in_bytes``
or v2 ``memory.max``) whose limit is below the size of the uint8 data file:
the run must complete, the loss fall, and nothing be killed. The data files'
pages are dropped from the page cache first (``posix_fadvise``), so they are
read (and charged) inside the cgroup, not left over from writing them. Skipped, with the reason, where
cgroups cannot be written (not root, no memory controller).
"""

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest

ROWS = 400_000                  # x 784 uint8 = 314 MB on disk
LIMIT = 240 * 2 ** 20           # the cgroup's memory limit, below the file (the process itself
                                # takes ~120 MB: Python, numba, the kernels)
V1 = Path("/sys/fs/cgroup/memory")
V2 = Path("/sys/fs/cgroup")


def _cgroup():
    """``(folder, limit file, files to read afterwards)`` of a new memory cgroup, or a skip."""
    name = f"fastnn-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    if (V1 / "memory.limit_in_bytes").exists():
        folder, limit = V1 / name, "memory.limit_in_bytes"
    elif (V2 / "cgroup.controllers").exists() and "memory" in (V2 / "cgroup.controllers").read_text():
        folder, limit = V2 / name, "memory.max"
    else:
        pytest.skip("no memory cgroup controller (v1 /sys/fs/cgroup/memory or v2 memory.max)")
    try:
        folder.mkdir()
        (folder / limit).write_text(str(LIMIT))
    except OSError as exc:
        if folder.exists():
            folder.rmdir()
        pytest.skip(f"cannot create a memory cgroup here ({exc}); run as root")
    return folder, limit


def _evict(*paths):
    """Drop the files' pages from the page cache, so the cgroup's process reads (and is
    charged for) them; the pages of everything else stay cached."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import fastnn

    X = np.load(sys.argv[1], mmap_mode="r")
    y = np.load(sys.argv[2], mmap_mode="r")
    net = fastnn.Network([fastnn.Rescaling(1 / 255), fastnn.Dense(784, 128, "relu"),
                          fastnn.Dense(128, 64, "relu"), fastnn.Dense(64, 10)], seed=0)
    history = net.fit(X, y, epochs=2, batch_size=256, optimizer=fastnn.SGD(0.05),
                      shuffle="block", verbose=0)
    status = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        if key in ("VmHWM", "RssAnon", "RssFile"):
            status[key] = int(value.split()[0]) * 1024
    print(json.dumps({"loss": history.history["loss"], "status": status}))
""")


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    """A learnable uint8 data set: noisy copies of ten prototype images."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        from memmap import make_data
    finally:
        sys.path.pop(0)
    folder = make_data(tmp_path_factory.mktemp("bigdata"), ROWS)
    return folder / "X.npy", folder / "y.npy"


def test_training_on_a_map_larger_than_the_memory_limit(data_files, tmp_path):
    X_path, y_path = data_files
    assert X_path.stat().st_size > LIMIT
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                       env.get("PYTHONPATH", "")]))
    # Compile (or load) the kernels outside the cgroup: the limit is for the data.
    subprocess.run([sys.executable, "-c", "import fastnn; fastnn.warmup(('float32',))"],
                   env=env, check=True, timeout=600)
    folder, limit = _cgroup()
    try:
        _evict(X_path, y_path)
        command = (f"echo $$ > {folder / 'cgroup.procs'} && exec {sys.executable} {script} "
                   f"{X_path} {y_path}")
        proc = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, f"exit {proc.returncode} (killed?)\n{proc.stderr[-2000:]}"
        import json

        result = json.loads(proc.stdout.strip().splitlines()[-1])
        loss = result["loss"]
        assert loss[1] < loss[0] < np.log(10)          # it learns
        peak_file = folder / ("memory.max_usage_in_bytes" if limit.endswith("bytes")
                              else "memory.peak")
        if peak_file.exists():
            assert int(peak_file.read_text()) <= LIMIT
        oom = folder / ("memory.oom_control" if limit.endswith("bytes") else "memory.events")
        if oom.exists():
            counts = dict(line.split() for line in oom.read_text().splitlines() if line)
            assert int(counts.get("oom_kill", 0)) == 0
        print(f"\nfile {X_path.stat().st_size / 2 ** 20:.0f} MiB, limit {LIMIT / 2 ** 20:.0f} MiB,"
              f" losses {loss}, process {result['status']}")
    finally:
        procs = folder / "cgroup.procs"
        if procs.exists():
            for pid in procs.read_text().split():       # nothing should be left, but be sure
                try:
                    os.kill(int(pid), 9)
                except OSError:
                    pass
        folder.rmdir()
