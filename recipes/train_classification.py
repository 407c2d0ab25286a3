"""Train an image classifier from a TOML experiment file.

python recipes/train_classification.py recipes/configs/digits_cnn.toml --training.learning_rate 3e-3
accelerate launch --multi_gpu --num_processes 2 recipes/train_classification.py CONFIG   # 2 processes
"""

import sys

from neurotrain_hf.cli import recipe_main


def main(argv: list[str] | None = None) -> int:
    return recipe_main("classification", argv)


if __name__ == "__main__":
    sys.exit(main())
