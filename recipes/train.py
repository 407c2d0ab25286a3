"""Train any task, built in or installed from another package, from a TOML experiment file: the task is
the file's ``[basic] task``.

python recipes/train.py CONFIG [--section.key VALUE ...]
accelerate launch --multi_gpu --num_processes 2 recipes/train.py CONFIG   # 2 processes
"""

import sys

from neurotrain_hf.cli import recipe_main


def main(argv: list[str] | None = None) -> int:
    return recipe_main(None, argv)


if __name__ == "__main__":
    sys.exit(main())
