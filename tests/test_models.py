import pytest
import torch

from neurotrain_hf.config.sections import ModelConfig
from neurotrain_hf.errors import ConfigError, RegistryError
from neurotrain_hf.models import get_model, logits_of

from .conftest import TINY_VIT


@pytest.mark.parametrize(
    ("name", "kwargs", "channels", "size"),
    [
        ("simple_cnn", {"channels": [4, 8]}, 1, 8),
        ("mlp", {"image_size": 8}, 1, 8),
        ("timm/test_resnet", {}, 1, 32),
        ("torchvision/resnet18", {}, 1, 32),
        (
            "hf/vit",
            TINY_VIT,
            3,
            16,
        ),
    ],
)
def test_get_model_builds_offline_and_outputs_logits(name, kwargs, channels, size):
    model = get_model(
        name,
        ModelConfig(name=name, kwargs=kwargs),
        num_labels=7,
        in_channels=channels,
        auto_class="AutoModelForImageClassification",  # the classification task's (hf/ models use it)
    )
    out = logits_of(model(torch.randn(2, channels, size, size)))
    assert out.shape == (2, 7)


def test_config_num_labels_wins_and_dict_config():
    model = get_model(
        config={"name": "simple_cnn", "num_labels": 3, "kwargs": {"channels": [4]}},
        num_labels=9,
        in_channels=1,
    )
    assert model.head.out_features == 3


def test_unknown_models_fail_clearly():
    with pytest.raises(RegistryError, match="did you mean 'simple_cnn'"):
        get_model("simple_cn", num_labels=2)
    with pytest.raises(ConfigError, match="timm/not_a_model: unknown timm model"):
        get_model("timm/not_a_model", num_labels=2)
    with pytest.raises(ConfigError, match="bad kwargs"):
        get_model("simple_cnn", {"kwargs": {"nope": 1}}, num_labels=2, in_channels=1)
    with pytest.raises(ConfigError, match="num_labels is unknown"):
        get_model("simple_cnn")


def test_trust_remote_code_is_off_unless_asked(monkeypatch):
    seen = {}
    from transformers import AutoModelForImageClassification

    def fake(config, trust_remote_code=False):
        seen["trust"] = trust_remote_code
        return torch.nn.Linear(1, 1)

    monkeypatch.setattr(AutoModelForImageClassification, "from_config", fake)
    get_model(
        "hf/vit", {"kwargs": {"hidden_size": 8}}, num_labels=2, auto_class="AutoModelForImageClassification"
    )
    assert seen["trust"] is False
