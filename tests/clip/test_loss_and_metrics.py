"""CLIP/SigLIP losses against their formulas, gathered negatives on 2 processes, streaming retrieval metrics."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score

from neurotrain_hf.metrics.registry import StreamingMetrics
from neurotrain_hf.metrics.retrieval import compute_clip_retrieval, retrieval_from_embeddings
from neurotrain_hf.tasks.clip.loss import clip_loss, siglip_loss

from ..conftest import free_port, run_python


def _embeddings(n=7, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)


def test_infonce_is_the_symmetric_cross_entropy_with_a_clamped_temperature():
    image, text = _embeddings()
    for log_scale, used in ((math.log(10.0), 10.0), (7.0, 100.0)):  # ln(1100) is clamped to ln(100)
        expected = 0.0
        for i in range(7):  # written out per row, not vectorised like the implementation
            sims = torch.stack([F.cosine_similarity(image[i], text[j], dim=0) for j in range(7)]) * used
            sims_t = torch.stack([F.cosine_similarity(text[i], image[j], dim=0) for j in range(7)]) * used
            expected += (-torch.log_softmax(sims, 0)[i] - torch.log_softmax(sims_t, 0)[i]) / 2
        got = clip_loss(image, text, torch.tensor(log_scale))
        assert torch.allclose(got, expected / 7, atol=1e-5)
    # per pair (the Tester's per-sample loss) from the same implementation: it averages to the batch loss
    per_pair = clip_loss(image, text, torch.tensor(7.0), reduction="none")
    assert per_pair.shape == (7,) and torch.allclose(
        per_pair.mean(), clip_loss(image, text, torch.tensor(7.0))
    )
    sims = F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T * 100.0
    first = (-torch.log_softmax(sims[0], 0)[0] - torch.log_softmax(sims[:, 0], 0)[0]) / 2
    assert torch.allclose(per_pair[0], first, atol=1e-5)


def test_contrastive_losses_are_in_the_loss_registry():
    from neurotrain_hf.losses import LOSSES, list_losses

    assert list_losses(kinds=["contrastive"]) == ["infonce", "siglip"]
    assert (
        LOSSES.get("infonce").factory(None) is clip_loss and LOSSES.get("siglip").factory(None) is siglip_loss
    )
    assert "infonce" not in list_losses(kinds=["logits", "dense"])


def test_siglip_is_the_pairwise_sigmoid_loss_per_image():
    image, text = _embeddings()
    scale, bias = torch.tensor(math.log(10.0)), torch.tensor(-2.0)
    expected = 0.0
    for i in range(7):
        for j in range(7):
            z = 1.0 if i == j else -1.0
            logit = 10.0 * F.cosine_similarity(image[i], text[j], dim=0) + bias
            expected += -F.logsigmoid(z * logit)
    assert torch.allclose(siglip_loss(image, text, scale, bias), expected / 7, atol=1e-5)


@pytest.mark.slow
def test_gathered_negatives_on_two_processes_equal_one_process_on_the_joint_batch(tmp_path):
    proc = run_python(
        [
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(free_port()),
            "tests/helpers/clip_gather.py",
            str(tmp_path),
        ],
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in (0, 1):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert result["world_size"] == 2
        for variant in ("infonce_local0", "infonce_local1", "siglip_local0", "siglip_local1"):
            diff = result[variant]
            assert diff["loss"] < 1e-5, (variant, diff)
            assert diff["grad"] < 1e-5 * diff["grad_scale"], (variant, diff)


def test_chunked_retrieval_equals_the_full_matrix_protocol():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(23, 6))
    owner = rng.integers(0, 23, 70)  # unsorted, several captions per image, some images without any
    text = image[owner] + rng.normal(size=(70, 6)) * 1.2
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    full = compute_clip_retrieval(unit(text) @ unit(image).T, owner)
    chunked = retrieval_from_embeddings(text, image, owner, chunk=4)
    assert full.keys() == chunked.keys()
    for key in full:
        assert chunked[key] == pytest.approx(full[key], abs=1e-12), key
    assert 0 < full["image_to_text_recall@1"] < 1  # the test is not trivial


def test_streaming_accumulator_merges_ranks_and_counts_zero_shot():
    rng = np.random.default_rng(1)
    image = rng.normal(size=(10, 4)).astype(np.float32)
    captions = [rng.normal(size=(k, 4)).astype(np.float32) for k in rng.integers(1, 4, 10)]
    logits = rng.normal(size=(10, 3)).astype(np.float32)
    labels = rng.integers(0, 3, 10)

    def batch(lo, hi):
        preds = {"image_embeds": image[lo:hi], "text_embeds": captions[lo:hi], "zero_shot": logits[lo:hi]}
        return preds, {"labels": labels[lo:hi]}

    whole = StreamingMetrics(["clip_retrieval", "zero_shot_accuracy"], ["retrieval"])
    whole.update(*batch(0, 10))
    rank0, rank1 = (
        StreamingMetrics(["clip_retrieval", "zero_shot_accuracy"], ["retrieval"]) for _ in range(2)
    )
    rank0.update(*batch(0, 4))
    rank0.update(*batch(4, 6))
    rank1.update(*batch(6, 10))
    rank0.merge(rank1)
    merged, one = rank0.compute(), whole.compute()
    assert merged == pytest.approx(one)
    assert one["zero_shot_accuracy"] == pytest.approx(accuracy_score(labels, logits.argmax(1)))
    owner = np.repeat(np.arange(10), [len(c) for c in captions])
    reference = retrieval_from_embeddings(np.concatenate(captions), image, owner)
    assert one["text_to_image_recall@1"] == pytest.approx(reference["text_to_image_recall@1"])
