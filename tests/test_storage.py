"""Local atomic writes: normal permissions, and the temp file of a writer killed mid-write does not stay."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from sonar_ray import storage
from sonar_ray.pipelines.cas import cas_object

REPO = Path(__file__).resolve().parents[1]


def test_outputs_get_the_umask_mode_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        storage.write_bytes_atomic(str(tmp_path / "out" / "summary.json"), b"{}")
        cas_object(str(tmp_path / "reg" / "lease.json")).create(b"{}")
    finally:
        os.umask(old)
    for path in (tmp_path / "out" / "summary.json", tmp_path / "reg" / "lease.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_killed_writers_temp_file_is_removed_by_the_next_write(tmp_path):
    # The child dies by SIGKILL right when its bytes are written but not yet renamed into place.
    child = (f"import os, signal, sys; sys.path.insert(0, {str(REPO)!r})\n"
             "from sonar_ray import storage\n"
             "os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)\n"
             f"storage.write_bytes_atomic({str(tmp_path / 'model.pt')!r}, b'x' * 1_000_000)\n")
    out = subprocess.run([sys.executable, "-c", child], timeout=60)
    assert out.returncode == -9
    (left,) = tmp_path.iterdir()  # nothing runs after SIGKILL: its temp file is there ...
    assert left.name.startswith(".model.pt.") and not (tmp_path / "model.pt").exists()
    storage.write_bytes_atomic(str(tmp_path / "model.pt"), b"done")
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # ... until the next write of that file
