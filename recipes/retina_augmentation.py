"""Does synthetic data help a scarce segmentation set? Real-only vs real + generated, on one real test split.

python recipes/retina_augmentation.py [--real N] [--generated M]

1. writes the embedded vessel patches as image/mask folders: N real training pairs (default 64), real valid
   and test (256 each);
2. trains the mask-conditioned diffusion model on those N pairs (recipes/configs/vessel_diffusion.toml);
3. draws N images (default 512) for new vessel masks (`neurotrain generate`) and adds them to a copy of
   the real training pairs;
4. trains the same segmenter on each set (retina_real_only.toml, retina_augmented.toml) and prints the
   test Dice of both and the difference, last.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from neurotrain_hf.cli import main as neurotrain
from neurotrain_hf.cli import recipe_main

CONFIGS = Path(__file__).resolve().parent / "configs"
ROOT = Path("runs/retina_aug")


def test_dice(run_dir: Path) -> float:
    """The vessel Dice on the real test split (binary: the F1 of the vessel pixels)."""
    return float(json.loads((run_dir / "test_metrics.json").read_text(encoding="utf-8"))["f1"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=int, default=64, help="real training pairs (the scarce set)")
    parser.add_argument("--generated", type=int, default=512, help="generated pairs added to the real ones")
    args = parser.parse_args(argv)
    from PIL import Image

    from neurotrain_hf.tasks.diffusion.synthetic import vessel_patches, write_pair_folders

    n = args.real
    real, augmented, new_masks = ROOT / f"real{n}", ROOT / f"augmented{n}", ROOT / "new_masks"
    if not (real / "test").is_dir():
        write_pair_folders(real, {"train": n, "valid": 256, "test": 256}, seed=0)
    generator_run = f"vessel_diffusion_{n}"
    overrides = ["--dataset.num_samples", str(n), "--basic.run_id", generator_run]
    if recipe_main("diffusion", [str(CONFIGS / "vessel_diffusion.toml"), *overrides]):
        return 1
    shutil.rmtree(new_masks, ignore_errors=True)
    new_masks.mkdir(parents=True)
    _, masks = vessel_patches(args.generated, seed=7)  # masks the generator never saw
    for i, mask in enumerate(masks):
        Image.fromarray(mask * 255).save(new_masks / f"new{i:05d}.png")
    shutil.rmtree(augmented, ignore_errors=True)
    shutil.copytree(real, augmented)
    generated = ROOT / "generated"
    shutil.rmtree(generated, ignore_errors=True)
    code = neurotrain(
        [
            "generate",
            f"runs/diffusion/{generator_run}",
            "--masks",
            str(new_masks),
            "--num",
            str(args.generated),
        ]
        + ["--out", str(generated)]
    )
    if code:
        return code
    for folder in ("images", "masks"):
        for path in (generated / folder).iterdir():
            shutil.copy(path, augmented / "train" / folder / path.name)
    runs = {}
    for config, root in (("retina_real_only", real), ("retina_augmented", augmented)):
        runs[config] = f"{config}_{n}"
        overrides = ["--dataset.root", str(root), "--basic.run_id", runs[config]]
        if recipe_main("segmentation", [str(CONFIGS / f"{config}.toml"), *overrides]):
            return 1
    only = test_dice(Path("runs/segmentation") / runs["retina_real_only"])
    more = test_dice(Path("runs/segmentation") / runs["retina_augmented"])
    print(
        f"test dice: {n} real {only:.4f}, {n} real + {args.generated} generated {more:.4f}, "
        f"difference {more - only:+.4f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
