"""scripts/gpu_check.sh on a machine without CUDA: it goes as far as it can and says so in one line."""

import os
import subprocess

from tests.conftest import REPO
from tests.tiny_model import TINY_MODEL_ENV


def test_without_cuda_it_stops_with_one_line_and_exit_code_3():
    result = subprocess.run([str(REPO / "scripts" / "gpu_check.sh")], cwd=REPO, capture_output=True, text=True,
                            timeout=300, env={**os.environ, **TINY_MODEL_ENV, "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 3, result.stdout + result.stderr
    [line] = result.stdout.splitlines()
    assert line.startswith("gpu_check: no CUDA device") and line.endswith("stopped before the CUDA run (exit 3)")
    assert result.stderr == ""
