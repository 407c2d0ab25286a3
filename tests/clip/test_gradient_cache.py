"""`[training] contrastive_chunk`: the gradient-cached step gives the gradients of the full-batch loss."""

import pytest
import torch

from neurotrain_hf.errors import ConfigError
from neurotrain_hf.runner import build
from neurotrain_hf.tasks.clip.trainer import ClipTrainer

from .test_clip_data import clip_config


def gradients(trainer, batch, chunk: int) -> tuple[float, dict[str, torch.Tensor]]:
    trainer.args.contrastive_chunk = chunk
    trainer.model.zero_grad(set_to_none=True)
    loss = trainer.training_step(trainer.model, dict(batch))
    return float(loss), {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(
    "model,loss", [("clip_tiny", "infonce"), ("siglip_tiny", "siglip")], ids=["infonce", "siglip"]
)
def test_chunked_gradients_equal_the_full_batch(tmp_path, model, loss):
    config = clip_config(tmp_path, model={"name": model}, training={"loss": loss, "batch_size": 12})
    _, _, trainer = build(config)
    trainer.current_gradient_accumulation_steps = 1  # what the training loop sets before each step
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["pixel_values"].shape[0] == 12
    full_loss, full = gradients(trainer, batch, 0)  # the Trainer's own training_step
    for chunk in (5, 12, 1):  # uneven chunks, one chunk, single samples
        loss_value, chunked = gradients(trainer, batch, chunk)
        assert loss_value == pytest.approx(full_loss, rel=1e-6, abs=1e-7)
        assert chunked.keys() == full.keys() and "logit_scale" in {k.split(".")[-1] for k in full}
        for name, grad in full.items():
            torch.testing.assert_close(chunked[name], grad, rtol=1e-5, atol=1e-6, msg=f"{name} chunk {chunk}")


def test_chunking_under_deepspeed_is_refused_in_one_line(tmp_path, monkeypatch):
    _, _, trainer = build(clip_config(tmp_path, training={"contrastive_chunk": 4}))
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")  # what `accelerate launch` with a ZeRO config sets
    with pytest.raises(ConfigError, match=r"^\[training\] contrastive_chunk runs several backward passes"):
        ClipTrainer(trainer.model, trainer.args)
