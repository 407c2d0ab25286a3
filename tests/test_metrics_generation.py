"""FID and KID against torchmetrics and hand-written loops; the streaming accumulator; the clean-fid resize
against a hand-written PIL loop; the classifier and Inception feature extractors."""

import numpy as np
import pytest
import torch
from PIL import Image

from neurotrain_hf.errors import NeuroTrainError
from neurotrain_hf.metrics.generation import (
    ClassifierFeatures,
    GenerationAccumulator,
    InceptionFeatures,
    inception_available,
    kid,
    resize_for_features,
)

from .metric_refs import hand_mmd, random_features, torchmetrics_fid, torchmetrics_kid


def fid_of(gen, real) -> float:
    acc = GenerationAccumulator(max_kid_samples=0)
    acc.update({"features": gen}, {"features": real})
    return acc.compute(["fid"])["fid"]


@pytest.fixture(scope="module")
def digits():
    """sklearn's 8x8 digits as float (N, 1, 8, 8) images in [0, 1], and their labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return torch.tensor(data.images[:400] / 16, dtype=torch.float32)[:, None], data.target[:400]


@pytest.fixture(scope="module")
def cnn_folder(tmp_path_factory):
    """An untrained simple_cnn (the digits recipe's model) saved with a normalising processor."""
    from neurotrain_hf.data.processor import NeuroImageProcessor
    from neurotrain_hf.models import get_model

    folder = tmp_path_factory.mktemp("cnn")
    torch.manual_seed(0)
    model = get_model("simple_cnn", {"kwargs": {"channels": [8, 16]}}, num_labels=10, in_channels=1)
    model.save_pretrained(str(folder))
    NeuroImageProcessor(num_channels=1, image_mean=[0.4], image_std=[0.3]).save_pretrained(str(folder))
    return folder, model.eval()


@pytest.mark.parametrize("seed", range(3))
def test_fid_and_kid_equal_torchmetrics(seed):
    gen, real = random_features(seed, n_gen=50 + 20 * seed, n_real=80, dim=5 + seed)
    assert fid_of(gen, real) == pytest.approx(torchmetrics_fid(gen, real), rel=1e-6)
    gen, real = gen[:40], real[:40]
    mean, std = torchmetrics_kid(gen, real)
    assert kid(gen, real, subsets=1, subset_size=40) == pytest.approx((mean, std), rel=1e-9, abs=1e-12)
    # the subset size is clamped to the sample counts
    assert kid(gen, real, subsets=1, subset_size=10_000)[0] == pytest.approx(mean, rel=1e-9)


def test_kid_equals_hand_written_mmd_and_has_a_spread_over_subsets():
    gen, real = random_features(7, n_gen=25, n_real=25, dim=4)
    assert kid(gen, real, subsets=1, subset_size=25)[0] == pytest.approx(hand_mmd(gen, real), rel=1e-9)
    mean, std = kid(gen, real, subsets=20, subset_size=10, seed=1)
    assert std > 0 and abs(mean - hand_mmd(gen, real)) < 4 * std  # subsets estimate the same MMD
    assert kid(gen, real, subsets=20, subset_size=10, seed=1) == (mean, std)  # seeded


def test_fid_is_zero_for_identical_sets_and_grows_with_shifted_means():
    gen, real = random_features(3, n_gen=200, n_real=200, dim=8)
    scale = np.trace(np.cov(gen.T))
    assert abs(fid_of(gen, gen)) < 1e-6 * scale
    # the same samples shifted by delta in every coordinate: equal covariances, FID = dim * delta^2
    for delta in (0.25, 0.5, 1.0, 2.0):
        assert fid_of(gen + delta, gen) == pytest.approx(8 * delta**2, rel=1e-6)
    # independent samples of shifting means: strictly increasing
    rng = np.random.default_rng(0)
    base = rng.normal(size=(300, 8))
    fids = [fid_of(rng.normal(size=(300, 8)) + delta, base) for delta in (0.0, 0.2, 0.5, 1.0)]
    assert fids == sorted(fids) and fids[0] < 0.5 < fids[-1]


def test_streaming_in_batches_and_merged_equals_all_at_once():
    gen, real = random_features(11, n_gen=90, n_real=75, dim=5)
    rng = np.random.default_rng(11)
    logits, labels = rng.normal(size=(90, 4)), rng.integers(0, 4, 90)
    hand_accuracy = sum(int(np.argmax(row) == y) for row, y in zip(logits, labels)) / 90
    keys = ["fid", "kid", "sample_accuracy"]

    def acc_over(parts):
        acc = GenerationAccumulator(max_kid_samples=50, kid_subsets=5, kid_subset_size=20)
        for g, r in parts:
            acc.update({"features": gen[g], "logits": logits[g]}, {"features": real[r], "labels": labels[g]})
        return acc

    whole = acc_over([(slice(None), slice(None))]).compute(keys)
    batches = acc_over(
        [(slice(0, 30), slice(0, 20)), (slice(30, 60), slice(20, 50)), (slice(60, 90), slice(50, 75))]
    )
    first, second = acc_over([(slice(0, 40), slice(0, 30))]), acc_over([(slice(40, 90), slice(30, 75))])
    first.merge(second)
    for out in (batches.compute(keys), first.compute(keys)):
        assert out["fid"] == pytest.approx(whole["fid"], rel=1e-9)
        assert (out["kid"], out["kid_std"]) == (whole["kid"], whole["kid_std"])  # the same first 50 rows
        assert out["sample_accuracy"] == whole["sample_accuracy"] == pytest.approx(hand_accuracy)
        assert out["fid_samples"] == whole["fid_samples"] == 90
    assert whole["fid"] == pytest.approx(torchmetrics_fid(gen, real), rel=1e-6)
    assert whole["kid"] == kid(gen[:50], real[:50], subsets=5, subset_size=20)[0]  # bounded: first rows


def test_too_few_samples_give_nan_and_bad_input_one_line():
    acc = GenerationAccumulator()
    assert np.isnan(acc.compute(["fid", "kid", "sample_accuracy"])["fid"])
    acc.update({"features": np.ones((1, 3))}, {"features": np.zeros((5, 3))})
    out = acc.compute(["fid", "kid"])
    assert np.isnan(out["fid"]) and np.isnan(out["kid"]) and out["fid_samples"] == 1
    bad = np.zeros((4, 3))
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"^sample 3: generated features contain NaN"):
        acc.update({"features": bad}, None)
    with pytest.raises(ValueError, match=r"expected \(N, 3\) feature vectors, got shape \(2, 4\)"):
        acc.update(None, {"features": np.zeros((2, 4))})
    with pytest.raises(ValueError, match="unknown generation metric 'is'"):
        acc.compute(["is"])


def hand_pil_bicubic(images_uint8, size):
    """clean-fid's make_resizer("PIL", "bicubic"): per channel float "F" images, BICUBIC, clipped."""
    out = np.empty((len(images_uint8), images_uint8.shape[-1], size, size), np.float32)
    for b, image in enumerate(images_uint8):
        for c in range(image.shape[-1]):
            channel = Image.fromarray(image[:, :, c].astype(np.float32))
            out[b, c] = np.asarray(channel.resize((size, size), resample=Image.BICUBIC)).clip(0, 255)
    return out / 255


def test_resize_pitfall_pil_bicubic_vs_torch_bilinear(digits, cnn_folder):
    rng = np.random.default_rng(0)
    fine = (np.indices((40, 40)).sum(0) % 2)[None, :, :, None] * rng.integers(100, 256, (60, 1, 1, 3))
    images = np.clip(fine + rng.integers(0, 60, (60, 40, 40, 3)), 0, 255).astype(np.uint8)
    images[::6, :, :20], images[::6, :, 20:] = 0, 255  # step edges: bicubic overshoots, clipped to [0, 1]
    pil = resize_for_features(images, 13)
    np.testing.assert_array_equal(pil.numpy(), hand_pil_bicubic(images, 13))
    assert torch.equal(resize_for_features(pil, 13), pil)  # already at size
    as_float = torch.from_numpy(images).permute(0, 3, 1, 2) / 255  # float (B, C, H, W) in [0, 1]
    torch.testing.assert_close(resize_for_features(as_float, 13), pil, rtol=0, atol=1e-5)
    bilinear = resize_for_features(images, 13, method="torch-bilinear")
    assert bilinear.shape == pil.shape == (60, 3, 13, 13)
    features = ClassifierFeatures(cnn_folder[0])  # 1-channel model: RGB goes to grey by luma
    pil_f, bil_f = features(pil)[0], features(bilinear)[0]
    assert fid_of(pil_f, bil_f) > 1e-3  # the same images, two resizes
    # between two halves of the images, the resize mismatch outweighs the sampling noise many times
    assert fid_of(pil_f[:30], bil_f[30:]) > 10 * fid_of(pil_f[:30], pil_f[30:])


def test_classifier_features_are_the_penultimate_layer_and_fid_grows_with_noise(digits, cnn_folder):
    images, _ = digits
    folder, model = cnn_folder
    features = ClassifierFeatures(folder)
    feats, logits = features(images[:16])
    with torch.no_grad():
        x = (images[:16] - 0.4) / 0.3  # the processor's normalisation
        reference = model.net[:-1](x)  # the input of the final linear layer
        torch.testing.assert_close(feats, reference, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(logits, model(pixel_values=x).logits, rtol=1e-5, atol=1e-7)
    assert reference.abs().max() > 0.1  # values large enough for the tolerances to mean something
    assert features.feature_kind == "input of the classification head" and feats.shape == (16, 16)
    generator = torch.Generator().manual_seed(0)
    real = features(images[:200])[0]
    fids = []
    for std in (0.0, 0.1, 0.2, 0.4):
        noisy = (images[200:400] + std * torch.randn(images[200:400].shape, generator=generator)).clamp(0, 1)
        fids.append(fid_of(features(noisy)[0], real))
    assert fids == sorted(fids) and fids[-1] > 5 * fids[0]


def test_timm_classifier_features_are_its_pre_logits(tmp_path):
    from neurotrain_hf.models import get_model

    model = get_model(
        "timm/test_resnet", {}, num_labels=5, in_channels=3, auto_class="AutoModelForImageClassification"
    )
    model.eval().save_pretrained(str(tmp_path))
    features = ClassifierFeatures(tmp_path)  # no processor saved: inputs as given
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))  # 2x2 after the stem
    feats, logits = features(x)
    with torch.no_grad():
        timm_model = model.timm_model
        pre_logits = timm_model.forward_head(timm_model.forward_features(x), pre_logits=True)
        # untrained: features ~1e-6, so relative tolerances only
        torch.testing.assert_close(feats, pre_logits, rtol=1e-4, atol=1e-10)
        torch.testing.assert_close(logits, timm_model(x), rtol=1e-4, atol=1e-10)
    assert features.feature_kind == "last hidden state"


def test_missing_feature_extractors_fail_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert not inception_available()
    with pytest.raises(NeuroTrainError) as info:
        InceptionFeatures()
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "torch" / "hub" / "checkpoints") in message
    assert "weights-inception-2015-12-05-6726825d.pth is missing" in message
    with pytest.raises(NeuroTrainError, match=f"^{tmp_path}: not an image classifier folder"):
        ClassifierFeatures(tmp_path)


def test_inception_features_load_only_the_cached_file(tmp_path, monkeypatch):
    """Random weights written where torch hub caches the FID Inception: loaded from there (no download),
    images resized to 299 and quantised to uint8 as torch-fidelity expects."""
    from torch_fidelity import feature_extractor_inceptionv3 as fidelity

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(fidelity, "load_state_dict_from_url", lambda *a, **k: None)  # no download
    with monkeypatch.context() as patch:
        patch.setattr(fidelity.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
        torch.manual_seed(0)
        reference = fidelity.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    weights = tmp_path / "hub" / "checkpoints" / "weights-inception-2015-12-05-6726825d.pth"
    weights.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), weights)
    assert inception_available()
    images = np.random.default_rng(0).integers(0, 256, (1, 37, 41, 1), dtype=np.uint8)  # grey, not 299
    feats, logits = InceptionFeatures()(images)
    as_uint8 = torch.from_numpy(np.round(hand_pil_bicubic(images, 299) * 255)).to(torch.uint8)
    with torch.no_grad():
        expected = reference(as_uint8.expand(1, 3, 299, 299))[0]
    assert logits is None and feats.shape == (1, 2048)
    torch.testing.assert_close(feats, expected, rtol=1e-5, atol=0)  # tiny values: no absolute tolerance
