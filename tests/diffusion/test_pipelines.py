"""Saved diffusion folders: they load with diffusers' ``DDPMPipeline`` / ``DDIMPipeline`` (unconditional) and
``NeuroDiffusionPipeline`` (class / mask conditioning) and generate the images ``neurotrain predict`` writes
for the same seed; classifier-free guidance equals a hand-written guided DDIM loop; bad requests are one
line (exit 2)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import ROOT  # noqa: F401  (offline environment)
from tests.helpers.diffusion_runs import STEPS, tiny


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("diffusion")
    return {
        "none": tiny(tmp, "none", "none", "color_shapes", sampler="ddpm"),
        "class": tiny(tmp, "class", "class", "color_shapes", guidance_scale=2.0),
        "mask": tiny(tmp, "mask", "mask", "vessel_patches", sampler="dpm++"),
    }


def predict_cli(args: list[str], capsys) -> tuple[int, str]:
    from neurotrain_hf.cli import main

    code = main(["predict", *args])
    captured = capsys.readouterr()
    return code, captured.err.strip()


def pngs(folder: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("sample_*.png"))])


def as_uint8(images: np.ndarray) -> np.ndarray:
    return np.round(np.clip(images, 0, 1) * 255).astype(np.uint8)


def test_unconditional_folder_is_a_ddpm_pipeline(runs, tmp_path, capsys):
    from diffusers import DDIMPipeline, DDPMPipeline

    model = runs["none"] / "model"
    code, err = predict_cli(
        [str(runs["none"]), "--num", "3", "--seed", "5", "--out", str(tmp_path / "p")], capsys
    )
    assert code == 0, err
    ours = pngs(tmp_path / "p")
    assert ours.shape == (3, 16, 16, 3) and (tmp_path / "p" / "grid.png").is_file()
    generators = [torch.Generator().manual_seed(5 + i) for i in range(3)]
    ddpm = DDPMPipeline.from_pretrained(str(model))(
        batch_size=3, generator=generators, num_inference_steps=STEPS, output_type="np"
    ).images
    assert np.array_equal(as_uint8(ddpm), ours)

    from neurotrain_hf import Predictor

    predictor = Predictor.from_pretrained(runs["none"])
    predictor.inference.settings["sampler"] = "ddim"
    ours_ddim = np.stack([r["image"] for r in predictor.predict([{"noise_seed": 5}, {"noise_seed": 6}])])
    generators = [torch.Generator().manual_seed(5 + i) for i in range(2)]
    ddim = DDIMPipeline.from_pretrained(str(model))(
        batch_size=2, generator=generators, num_inference_steps=STEPS, output_type="np"
    ).images
    assert np.allclose(ddim, ours_ddim, atol=1e-5)
    assert not np.allclose(ddim, ddpm[:2], atol=1e-2)  # the samplers differ


def hand_guided_ddim(unet, scheduler_config, labels, null, scale, seeds):
    """Classifier-free guidance written out: eps = eps(null) + s * (eps(c) - eps(null)), DDIM eta 0."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(scheduler_config)
    x = torch.cat([torch.randn((1, 3, 16, 16), generator=torch.Generator().manual_seed(s)) for s in seeds])
    scheduler.set_timesteps(STEPS)
    with torch.no_grad():
        for t in scheduler.timesteps:
            cond = unet(x, t, class_labels=labels).sample
            uncond = unet(x, t, class_labels=torch.full_like(labels, null)).sample
            x = scheduler.step(uncond + scale * (cond - uncond), t, x).prev_sample
    return (x / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()


def test_class_folder_loads_with_neuro_pipeline_and_guides(runs, tmp_path, capsys):
    from neurotrain_hf import NeuroDiffusionPipeline

    code, err = predict_cli(
        [
            str(runs["class"]),
            "--num",
            "2",
            "--seed",
            "7",
            "--class",
            "blue triangle",
            "--out",
            str(tmp_path / "p"),
        ],
        capsys,
    )
    assert code == 0, err
    pipe = NeuroDiffusionPipeline.from_pretrained(str(runs["class"] / "model"))
    assert pipe.unet.config.num_class_embeds == 5  # 4 classes + the null class
    generators = [torch.Generator().manual_seed(7 + i) for i in range(2)]
    images = pipe(
        class_labels=[2, 2],
        guidance_scale=2.0,
        num_inference_steps=STEPS,
        generator=generators,
        output_type="np",
    ).images
    assert np.array_equal(as_uint8(images), pngs(tmp_path / "p"))
    assert type(pipe.scheduler).__name__ == "DDIMScheduler"  # the run's sampler
    labels = torch.tensor([0, 3])
    hand = hand_guided_ddim(pipe.unet, pipe.scheduler.config, labels, 4, 2.0, [11, 12])
    generators = [torch.Generator().manual_seed(s) for s in (11, 12)]
    guided = pipe(
        class_labels=labels,
        guidance_scale=2.0,
        num_inference_steps=STEPS,
        generator=generators,
        output_type="np",
    )
    assert np.allclose(guided.images, hand, atol=1e-5)


def test_mask_folder_generates_from_a_mask(runs, tmp_path, capsys):
    from neurotrain_hf import NeuroDiffusionPipeline

    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 7:9] = 255
    Image.fromarray(mask).save(tmp_path / "vessel.PNG")
    code, err = predict_cli(
        [
            str(runs["mask"]),
            "--num",
            "2",
            "--mask",
            str(tmp_path / "vessel.PNG"),
            "--out",
            str(tmp_path / "p"),
        ],
        capsys,
    )
    assert code == 0, err
    pipe = NeuroDiffusionPipeline.from_pretrained(str(runs["mask"] / "model"))
    assert pipe.unet.config.in_channels == 4  # RGB + the mask
    assert type(pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"  # the run's sampler
    generators = [torch.Generator().manual_seed(i) for i in range(2)]
    masks = torch.from_numpy(mask > 0).float()[None].repeat(2, 1, 1)
    images = pipe(mask=masks, num_inference_steps=STEPS, generator=generators, output_type="np").images
    assert np.array_equal(as_uint8(images), pngs(tmp_path / "p"))


def test_bad_requests_are_one_line(runs, tmp_path, capsys):
    Image.fromarray(np.zeros((20, 16), np.uint8)).save(tmp_path / "wrong.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    cases = [
        ([str(runs["class"]), "--num", "1", "--class", "9"], "--class 9: outside the trained classes 0..3"),
        ([str(runs["class"]), "--num", "1"], "class-conditioned: give --class"),
        ([str(runs["none"]), "--num", "1", "--class", "0"], "--class: this model is not class-conditioned"),
        ([str(runs["class"]), "--num", "1", "--prompt", ""], "--prompt: this model is not text-conditioned"),
        ([str(runs["none"]), "--num", "0"], "--num 0: give 1 to 10000 samples"),
        (
            [str(runs["mask"]), "--mask", str(tmp_path / "wrong.png")],
            "wrong.png: mask size (16, 20) (w, h) differs from the model's image size 16x16",
        ),
        ([str(runs["mask"]), "--mask", str(tmp_path / "broken.png")], "broken.png: cannot read this mask"),
    ]
    for args, message in cases:
        code, err = predict_cli(args, capsys)
        assert code == 2 and err.count("\n") == 0 and message in err, (args, err)
    copy = tmp_path / "no_scheduler"
    shutil.copytree(runs["none"] / "model", copy)
    shutil.rmtree(copy / "scheduler")
    code, err = predict_cli([str(copy), "--num", "1"], capsys)
    assert code == 2 and "scheduler/scheduler_config.json is missing" in err and err.count("\n") == 0, err


def test_bad_configs_are_one_line(tmp_path):
    from neurotrain_hf.config import build_config
    from neurotrain_hf.errors import NeuroTrainError

    base = {"basic": {"task": "diffusion", "output_dir": str(tmp_path)}, "model": {"name": "unet2d"}}
    cases = [
        ({"snr_gamma": 5.0, "prediction_type": "flow"}, "prediction_type"),
        (
            {"conditioning": "class", "condition_dropout": 0.0, "guidance_scale": 3.0},
            "needs an unconditional model",
        ),
        ({"conditioning": "text"}, "conditioning"),
    ]
    for training, message in cases:
        with pytest.raises(NeuroTrainError) as error:
            build_config({**base, "training": training})
        assert message in str(error.value) and "\n" not in str(error.value), str(error.value)


def test_generate_writes_a_segmentation_folder(runs, tmp_path, capsys):
    """`neurotrain generate` draws images from masks in turn into images/ + masks/, the layout the
    segmentation task's `segmentation_folder` reads; pair i is the image `predict` gives for seed + i."""
    from neurotrain_hf.cli import main

    masks = tmp_path / "masks_in"
    masks.mkdir()
    for k in range(2):
        mask = np.zeros((16, 16), np.uint8)
        mask[2 + 5 * k : 6 + 5 * k, :] = 255
        Image.fromarray(mask).save(masks / f"m{k}.PNG")
    out = tmp_path / "generated"
    assert (
        main(
            [
                "generate",
                str(runs["mask"]),
                "--masks",
                str(masks),
                "--num",
                "3",
                "--seed",
                "4",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    names = sorted(p.name for p in (out / "images").iterdir())
    assert names == ["m0_00000.png", "m0_00002.png", "m1_00001.png"]
    assert np.array_equal(
        np.asarray(Image.open(out / "masks" / "m1_00001.png")), np.asarray(Image.open(masks / "m1.PNG"))
    )
    code, err = predict_cli(
        [
            str(runs["mask"]),
            "--num",
            "1",
            "--seed",
            "5",
            "--mask",
            str(masks / "m1.PNG"),
            "--out",
            str(tmp_path / "p"),
        ],
        capsys,
    )
    assert code == 0, err
    assert np.array_equal(np.asarray(Image.open(out / "images" / "m1_00001.png")), pngs(tmp_path / "p")[0])

    from neurotrain_hf.config.sections import DatasetConfig
    from neurotrain_hf.data.registry import DATASETS
    from neurotrain_hf.tasks import get_task

    get_task("segmentation").load_sources()
    source = DATASETS.get("segmentation_folder")(DatasetConfig(name="segmentation_folder", root=str(out)))
    assert len(source.splits["train"]) == 3
    assert main(["generate", str(runs["class"]), "--masks", str(masks), "--num", "1", "--out", str(out)]) == 2
