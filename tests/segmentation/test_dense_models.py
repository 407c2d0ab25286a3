"""``monai/``, ``smp/`` and ``hf/segformer`` segmentation models: build, forward, save and reload offline."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForSemanticSegmentation

import neurotrain_hf  # noqa: F401  (registers the Auto classes)
from neurotrain_hf.errors import ConfigError
from neurotrain_hf.models import get_model
from neurotrain_hf.tasks.segmentation.dense import MonaiForSemanticSegmentation, SmpForSemanticSegmentation

AUTO = "AutoModelForSemanticSegmentation"
SMALL_UNET = {"channels": [4, 8, 16], "strides": [2, 2]}
TINY_SEGFORMER = {
    "num_encoder_blocks": 2,
    "depths": [1, 1],
    "hidden_sizes": [8, 16],
    "decoder_hidden_size": 16,
    "num_attention_heads": [1, 1],
    "sr_ratios": [2, 1],
    "strides": [4, 2],
    "patch_sizes": [7, 3],
    "mlp_ratios": [2, 2],
}
# name, kwargs, input spatial shape, output downscale
CASES = [
    ("monai/UNet", SMALL_UNET, (16, 16), 1),
    ("monai/AttentionUnet", SMALL_UNET, (16, 16), 1),
    ("monai/SegResNet", {"init_filters": 8}, (16, 16), 1),
    ("monai/DynUNet", {"filters": [8, 16, 32, 64]}, (16, 16), 1),
    ("monai/BasicUNet", {"features": [4, 4, 8, 16, 32, 4]}, (32, 32), 1),  # 1x1 bottleneck at 16
    ("monai/UNet", {"spatial_dims": 3, **SMALL_UNET}, (16, 16, 16), 1),
    ("smp/Unet:resnet18", {"encoder_depth": 3, "decoder_channels": [32, 16, 8]}, (64, 64), 1),
    ("smp/FPN:tu-test_resnet", {}, (64, 64), 1),
    ("hf/segformer", TINY_SEGFORMER, (32, 32), 4),
]


def build(name: str, kwargs: dict, num_labels: int = 3, channels: int = 1, **options):
    return get_model(
        name, {"kwargs": kwargs, **options}, num_labels=num_labels, in_channels=channels, auto_class=AUTO
    )


@pytest.mark.parametrize("num_labels", [1, 3])
@pytest.mark.parametrize(
    ("name", "kwargs", "shape", "scale"), CASES, ids=[f"{c[0]}-{len(c[2])}d" for c in CASES]
)
def test_build_forward_save_and_reload(tmp_path, name, kwargs, shape, scale, num_labels):
    torch.manual_seed(0)
    model = build(name, kwargs, num_labels).eval()
    x = torch.randn(2, 1, *shape)
    with torch.no_grad():
        logits = model(x).logits
    assert logits.shape == (2, num_labels, *(s // scale for s in shape))

    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = AutoModelForSemanticSegmentation.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model)
    with torch.no_grad():
        assert torch.equal(loaded(x).logits, logits)


@pytest.mark.parametrize("num_labels", [1, 3])
def test_loss_is_bce_for_binary_and_ce_otherwise(num_labels):
    model = build("monai/UNet", SMALL_UNET, num_labels).eval()
    x, labels = torch.randn(2, 1, 16, 16), torch.randint(0, max(num_labels, 2), (2, 16, 16))
    out = model(x, labels=labels)
    expected = (
        F.binary_cross_entropy_with_logits(out.logits[:, 0], labels.float())
        if num_labels == 1
        else F.cross_entropy(out.logits, labels)
    )
    assert torch.allclose(out.loss, expected)
    assert model(x).loss is None


def test_monai_defaults_fill_required_arguments():
    unet = build("monai/UNet", {})
    assert unet.config.network_kwargs == {"channels": [16, 32, 64, 128], "strides": [2, 2, 2]}
    assert build("monai/UNet", {"channels": [4, 8]}).config.network_kwargs["strides"] == [2]
    dyn = build("monai/DynUNet", {"filters": [8, 16, 32, 64]}).config.network_kwargs
    assert (dyn["kernel_size"], dyn["strides"], dyn["upsample_kernel_size"]) == (
        [3] * 4,
        [1, 2, 2, 2],
        [2, 2, 2],
    )


def test_dynunet_deep_supervision_goes_to_hidden_states(tmp_path):
    kwargs = {"filters": [8, 16, 32, 64], "deep_supervision": True, "deep_supr_num": 2}
    model = build("monai/DynUNet", kwargs).train()
    out = model(torch.randn(2, 1, 16, 16))
    assert out.logits.shape == (2, 3, 16, 16)
    assert [h.shape for h in out.hidden_states] == [(2, 3, 16, 16)] * 2
    assert model.eval()(torch.randn(2, 1, 16, 16)).hidden_states is None
    # DynUNet registers its blocks twice (skip layers): saved once, shared again after loading
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSemanticSegmentation.from_pretrained(tmp_path)
    assert loaded.net.skip_layers.downsample.conv1.conv.weight is loaded.net.input_block.conv1.conv.weight
    assert loaded.train()(torch.randn(2, 1, 16, 16)).hidden_states is not None


def test_list_outputs_are_upsampled_coarsest_first():
    model = build("monai/SegResNetDS", {"init_filters": 8, "dsdepth": 3}).train()
    raw = []
    model.net.register_forward_hook(lambda module, args, output: raw.append(output))
    out = model(torch.randn(2, 1, 32, 32))
    assert [r.shape[-1] for r in raw[0]] == [32, 16, 8]
    assert torch.equal(out.logits, raw[0][0])
    assert torch.equal(out.hidden_states[0], F.interpolate(raw[0][2], size=(32, 32)))
    assert torch.equal(out.hidden_states[1], F.interpolate(raw[0][1], size=(32, 32)))


def test_smp_size_multiple_and_pretrained_only_when_built(tmp_path, monkeypatch):
    import segmentation_models_pytorch as smp

    assert build("smp/FPN:tu-test_resnet", {}).size_multiple == 32
    seen = []
    create = smp.create_model

    def no_download(*args, encoder_weights=None, **kwargs):
        seen.append(encoder_weights)
        return create(*args, encoder_weights=None, **kwargs)

    monkeypatch.setattr(smp, "create_model", no_download)
    kwargs = {"encoder_depth": 3, "decoder_channels": [32, 16, 8]}
    model = build("smp/Unet:resnet18", kwargs, pretrained=True)
    assert isinstance(model, SmpForSemanticSegmentation) and model.size_multiple == 8
    model.save_pretrained(tmp_path)
    AutoModelForSemanticSegmentation.from_pretrained(tmp_path)
    assert seen == ["imagenet", None]  # a saved folder takes its encoder weights from model.safetensors


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("monai/SegResNett", {}, r"monai/SegResNett: unknown MONAI network \(did you mean 'SegResNet'\?\)"),
        ("monai/UNETR", {}, r"monai/UNETR: missing required \[model\] kwargs \['img_size'\]"),
        ("monai/UNet", {"nope": 1}, r"monai/UNet: bad kwargs .*'nope'"),
        ("monai/SegResNet", {"norm": "nope"}, r"monai/SegResNet: bad kwargs .*Unsupported option"),
        ("monai/DynUNet", {"kernel_size": [3, 3], "strides": [1, 2, 2]}, r"monai/DynUNet: bad kwargs"),
        ("smp/Unett:resnet18", {}, r"smp/Unett: unknown smp architecture \(did you mean 'Unet'\?\)"),
        ("smp/Unet:resnet19", {}, r"smp/Unet:resnet19: unknown smp encoder \(did you mean 'resnet18'\?\)"),
        ("smp/Unet:tu-not_a_model", {}, r"smp/Unet:tu-not_a_model: unknown timm encoder"),
        ("smp/Unet:resnet18", {"nope": 1}, r"smp/Unet:resnet18: unknown kwargs \['nope'\]"),
        ("smp/Unet:tu-test_resnet", {"nope": 1}, r"smp/Unet:tu-test_resnet: bad kwargs"),
        ("smp/Unet:resnet18", {"encoder_depth": 9}, r"smp/Unet:resnet18: bad kwargs"),
    ],
)
def test_config_errors_are_one_line(name, kwargs, message):
    with pytest.raises(ConfigError, match=message) as info:
        build(name, kwargs)
    assert "\n" not in str(info.value)


def test_monai_has_no_pretrained_weights():
    with pytest.raises(ConfigError, match="monai/UNet: no pretrained weights"):
        build("monai/UNet", SMALL_UNET, pretrained=True)
    assert isinstance(build("monai/Unet", SMALL_UNET), MonaiForSemanticSegmentation)  # MONAI's aliases work
