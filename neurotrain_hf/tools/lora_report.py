"""``neurotrain analyze lora RUN``: where a LoRA adaptation went. Per adapted layer: the norm of its update
``scale * B @ A``, its singular values, the numerical rank and the rank holding 99% of its energy; a rank
well under ``r`` everywhere says ``r`` was larger than the adaptation needed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

ENERGY = 0.99  # share of the update's squared singular values the energy rank keeps


def adapter_folder(path: str | Path) -> Path:
    """A run's ``adapter/`` or an adapter folder itself (``adapter_config.json`` + weights)."""
    path = Path(path)
    for folder in (path / "adapter", path):
        if (folder / "adapter_config.json").is_file():
            return folder
    raise DataError(f"{path}: no LoRA adapter (adapter_config.json) in it or in its adapter/ folder")


def scaling(config: dict[str, Any], module: str) -> tuple[int, float]:
    """(r, scale) of a module: ``rank_pattern`` / ``alpha_pattern`` first, then ``r`` and ``lora_alpha``;
    rsLoRA divides by sqrt(r)."""
    r = int(
        next((v for k, v in (config.get("rank_pattern") or {}).items() if module.endswith(k)), config["r"])
    )
    alpha = float(
        next(
            (v for k, v in (config.get("alpha_pattern") or {}).items() if module.endswith(k)),
            config["lora_alpha"],
        )
    )
    return r, alpha / (np.sqrt(r) if config.get("use_rslora") else r)


def layer_stats(a: np.ndarray, b: np.ndarray, scale: float) -> dict[str, Any]:
    """Update norm, singular values and ranks of ``scale * B @ A`` (convolutions flattened per output)."""
    a2, b2 = a.reshape(a.shape[0], -1).astype(np.float64), b.reshape(b.shape[0], -1).astype(np.float64)
    delta = scale * (b2 @ a2)
    sv = np.linalg.svd(delta, compute_uv=False)
    top = sv[0] if sv.size else 0.0
    rank = int((sv > top * max(delta.shape) * np.finfo(np.float32).eps).sum()) if top > 0 else 0
    energy = np.cumsum(sv**2) / max(float((sv**2).sum()), 1e-300)
    return {
        "norm": float(np.linalg.norm(delta)),
        "rank": rank,
        "energy_rank": int(np.searchsorted(energy, ENERGY) + 1) if top > 0 else 0,
        "singular_values": [float(s) for s in sv[: a.shape[0]]],
        "shape": list(delta.shape),
    }


def analyze_lora(source: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Per-layer statistics of a saved LoRA adapter, as JSON and a PNG (norm and ranks per layer)."""
    from safetensors.numpy import load_file

    folder = adapter_folder(source)
    config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    weights_file = folder / "adapter_model.safetensors"
    if not weights_file.is_file():
        raise DataError(f"{folder}: no adapter_model.safetensors")
    weights = load_file(str(weights_file))
    layers: dict[str, Any] = {}
    for key in sorted(weights):
        if ".lora_A." not in key:
            continue
        module = key.split(".lora_A.")[0]
        b_key = key.replace(".lora_A.", ".lora_B.")
        if b_key not in weights:
            raise DataError(f"{weights_file}: {key} has no matching lora_B weight")
        r, scale = scaling(config, module.removeprefix("base_model.model."))
        layers[module.removeprefix("base_model.model.")] = {
            "r": r,
            **layer_stats(weights[key], weights[b_key], scale),
        }
    if not layers:
        raise DataError(f"{weights_file}: no LoRA layers (lora_A / lora_B weights)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "adapter": str(folder),
        "r": int(config["r"]),
        "lora_alpha": config["lora_alpha"],
        "layers": layers,
    }
    report["plot"] = str(_plot(layers, out))
    (out / "lora_report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    return report


def _plot(layers: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(layers)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(6, 0.35 * len(names)), 6), sharex=True)
    top.bar(range(len(names)), [layers[n]["norm"] for n in names])
    top.set_ylabel("||scale B A||_F")
    bottom.bar(range(len(names)), [layers[n]["r"] for n in names], color="0.85", label="r")
    bottom.bar(range(len(names)), [layers[n]["rank"] for n in names], label="numerical rank")
    bottom.plot(
        range(len(names)), [layers[n]["energy_rank"] for n in names], "k.", label=f"{ENERGY:.0%} energy rank"
    )
    bottom.set_xticks(range(len(names)), [n[-40:] for n in names], rotation=90, fontsize=6)
    bottom.legend(fontsize=7)
    fig.tight_layout()
    path = out / "lora_layers.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def summary_line(report: dict[str, Any]) -> str:
    """Layers, ranks against r, and the layer that moved most."""
    layers = report["layers"]
    ranks = [v["rank"] for v in layers.values()]
    energy = [v["energy_rank"] for v in layers.values()]
    largest = max(layers, key=lambda n: layers[n]["norm"])
    return (
        f"{len(layers)} adapted layers, r={report['r']}: numerical rank {min(ranks)}-{max(ranks)} "
        f"(median {int(np.median(ranks))}), {ENERGY:.0%} of the update within rank {max(energy)}; largest update "
        f"{largest} (norm {layers[largest]['norm']:.3g}); plot: {report['plot']}"
    )
