import pytest

from neurotrain_hf.errors import RegistryError
from neurotrain_hf.registry import Registry


def test_register_get_list_and_wildcards():
    reg = Registry("thing")

    @reg.register()
    def alpha():
        return 1

    reg.register("beta_2")(lambda: 2)
    assert reg.get("alpha") is alpha
    assert reg.list() == ["alpha", "beta_2"]
    assert reg.list("b*") == ["beta_2"]
    assert "alpha" in reg


def test_duplicate_registration_is_refused():
    reg = Registry("thing")
    reg.register("a")(object())
    with pytest.raises(RegistryError, match="already registered"):
        reg.register("a")(object())


def test_unknown_name_lists_known_and_suggests():
    reg = Registry("model")
    reg.register("simple_cnn")(object())
    reg.register("mlp")(object())
    with pytest.raises(RegistryError) as err:
        reg.get("simple_cn")
    msg = str(err.value)
    assert "did you mean 'simple_cnn'" in msg and "known: mlp, simple_cnn" in msg
    assert "\n" not in msg


def test_prefix_resolvers():
    reg = Registry("model")
    reg.register_prefix("zoo")(lambda rest: f"built {rest}")
    assert reg.get("zoo/abc") == "built abc"
    with pytest.raises(RegistryError, match="zoo/<name>"):
        reg.get("other/abc")


def test_builtin_registries_are_populated():
    from neurotrain_hf.data import list_datasets
    from neurotrain_hf.losses import list_losses
    from neurotrain_hf.metrics import list_metrics
    from neurotrain_hf.models import list_models
    from neurotrain_hf.tasks import list_tasks

    assert {"digits", "mnist", "cifar10", "cifar100", "imagefolder", "imagenet", "hub"} <= set(
        list_datasets()
    )
    assert {"ce", "bce", "focal"} <= set(list_losses())
    assert {"accuracy", "precision", "recall", "f1", "auc", "top3", "top5"} <= set(list_metrics())
    assert "simple_cnn" in list_models()
    assert list_tasks() == ["classification", "clip", "detection", "diffusion", "segmentation", "vlm"]
    assert {"color_shapes", "vessel_patches", "image_classes", "image_masks"} <= set(list_datasets())
    assert {"fid", "kid", "sample_accuracy"} <= set(list_metrics()) and "unet2d" in list_models()
    assert {"drive", "chase_db1", "stare", "hrf", "isic2018", "synthetic_retina", "hybrid"} <= set(
        list_datasets()
    )
    assert {"dice", "tversky", "focal_tversky", "cldice"} <= set(list_losses())
    assert "unet" in list_models()
    assert {"synthetic_shapes", "captions_folder", "coco_captions", "flickr30k", "hub_captions"} <= set(
        list_datasets()
    )
    assert {"clip_retrieval", "zero_shot_accuracy"} <= set(list_metrics())
    assert {
        "synthetic_3d",
        "btcv",
        "brats",
        "msd",
        "coco",
        "voc",
        "yolo",
        "synthetic_shapes_detection",
    } <= set(list_datasets())
    assert {"fasterrcnn", "maskrcnn", "detr_tiny", "rtdetr_tiny"} <= set(list_models())
