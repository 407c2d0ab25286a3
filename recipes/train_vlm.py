"""Train a vision-language model (LLaVA-style) from a TOML experiment file (default: synthetic VQA with
llava_tiny on CPU).

python recipes/train_vlm.py [CONFIG] [--section.key VALUE ...]
accelerate launch --multi_gpu --num_processes 2 recipes/train_vlm.py CONFIG   # 2 processes
"""

import sys
from pathlib import Path

from neurotrain_hf.cli import recipe_main

DEFAULT = Path(__file__).resolve().parent / "configs" / "synthetic_vqa_llava.toml"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("--") and argv[0] not in ("-h", "--help"):
        argv = [str(DEFAULT), *argv]
    return recipe_main("vlm", argv)


if __name__ == "__main__":
    sys.exit(main())
