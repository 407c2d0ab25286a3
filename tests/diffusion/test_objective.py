"""The training objective against the papers' definitions, computed by hand from the linear betas of DDPM
(Ho et al. 2020): min-SNR weights (Hang et al. 2023) for epsilon, v and x0 prediction; v-prediction
identities (Salimans & Ho 2022); offset noise; condition dropout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from neurotrain_hf.tasks.diffusion.objective import (
    drop_conditions,
    min_snr_weights,
    sample_noise,
    snr,
    training_target,
)

STEPS = 1000
GAMMA = 5.0


def hand_alpha_bar() -> np.ndarray:
    """alpha_bar_t = prod_{s <= t} (1 - beta_s), betas linear from 1e-4 to 0.02 (the DDPM paper)."""
    betas = np.linspace(1e-4, 0.02, STEPS, dtype=np.float64)
    return np.cumprod(1.0 - betas)


def hand_x0(kind: str, prediction: np.ndarray, x_t: np.ndarray, a: np.ndarray) -> np.ndarray:
    """x0 implied by a prediction of each parameterisation."""
    if kind == "epsilon":
        return (x_t - np.sqrt(1 - a) * prediction) / np.sqrt(a)
    if kind == "v_prediction":
        return np.sqrt(a) * x_t - np.sqrt(1 - a) * prediction
    return prediction


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_min_snr_weighted_loss_is_min_snr_times_x0_error(kind):
    """The paper's loss is min(SNR, g) * ||x0 - x0_hat||^2 whatever the network predicts: our weight times
    the MSE to our target must equal it, for every timestep, the clipped ones (SNR > g) included."""
    scheduler = DDPMScheduler(num_train_timesteps=STEPS, beta_schedule="linear", prediction_type=kind)
    alpha_bar = hand_alpha_bar()
    assert np.allclose(scheduler.alphas_cumprod.double().numpy(), alpha_bar, rtol=1e-5)
    rng = np.random.default_rng(0)
    timesteps = np.array([0, 5, 50, 200, 400, 700, 999])
    x0 = rng.normal(size=(len(timesteps), 3, 4, 4))
    eps = rng.normal(size=x0.shape)
    prediction = rng.normal(size=x0.shape)
    a = alpha_bar[timesteps][:, None, None, None]
    x_t = np.sqrt(a) * x0 + np.sqrt(1 - a) * eps
    snr_hand = alpha_bar[timesteps] / (1 - alpha_bar[timesteps])
    x0_error = ((x0 - hand_x0(kind, prediction, x_t, a)) ** 2).reshape(len(timesteps), -1).mean(1)
    expected = np.minimum(snr_hand, GAMMA) * x0_error
    t = torch.as_tensor(timesteps)
    target = training_target(scheduler, torch.as_tensor(x0), torch.as_tensor(eps), t, kind).double()
    mse = ((torch.as_tensor(prediction) - target) ** 2).flatten(1).mean(1)
    ours = min_snr_weights(snr(scheduler.alphas_cumprod, t).double(), GAMMA, kind) * mse
    assert np.allclose(ours.numpy(), expected, rtol=2e-4)
    assert snr_hand[0] > GAMMA > snr_hand[-1]  # both sides of the clip are covered


def test_v_prediction_identities():
    """v = sqrt(a) eps - sqrt(1 - a) x0 (the scheduler's target) recovers x0 and eps from x_t to 1e-5."""
    scheduler = DDPMScheduler(num_train_timesteps=STEPS, prediction_type="v_prediction")
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(8, 3, 8, 8, generator=generator, dtype=torch.float64)
    eps = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
    t = torch.tensor([0, 1, 10, 100, 300, 600, 900, 999])
    a = torch.as_tensor(hand_alpha_bar()[t.numpy()]).view(-1, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
    v = training_target(scheduler, x0, eps, t, "v_prediction").double()
    assert torch.allclose(v, a.sqrt() * eps - (1 - a).sqrt() * x0, atol=1e-5)
    assert torch.allclose(a.sqrt() * x_t - (1 - a).sqrt() * v, x0, atol=1e-5)
    assert torch.allclose((1 - a).sqrt() * x_t + a.sqrt() * v, eps, atol=1e-5)


def test_unsupported_prediction_type_is_refused():
    with pytest.raises(ValueError, match="unsupported prediction_type 'flow'"):
        min_snr_weights(torch.ones(2), GAMMA, "flow")


def test_offset_noise_adds_one_constant_per_sample_and_channel():
    clean = torch.zeros(64, 3, 16, 16)
    plain = sample_noise(clean, torch.Generator().manual_seed(1))
    offset = sample_noise(clean, torch.Generator().manual_seed(1), offset_noise=0.5)
    difference = offset - plain
    assert torch.allclose(
        difference, difference[..., :1, :1].expand_as(difference), atol=1e-6
    )  # constant in space
    assert 0.4 < float(difference[:, :, 0, 0].std()) < 0.6  # scaled by the strength


def test_condition_dropout_nulls_the_class_and_the_mask_of_the_same_samples():
    labels = torch.arange(4).repeat(250)
    mask = torch.ones(1000, 1, 2, 2)
    new_labels, new_mask = drop_conditions(
        labels, mask, 0.25, null_class=9, generator=torch.Generator().manual_seed(0)
    )
    dropped = new_labels == 9
    assert 200 < int(dropped.sum()) < 300
    assert torch.equal(new_labels[~dropped], labels[~dropped])
    assert torch.equal(new_mask.flatten(1).sum(1) == 0, dropped)
