"""A task that only exists in the tests: proves the task interface carries a label-free, own-loss model.

Reconstruction of digit images: batches hold ``pixel_values`` only, the model returns its own loss
(as CLIP with ``return_loss`` or a diffusion model does), no loss_fn, no metrics.
"""

from __future__ import annotations

import datasets
import numpy as np
import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import ModelOutput

from neurotrain_hf.tasks import TaskSpec, register_task
from neurotrain_hf.tasks.base import Task, TaskData
from neurotrain_hf.trainer.neuro_trainer import NeuroTrainer


class ToyConfig(PretrainedConfig):
    model_type = "neurotrain_toy_autoencoder"

    def __init__(self, hidden: int = 16, **kwargs) -> None:
        self.hidden = hidden
        super().__init__(**kwargs)


class ToyAutoencoder(PreTrainedModel):
    config_class = ToyConfig
    main_input_name = "pixel_values"

    def __init__(self, config: ToyConfig) -> None:
        super().__init__(config)
        self.encode = nn.Linear(64, config.hidden)
        self.decode = nn.Linear(config.hidden, 64)
        self.post_init()

    def _init_weights(self, module) -> None:
        pass

    def forward(self, pixel_values: torch.Tensor, **kwargs) -> ModelOutput:
        flat = pixel_values.flatten(1)
        recon = self.decode(torch.tanh(self.encode(flat)))
        return ModelOutput(loss=((recon - flat) ** 2).mean(), logits=recon)


def to_pixels(batch: dict) -> dict:
    return {"pixel_values": torch.as_tensor(np.asarray(batch["image"], dtype=np.float32)).view(-1, 1, 8, 8)}


class ToyTask(Task):
    name = "toy_reconstruction"

    def prepare_data(self, config) -> TaskData:
        from sklearn.datasets import load_digits

        images = load_digits().images.astype(np.float32).reshape(-1, 64) / 16.0
        n = config.dataset.max_samples or len(images)
        ds = datasets.Dataset.from_dict({"image": images[: n + 64]})
        splits = datasets.DatasetDict(
            {
                "train": ds.select(range(n)),
                "valid": ds.select(range(n, n + 32)),
                "test": ds.select(range(n + 32, n + 64)),
            }
        )
        for split in splits.values():
            split.set_transform(to_pixels)
        return TaskData(splits, info=None)

    def build_model(self, config, data):
        return ToyAutoencoder(ToyConfig(**config.model.kwargs))

    def build_trainer(self, config, model, data, callbacks=None):
        return NeuroTrainer(
            model,
            config.training,
            train_dataset=data.splits["train"],
            eval_dataset=data.splits["valid"],
            inference=self.inference(),
            callbacks=callbacks,
        )

    def load_model(self, folder):
        return ToyAutoencoder.from_pretrained(str(folder))


def register() -> None:
    """Register the task in this process (tests/test_task_contract.py unregisters it after each test)."""
    from neurotrain_hf.tasks import TASKS

    if "toy_reconstruction" not in TASKS.list():
        register_task(
            TaskSpec(
                name="toy_reconstruction",
                training="neurotrain_hf.trainer.neuro_config:NeuroTrainingArguments",
                task="tests.helpers.toy_task:ToyTask",
            )
        )
