"""``DiffusionTask``: the hooks the runner, Tester, Predictor, CLI and Hub push call for diffusion.

Inference is a sampling loop (``inference.py``); a model folder is a diffusers pipeline folder
(``pipeline.py``) with neurotrain's ``config.json`` beside ``model_index.json``.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import ConfigError, NeuroTrainError
from ..base import SETTINGS_KEY, OnnxGraph, SampleBatch, Task, TaskData, TestOutputs, loss_text
from . import models as _models  # noqa: F401  (registers the UNets)

DEFAULT_SETTINGS = {"sampler": "ddim", "sampling_steps": 50, "guidance_scale": 1.0, "sample_seed": 0}


class DiffusionTask(Task):
    """Noise -> image, optionally conditioned on a class id or a mask."""

    name = "diffusion"
    hub_task = "unconditional-image-generation"
    description = "denoising diffusion image generation"
    run_files = ("samples",)

    # --- training ---------------------------------------------------------------------------------
    def prepare_data(self, config) -> TaskData:
        from .data import prepare
        from .models import require_diffusers

        require_diffusers()
        return prepare(config)

    def build_model(self, config, data: TaskData) -> Any:
        from diffusers import DDPMScheduler

        from ...models import get_model
        from .models import DiffusionModel, DiffusionModelConfig

        info, args = data.info, config.training
        in_channels = info.channels + info.mask_channels
        num_embeds = len(info.class_names) + 1 if info.conditioning == "class" else None  # + the null class
        name = config.model.name
        if name.startswith("hf/"):
            unet = self._hub_unet(name.removeprefix("hf/"), config.model.pretrained)
        else:
            options = asdict(config.model)
            options["kwargs"] = {
                **(options.get("kwargs") or {}),
                "sample_size": info.image_size,
                "out_channels": info.channels,
            }
            options["num_labels"] = num_embeds
            unet = get_model(name, options, in_channels=in_channels)
        got = (
            unet.config.in_channels,
            unet.config.out_channels,
            getattr(unet.config, "num_class_embeds", None),
        )
        if got != (in_channels, info.channels, num_embeds):
            raise ConfigError(
                f"[model] {name}: (in, out channels, class embeddings) {got} do not fit the data "
                f"{(in_channels, info.channels, num_embeds)}"
            )
        scheduler = DDPMScheduler(
            num_train_timesteps=args.num_train_timesteps,
            beta_schedule=args.beta_schedule,
            prediction_type=args.prediction_type,
        )
        model_config = DiffusionModelConfig(
            conditioning=info.conditioning,
            class_names=info.class_names,
            mask_channels=info.mask_channels,
            image_size=info.image_size,
            channels=info.channels,
        )
        return DiffusionModel(model_config, unet, scheduler, ema=args.ema_decay is not None)

    @staticmethod
    def _hub_unet(repo: str, pretrained: bool) -> Any:
        """A diffusers UNet from a Hub repo or local folder (a pipeline's ``unet/`` or a UNet folder)."""
        from diffusers import UNet2DModel
        from huggingface_hub import file_exists

        local = Path(repo)
        if local.is_dir():
            nested = (local / "unet" / "config.json").is_file()
        else:
            nested = file_exists(repo, "unet/config.json")
        subfolder = "unet" if nested else None
        if pretrained:
            return UNet2DModel.from_pretrained(repo, subfolder=subfolder)
        return UNet2DModel.from_config(UNet2DModel.load_config(repo, subfolder=subfolder))

    def build_trainer(self, config, model: Any, data: TaskData, callbacks: list | None = None) -> Any:
        from .inference import SamplingInference
        from .pipeline import save_pipeline
        from .trainer import DiffusionTrainer

        args = config.training
        settings = {
            "sampler": args.sampler,
            "sampling_steps": args.sampling_steps,
            "guidance_scale": args.guidance_scale,
            "sample_seed": args.sample_seed,
        }
        setattr(model.config, SETTINGS_KEY, settings)
        inference = SamplingInference(
            settings, args.fid_features, args.fid_image_size, args.snr_gamma, segmenter=args.segmenter
        )
        return DiffusionTrainer(
            model,
            args,
            train_dataset=data.splits["train"],
            eval_dataset=data.splits.get("valid"),
            inference=inference,
            callbacks=callbacks,
            save_folder=lambda folder, m: save_pipeline(folder, m, m.config.to_dict()),
        )

    def settings(self, model_config: Any) -> dict[str, Any]:
        saved = getattr(model_config, SETTINGS_KEY, None) or {}
        return {**DEFAULT_SETTINGS, **saved}

    def inference(self, model_config: Any = None) -> Any:
        from .inference import SamplingInference

        return SamplingInference(self.settings(model_config))

    # --- saved models -------------------------------------------------------------------------------
    @classmethod
    def claims(cls, model_config: dict[str, Any]) -> bool:
        return model_config.get("model_type") == "neurotrain_diffusion"

    def onnx_graphs(self, model: Any, batch: dict[str, Any]) -> list[OnnxGraph]:
        """The denoiser (the sampling weights): noisy images, timesteps (spread over the schedule) and the
        condition -> the prediction; the sampler's loop stays outside the graph."""
        sample = batch["pixel_values"].float()
        steps = int(model.noise_scheduler.config.num_train_timesteps)
        inputs = {"sample": sample, "timesteps": torch.linspace(0, steps - 1, len(sample)).long()}
        if model.config.num_classes:
            labels = batch.get("class_labels")
            inputs["class_labels"] = (
                labels if labels is not None else torch.zeros(len(sample), dtype=torch.long)
            )
        if model.config.mask_channels:
            inputs["mask"] = batch["mask"].float()
        return [OnnxGraph("denoiser", Denoiser(model, list(inputs)), inputs, ["prediction"])]

    def load_model(self, folder: str | Path) -> Any:
        """A pipeline folder as the ``DiffusionModel`` the trainer trained (its EMA weights, no EMA copy)."""
        import json

        from .models import DiffusionModel, DiffusionModelConfig, require_diffusers

        require_diffusers()
        from diffusers import DDPMScheduler

        from .pipeline import load_pipeline

        pipe = load_pipeline(folder)
        saved = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
        config = DiffusionModelConfig.from_dict(saved)
        return DiffusionModel(config, pipe.unet, DDPMScheduler.from_config(pipe.scheduler.config), ema=False)

    def load_processor(self, folder: str | Path) -> Any:
        return None  # images are generated: nothing to preprocess

    def build_demo(self, folder: Path, model_name: str, examples: Any = None, **options: Any) -> Any:
        from .demo import build_demo

        return build_demo(folder, model_name, examples, **options)

    # --- prediction ---------------------------------------------------------------------------------
    def requests(self, model_config: Any, options: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """``neurotrain predict RUN --num N --seed S [--class K | --mask FILE]`` -> named sample requests."""
        num = 1 if options.get("num") is None else int(options["num"])
        seed = int(options.get("seed") or 0)
        if not 1 <= num <= 10_000:
            raise NeuroTrainError(f"--num {num}: give 1 to 10000 samples")
        if options.get("prompt") is not None:
            raise NeuroTrainError("--prompt: this model is not text-conditioned")
        item: dict[str, Any] = {}
        if options.get("class") is not None:
            item["class"] = self._class_id(model_config, options["class"])
        elif model_config.conditioning == "class" and options.get("mask") is None:
            raise NeuroTrainError(
                f"this model is class-conditioned: give --class (one of 0..{model_config.num_classes - 1} or a name)"
            )
        if options.get("mask") is not None:
            if model_config.conditioning != "mask":
                raise NeuroTrainError(
                    f"--mask: this model is conditioned on {model_config.conditioning!r}, not on masks"
                )
            item["mask"] = self.read_mask(options["mask"], model_config.image_size)
        return [(f"sample_{seed + i:04d}", {**item, "noise_seed": seed + i}) for i in range(num)]

    @staticmethod
    def _class_id(model_config: Any, value: Any) -> int:
        names = list(model_config.class_names)
        if model_config.conditioning != "class":
            raise NeuroTrainError("--class: this model is not class-conditioned")
        if str(value) in names:
            return names.index(str(value))
        try:
            index = int(value)
        except ValueError:
            index = -1
        if not 0 <= index < len(names):
            raise NeuroTrainError(
                f"--class {value}: outside the trained classes 0..{len(names) - 1} ({', '.join(names)})"
            )
        return index

    @staticmethod
    def read_mask(source: Any, size: int) -> torch.Tensor:
        """A mask file (or array) -> (1, size, size) in {-1, 1}; a size other than the model's is one line."""
        from ...data.images import decode_image, inspect_image
        from .data import mask_tensor

        if isinstance(source, (str, Path)):
            if not Path(source).is_file():
                raise NeuroTrainError(f"{source}: file not found")
            error = inspect_image(str(source))["error"]
            if error:
                raise NeuroTrainError(f"{source}: cannot read this mask ({error})")
        mask = decode_image(source if not isinstance(source, Path) else str(source), 1)
        if tuple(mask.shape[-2:]) != (size, size):
            raise NeuroTrainError(
                f"{source}: mask size {tuple(mask.shape[-2:])[::-1]} (w, h) differs from the model's image size {size}x{size}"
            )
        return mask_tensor(mask, size, str(source))

    def preprocess(self, processor: Any, items: Any, settings: Any = None) -> dict[str, Any]:
        inputs: dict[str, Any] = {
            "noise_seed": torch.as_tensor([it["noise_seed"] for it in items], dtype=torch.long)
        }
        inputs["sample_id"] = inputs["noise_seed"]
        if any("class" in it for it in items):
            inputs["class_labels"] = torch.as_tensor([it["class"] for it in items], dtype=torch.long)
        if any("mask" in it for it in items):
            inputs["mask"] = torch.stack([it["mask"] for it in items])
        return inputs

    def predictions(
        self, outputs: Any, model: Any, inputs: dict[str, Any] | None = None, settings: Any = None
    ) -> list[dict[str, Any]]:
        images = outputs["images"].float().cpu().permute(0, 2, 3, 1).numpy()
        return [{"image": image} for image in images]

    def summary(self, record: dict[str, Any]) -> dict[str, Any]:
        image = record["image"]
        return {"shape": list(image.shape), "mean": round(float(image.mean()), 6)}

    def save_prediction(
        self, record: dict[str, Any], source: str | Path, out_dir: str | Path | None
    ) -> list[Path]:
        if out_dir is None:
            return []
        from PIL import Image

        path = Path(out_dir) / f"{Path(str(source)).name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(to_uint8(record["image"])).save(path)
        return [path]

    def finish_prediction(self, records: list[dict[str, Any]], out_dir: str | Path | None) -> list[Path]:
        """All generated images as one grid (``grid.png``)."""
        if out_dir is None or not records:
            return []
        from .inference import save_grid

        images = torch.stack(
            [torch.from_numpy(np.ascontiguousarray(r["image"])).permute(2, 0, 1) for r in records]
        )
        return [save_grid(images, Path(out_dir) / "grid.png")]

    def generate_dataset(
        self, predictor: Any, conditions: str, num: int, seed: int, out: str | Path
    ) -> dict[str, Any]:
        """Images drawn from each mask of a folder in turn -> ``out/images/<mask stem>_<i>.png`` and the mask
        beside it in ``out/masks/`` (0/255): the ``segmentation_folder`` layout the segmentation task reads."""
        from PIL import Image

        from .sources import IMAGE_SUFFIXES

        config = predictor.model.config
        if config.conditioning != "mask":
            raise NeuroTrainError(
                f"neurotrain generate needs a mask-conditioned model (this one: {config.conditioning!r})"
            )
        folder = Path(conditions)
        masks = (
            sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if folder.is_dir()
            else []
        )
        if not masks:
            raise NeuroTrainError(f"--masks {conditions}: no mask images in this folder")
        if num < 1:
            raise NeuroTrainError(f"--num {num}: give at least 1")
        read = {p: self.read_mask(p, config.image_size) for p in masks}  # every mask checked before any work
        out = Path(out)
        (out / "images").mkdir(parents=True, exist_ok=True)
        (out / "masks").mkdir(parents=True, exist_ok=True)
        for start in range(0, num, predictor.batch_size):
            chosen = [masks[i % len(masks)] for i in range(start, min(num, start + predictor.batch_size))]
            items = [{"mask": read[p], "noise_seed": seed + start + k} for k, p in enumerate(chosen)]
            for k, (path, record) in enumerate(zip(chosen, predictor.predict(items))):
                name = f"{path.stem}_{start + k:05d}.png"
                Image.fromarray(to_uint8(record["image"])).save(out / "images" / name)
                mask = ((read[path][0] > 0).numpy() * 255).astype(np.uint8)
                Image.fromarray(mask).save(out / "masks" / name)
        return {
            "pairs": num,
            "masks": len(masks),
            "out": str(out),
            "dataset": {"name": "segmentation_folder", "root": str(out)},
        }

    # --- test outputs -------------------------------------------------------------------------------
    def sample_records(self, batch: SampleBatch, out: TestOutputs) -> list[dict[str, Any]]:
        labels = batch.references.get("classes") if isinstance(batch.references, dict) else None
        rows = []
        for k, i in enumerate(batch.indices):
            row = {
                "index": i,
                "image": f"{out.split}_samples/{i:05d}.png",
                "loss": loss_text(batch.losses, k),
            }
            if labels is not None:
                row["class"] = int(labels[k])
            rows.append(row)
        return rows

    def write_samples(self, batch: SampleBatch, out: TestOutputs) -> None:
        from PIL import Image

        folder = out.folder / f"{out.split}_samples"
        folder.mkdir(parents=True, exist_ok=True)
        for k, i in enumerate(batch.indices):
            image = batch.predictions["images"][k].float().cpu().permute(1, 2, 0).numpy()
            Image.fromarray(to_uint8(image)).save(folder / f"{i:05d}.png")

    def finish_outputs(self, out: TestOutputs) -> None:
        """The first 64 test samples (every rank wrote its own) as one grid."""
        from ...data.images import decode_image, to_float
        from .inference import save_grid

        files = sorted((out.folder / f"{out.split}_samples").glob("*.png"))[:64]
        if files:
            channels = 1 if getattr(out.info, "channels", 3) == 1 else 3
            images = torch.stack([to_float(decode_image(str(f), channels)) for f in files])
            save_grid(images, out.folder / f"{out.split}_samples.png")

    # --- sharing ---------------------------------------------------------------------------------------
    def metric_protocol(self, key: str, config: dict[str, Any]) -> str:
        training = config.get("training", {})
        features = training.get("fid_features")
        kind = (
            "Inception-v3 pool features (comparable to published FID)"
            if features == "inception"
            else f"the features of the classifier {features} (NOT comparable to Inception-FID)"
        )
        sampling = (
            f"{training.get('sampler', 'ddim')} sampler, {training.get('sampling_steps', 50)} steps, guidance "
            f"{training.get('guidance_scale', 1.0)}"
        )
        what = {
            "fid": f"FID between the generated and real images of the split ({sampling}) through {kind}; "
            "PIL-bicubic resize; sample count in fid_samples",
            "kid": f"KID (polynomial kernel, unbiased MMD) through {kind}",
            "sample_accuracy": f"accuracy of the classifier {features} on class-conditioned samples ({sampling})",
            "mask_dice": f"mean per-image Dice between each conditioning mask and the prediction of the "
            f"segmenter {training.get('segmenter')} on its generated image ({sampling})",
        }
        return what.get(key, key)

    def load_snippet(self, repo_id: str) -> str:
        return (
            "from neurotrain_hf import NeuroDiffusionPipeline  # class/mask conditioning; unconditional: "
            "diffusers.DDPMPipeline\n\n"
            f'pipe = NeuroDiffusionPipeline.from_pretrained("{repo_id}")\n'
            "images = pipe(class_labels=[0, 1, 2], num_inference_steps=50).images"
        )


def to_uint8(image: np.ndarray) -> np.ndarray:
    """(H, W, C) float in [0, 1] -> uint8 (H, W, C), or (H, W) for one channel."""
    pixels = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    return pixels[..., 0] if pixels.shape[-1] == 1 else pixels


class Denoiser(torch.nn.Module):
    """The diffusion model's one denoising call with positional inputs named by ``names`` (the exporter
    passes inputs by position; which conditions exist depends on the model)."""

    def __init__(self, model: torch.nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        named = dict(zip(self.names, inputs))
        return self.model(named["sample"], named["timesteps"], named.get("class_labels"), named.get("mask"))
