"""Train a detection model from a TOML experiment file (default: embedded synthetic shapes, Faster R-CNN).

python recipes/train_detection.py [CONFIG] [--section.key VALUE ...]
accelerate launch --multi_gpu --num_processes 2 recipes/train_detection.py CONFIG   # 2 processes
"""

import sys
from pathlib import Path

from neurotrain_hf.cli import recipe_main

DEFAULT = Path(__file__).resolve().parent / "configs" / "synthetic_shapes_fasterrcnn.toml"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("--") and argv[0] not in ("-h", "--help"):
        argv = [str(DEFAULT), *argv]
    return recipe_main("detection", argv)


if __name__ == "__main__":
    sys.exit(main())
