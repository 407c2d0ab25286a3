"""Train a diffusion model from a TOML experiment file (default: class-conditioned coloured shapes).

python recipes/train_diffusion.py [CONFIG] [--section.key VALUE ...]

When ``[training] fid_features`` names a run of ``recipes/configs/color_shapes_classifier.toml``
(``OUTPUT/classification/color_shapes_classifier``) that does not exist yet, the shapes are written as
class folders and the classifier is trained first (its features score FID / KID and its predictions
``sample_accuracy``).
"""

import sys
from pathlib import Path

from neurotrain_hf.cli import recipe_main

CONFIGS = Path(__file__).resolve().parent / "configs"
DEFAULT = CONFIGS / "color_shapes_diffusion.toml"
CLASSIFIER = CONFIGS / "color_shapes_classifier.toml"


def ensure_classifier(config_path: str, overrides: list[str]) -> int:
    """Train the shapes classifier the config scores with when it names one (a ``.../classification/
    color_shapes_classifier`` folder) that does not exist yet: the shapes at the config's image size are
    written as class folders under the same output folder, then classified."""
    from neurotrain_hf.config import load_config
    from neurotrain_hf.tasks.diffusion.synthetic import write_class_folders

    config = load_config(config_path, overrides)
    features = config.training.fid_features
    classifier = load_config(str(CLASSIFIER), [])
    if not features or Path(features).parts[-2:] != ("classification", classifier.basic.run_id):
        return 0
    if (Path(features) / "model" / "config.json").is_file():
        return 0
    output_dir = Path(features).parents[1]
    size = config.dataset.image_size
    count = config.dataset.num_samples  # the diffusion model's training images, the classifier's too
    root = output_dir / "data" / f"color_shapes{size}_{count}"
    if not (root / "test").is_dir():
        write_class_folders(root, {"train": count, "valid": 256, "test": 256}, seed=0, size=size)
    return recipe_main(
        "classification",
        [str(CLASSIFIER), "--basic.output_dir", str(output_dir), "--dataset.root", str(root)],
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("--") and argv[0] not in ("-h", "--help"):
        argv = [str(DEFAULT), *argv]
    if argv[0] not in ("-h", "--help"):
        status = ensure_classifier(argv[0], argv[1:])
        if status:
            return status
    return recipe_main("diffusion", argv)


if __name__ == "__main__":
    sys.exit(main())
