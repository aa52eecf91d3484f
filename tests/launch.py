"""Start a tether stage under `accelerate launch` (the multi-process equivalence tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def launch_two_processes(stage: str, config: Path, timeout: int = 600):
    """`tether <stage> --config <config>` under `accelerate launch` with 2 CPU processes (one thread each). On CPU,
    `accelerate launch --multi_gpu` starts the processes with torchrun; tether selects gloo."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                           "-m", "tether.cli.main", stage, "--config", str(config)],
                          capture_output=True, text=True, env=env, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc
