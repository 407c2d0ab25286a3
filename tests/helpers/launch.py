"""`accelerate launch` for tests: with a config file from recipes/accelerate/, or the flags that work on CPU."""

from __future__ import annotations

from pathlib import Path

from ..conftest import RECIPES, free_port, run_python

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
