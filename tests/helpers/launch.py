"""`accelerate launch` for tests: with a config file from recipes/accelerate/, or the flags that work on CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ..conftest import OFFLINE, RECIPES, ROOT, free_port, run_python

ACCELERATE_CONFIGS = RECIPES / "accelerate"


def accelerate_launch(
    num_processes: int | None,
    *script_args: str,
    config_file: str | Path | None = None,
    timeout: int = 600,
    env: dict | None = None,
):
    """Launch a script the way docs/distributed.md says works on CPU, on a free rendezvous port.

    ``config_file`` (a name such as ``"zero2"`` for ``recipes/accelerate/zero2.yaml``, or a path) says
    how many processes and which backend; ``num_processes`` then overrides its count when given. Without
    a file: ``--multi_gpu --num_processes N`` for 2+ processes, as ``tests/test_distributed.py`` does.
    """
    if config_file is not None:
        path = Path(config_file)
        if path.suffix != ".yaml":
            path = ACCELERATE_CONFIGS / f"{config_file}.yaml"
        launcher = ["--config_file", str(path)]
        if num_processes is not None:
            launcher += ["--num_processes", str(num_processes)]
    else:
        launcher = ["--multi_gpu"] if num_processes > 1 else []
        launcher += [
            "--num_processes",
            str(num_processes),
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
        ]
    command = ["-m", "accelerate.commands.launch", *launcher, "--main_process_port", str(free_port())]
    return run_python([*command, *script_args], timeout=timeout, env=env)


def launch_node(
    machine_rank: int, port: int, log: Path, *script_args: str, num_machines: int = 2
) -> subprocess.Popen:
    """One simulated node of a multi-node run on this machine: ``accelerate launch --num_machines N
    --machine_rank R --main_process_ip 127.0.0.1``, one process per node, as docs/distributed.md says.

    Its output goes to ``log`` (stdout and stderr): a pipe nobody reads would stall a long run."""
    command = [
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(num_machines),
        "--num_machines",
        str(num_machines),
        "--machine_rank",
        str(machine_rank),
        "--main_process_ip",
        "127.0.0.1",
        "--main_process_port",
        str(port),
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        *script_args,
    ]
    env = {**os.environ, **OFFLINE, "PYTHONUNBUFFERED": "1"}
    with open(log, "w", encoding="utf-8") as out:
        return subprocess.Popen(  # its own session: a test can SIGKILL the whole "node"
            [sys.executable, *command],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
