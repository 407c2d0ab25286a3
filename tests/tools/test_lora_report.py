"""neurotrain analyze lora: the effective rank of each B·A equals the rank of a planted low-rank update, its
norm equals numpy's, and a real PEFT adapter folder is read by its own key names."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neurotrain_hf.cli import main


def _peft_adapter(folder, planted_rank: int):
    """A PEFT LoRA (r=8, alpha=16) on a two-layer MLP; layer 0's update has rank ``planted_rank``."""
    from peft import LoraConfig, get_peft_model

    base = torch.nn.Sequential(torch.nn.Linear(32, 24), torch.nn.ReLU(), torch.nn.Linear(24, 10))
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["0", "2"]))
    g = torch.Generator().manual_seed(0)
    updates = {}
    with torch.no_grad():
        for name, module in model.named_modules():
            if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
                a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
                a.copy_(torch.randn(a.shape, generator=g))
                if name.endswith("0"):  # B = U V with U: out x k -> rank(B A) = k
                    b.copy_(
                        torch.randn(b.shape[0], planted_rank, generator=g)
                        @ torch.randn(planted_rank, 8, generator=g)
                    )
                else:
                    b.copy_(torch.randn(b.shape, generator=g))
                updates[name.removeprefix("base_model.model.")] = (2.0 * (b.double() @ a.double())).numpy()
    model.save_pretrained(str(folder))
    return updates


@pytest.mark.parametrize("planted", [1, 3])
def test_effective_rank_and_norm_of_a_planted_update(tmp_path, planted, capsys):
    updates = _peft_adapter(tmp_path / "adapter", planted)
    assert main(["analyze", "lora", str(tmp_path / "adapter"), "--out", str(tmp_path / "out")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("2 adapted layers, r=8: numerical rank")
    report = json.loads((tmp_path / "out" / "lora_report.json").read_text())
    layers = report["layers"]
    assert len(layers) == 2
    for name, delta in updates.items():
        key = name
        assert layers[key]["rank"] == np.linalg.matrix_rank(delta.astype(np.float32))  # weights are float32
        assert layers[key]["norm"] == pytest.approx(np.linalg.norm(delta), rel=1e-5)
        np.testing.assert_allclose(
            layers[key]["singular_values"][:3], np.linalg.svd(delta, compute_uv=False)[:3], rtol=1e-5
        )
    ranks = sorted(v["rank"] for v in layers.values())
    assert ranks == [planted, 8]  # the planted layer, and a full-rank one
    assert (tmp_path / "out" / "lora_layers.png").stat().st_size > 5000


def test_a_run_without_adapter_is_one_line(classification_run, tmp_path, capsys):
    assert main(["analyze", "lora", str(classification_run), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no LoRA adapter" in err[0]
