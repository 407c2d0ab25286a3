import pytest
import torch
import torch.nn.functional as F

from neurotrain_hf.errors import ConfigError
from neurotrain_hf.losses import LossOptions, build_loss


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(16, 5, generator=g), torch.randint(0, 5, (16,), generator=g)


def test_ce_matches_torch_with_smoothing_and_weights(batch):
    logits, labels = batch
    w = [1.0, 2.0, 0.5, 1.5, 3.0]
    fn = build_loss("ce", opts=LossOptions(label_smoothing=0.1, class_weights=w))
    ref = F.cross_entropy(logits, labels, weight=torch.tensor(w), label_smoothing=0.1)
    torch.testing.assert_close(fn(logits, labels), ref)


def test_num_items_in_batch_gives_sum_over_count(batch):
    logits, labels = batch
    fn = build_loss("ce")
    ref = F.cross_entropy(logits, labels, reduction="sum") / 40
    torch.testing.assert_close(fn(logits, labels, num_items_in_batch=40), ref)


def test_bce_one_hot(batch):
    logits, labels = batch
    ref = F.binary_cross_entropy_with_logits(logits, F.one_hot(labels, 5).float())
    torch.testing.assert_close(build_loss("bce")(logits, labels), ref)


def test_focal_reduces_to_ce_at_gamma_zero_and_downweights_easy(batch):
    logits, labels = batch
    ce = F.cross_entropy(logits, labels)
    torch.testing.assert_close(build_loss("focal", opts=LossOptions(focal_gamma=0.0))(logits, labels), ce)
    assert build_loss("focal", opts=LossOptions(focal_gamma=2.0))(logits, labels) < ce


def test_weighted_sum(batch):
    logits, labels = batch
    fn = build_loss("ce+focal", [1.0, 0.5])
    ref = F.cross_entropy(logits, labels) + 0.5 * build_loss("focal")(logits, labels)
    torch.testing.assert_close(fn(logits, labels), ref)


@pytest.mark.parametrize(
    ("spec", "weights", "match"),
    [
        ("ce+dice_typo", None, "unknown loss 'dice_typo'"),
        ("ce+focal", [1.0], "2 loss terms"),
        ("", None, "empty"),
    ],
)
def test_bad_loss_specs(spec, weights, match):
    with pytest.raises(ConfigError, match=match):
        build_loss(spec, weights)


def test_class_weights_length_checked(batch):
    logits, labels = batch
    with pytest.raises(ConfigError, match="class_weights has 2 values"):
        build_loss("ce", opts=LossOptions(class_weights=[1.0, 2.0]))(logits, labels)
