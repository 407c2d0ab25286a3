"""``neurotrain analyze attention``: where a trained image model looks in one image, as a heatmap.

ViT-style vision towers (found by their config: attention heads and a patch size) get attention rollout
(Abnar & Zuidema 2020); convolutional networks get Grad-CAM (Selvaraju et al. 2017) on the last
convolution before the head, for the score the task names (``Task.explain_score``). Writes an overlay
PNG, the heatmap at the model's input size (.npy) and a JSON summary with the peak.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import NeuroTrainError, first_line
from ..models.registry import logits_of

CONVS = (nn.Conv2d, nn.Conv3d)
MAX_PREFIX_TOKENS = 16  # CLS, distillation and register tokens before the patch tokens


# --- attention rollout ------------------------------------------------------------------------------
def vision_tower(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The ViT-style vision encoder to roll out (its name, the module): the model itself when its config
    has attention heads and a patch size, else the submodule holding its ``vision_config``; None for
    models without one (CNNs, U-Nets, detectors)."""
    config = getattr(model, "config", None)
    vision = getattr(config, "vision_config", None) or config
    if not (isinstance(getattr(vision, "num_attention_heads", None), int) and _patch(vision)):
        return None
    if vision is config:
        return "", model
    for name, module in model.named_modules():
        if getattr(module, "config", None) is vision and hasattr(module, "main_input_name"):
            return name, module
    return None


def _patch(config: Any) -> int:
    patch = getattr(config, "patch_size", None)
    patch = patch[0] if isinstance(patch, (list, tuple)) and len(set(patch)) == 1 else patch
    return patch if isinstance(patch, int) and patch > 0 else 0


def attention_rollout(attentions: Sequence[Any]) -> np.ndarray:
    """Joint attention of one input through the layers: each layer's (heads, N, N) weights averaged over
    heads, plus the identity (the residual path), rows renormalised, multiplied from the first layer up."""
    joint = None
    for layer in attentions:
        weights = torch.as_tensor(layer).double().mean(0)
        weights = weights + torch.eye(weights.shape[-1], dtype=weights.dtype)
        weights = weights / weights.sum(-1, keepdim=True)
        joint = weights if joint is None else weights @ joint
    if joint is None:
        raise NeuroTrainError("the model returned no attention weights to roll out")
    return joint.numpy()


def rollout_grid(joint: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """The patch grid of a rollout: the first (CLS) token's row over the patch tokens; towers without
    tokens before the patches (SigLIP) get the mean row."""
    patches = grid[0] * grid[1]
    prefix = joint.shape[-1] - patches
    if not 0 <= prefix <= MAX_PREFIX_TOKENS:
        raise NeuroTrainError(
            f"cannot place {joint.shape[-1]} attention tokens on the {grid[0]}x{grid[1]} patch grid"
        )
    row = joint[0, prefix:] if prefix else joint.mean(0)
    return row.reshape(grid)


def rollout(model: nn.Module, tower: nn.Module, pixels: torch.Tensor) -> np.ndarray:
    """Attention rollout of one image through the tower (eager attention: the fused kernels return no
    weights) -> the (rows, cols) patch grid."""
    if hasattr(model, "set_attn_implementation"):
        try:
            model.set_attn_implementation("eager")
        except (ValueError, ImportError) as exc:
            raise NeuroTrainError(f"cannot switch the model to eager attention ({first_line(exc)})") from None
    with torch.no_grad():
        outputs = tower(**{tower.main_input_name: pixels}, output_attentions=True)
    attentions = getattr(outputs, "attentions", None)
    if not attentions:
        raise NeuroTrainError(f"{type(tower).__name__} returned no attention weights to roll out")
    patch = _patch(tower.config)
    grid = (pixels.shape[-2] // patch, pixels.shape[-1] // patch)
    return rollout_grid(attention_rollout([a[0].float().cpu() for a in attentions]), grid)


# --- Grad-CAM -----------------------------------------------------------------------------------------
def grad_cam(
    model: nn.Module, pixels: torch.Tensor, score: Callable[[Any], tuple[torch.Tensor, int]]
) -> tuple[np.ndarray, int, str]:
    """Grad-CAM of one input: the gradients of ``score(outputs)`` w.r.t. the last convolution's output
    before the head, averaged over space as channel weights; the ReLU of the weighted channel sum.
    Returns the map at that layer's resolution, the target class and the layer's name."""
    names = {module: name for name, module in model.named_modules() if isinstance(module, CONVS)}
    if not names:
        raise NeuroTrainError(
            f"{type(model).__name__} has no convolution for Grad-CAM and no ViT-style vision tower to roll out"
        )
    seen: list[tuple[nn.Module, torch.Tensor]] = []
    handles = [m.register_forward_hook(lambda m, _, out: seen.append((m, out))) for m in names]
    try:
        with torch.enable_grad():
            pixels = pixels.detach().clone().requires_grad_(pixels.is_floating_point())
            outputs = model(**{getattr(model, "main_input_name", "pixel_values"): pixels})
            value, target = score(outputs)
            module, features = _features(seen, logits_of(outputs))
            (grads,) = torch.autograd.grad(value, features, allow_unused=True)
    finally:
        for handle in handles:
            handle.remove()
    if grads is None:
        raise NeuroTrainError(f"the score does not depend on {names[module]}, the last convolution")
    spatial = tuple(range(2, features.dim()))
    weights = grads.mean(dim=spatial, keepdim=True)
    cam = F.relu((weights * features).sum(1))[0]
    return cam.detach().float().cpu().numpy(), target, names[module]


def _features(seen: list[tuple[nn.Module, torch.Tensor]], logits: torch.Tensor) -> tuple[nn.Module, Any]:
    """The last convolution run before the head: the very last one is the head itself when it makes the
    output's channels and the output is dense (a U-Net's 1x1 head) or it is a 1x1 class head."""
    if not seen:
        raise NeuroTrainError("no convolution ran in the model's forward pass")
    module, out = seen[-1]
    kernel_1x1 = all(k == 1 for k in module.kernel_size)
    if len(seen) > 1 and out.shape[1] == logits.shape[1] and (logits.dim() > 2 or kernel_1x1):
        module, out = seen[-2]
    return module, out


# --- the command ---------------------------------------------------------------------------------------
def _model_inputs(predictor: Any, image: str | Path, tower: bool) -> dict[str, Any]:
    """One image through the task's reading and preprocessing (what ``neurotrain predict`` does); for a
    vision tower whose task wants more than an image (a VLM's question), the processor's image part."""
    task = predictor.task
    item = task.read_input(image)
    try:
        return task.preprocess(predictor.processor, [item], predictor.settings)
    except NeuroTrainError:
        image_processor = getattr(predictor.processor, "image_processor", None)
        if not tower or image_processor is None:
            raise
    from PIL import Image, ImageOps

    with Image.open(image) as picture:
        rgb = ImageOps.exif_transpose(picture).convert("RGB")
    return dict(image_processor(images=[rgb], return_tensors="pt"))


def _upsample(native: np.ndarray, size: tuple[int, ...], mode: str) -> np.ndarray:
    tensor = torch.from_numpy(np.ascontiguousarray(native, dtype=np.float32))[None, None]
    if mode != "nearest":
        mode = "bilinear" if len(size) == 2 else "trilinear"
        return F.interpolate(tensor, size=size, mode=mode, align_corners=False)[0, 0].numpy()
    return F.interpolate(tensor, size=size, mode="nearest")[0, 0].numpy()


def _peak(native: np.ndarray, size: tuple[int, ...]) -> list[int] | None:
    """The centre, in input pixels, of the native map's largest cell (None for an all-zero map)."""
    if not np.any(native > 0):
        return None
    index = np.unravel_index(int(np.argmax(native)), native.shape)
    return [int((i + 0.5) * s / n) for i, s, n in zip(index, size, native.shape)]


def _picture(pixels: torch.Tensor, heat: np.ndarray, peak: list[int] | None) -> tuple[np.ndarray, np.ndarray]:
    """The input as a displayable (H, W, 3) float image and the 2D heatmap beside it (volumes: the slice
    through the peak along the first spatial axis)."""
    image = pixels[0].detach().float().cpu().numpy()
    if heat.ndim == 3:
        depth = peak[0] if peak else heat.shape[0] // 2
        image, heat = image[:, depth], heat[depth]
    image = image[:3] if image.shape[0] == 3 else image[:1].repeat(3, 0)
    image = image.transpose(1, 2, 0)
    span = float(image.max() - image.min())
    return (image - image.min()) / (span or 1.0), heat


def _write_overlay(path: Path, image: np.ndarray, heat: np.ndarray, peak: Any, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    span = float(heat.max() - heat.min())  # min-max: rollout maps sit on a near-uniform floor
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.imshow(image, interpolation="nearest")
    ax.imshow((heat - heat.min()) / (span or 1.0), cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
    if peak:
        ax.plot(peak[-1], peak[-2], marker="+", color="white", markersize=14, mew=2)
    ax.set_title(title, fontsize=10)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def analyze_attention(
    run: str | Path, image: str | Path, out_dir: str | Path, target: int | None = None
) -> dict[str, Any]:
    """Explain one image with a trained run (or model folder): rollout for ViT-style towers, Grad-CAM for
    CNNs; writes ``<image>_attention.png|.npy|.json`` under ``out_dir`` and returns the JSON summary."""
    from ..predictor import Predictor
    from ..tasks.base import Task

    predictor = Predictor.from_pretrained(run)
    model, task = predictor.model, predictor.task
    found = vision_tower(model)
    if found is None and type(task).explain_score is Task.explain_score:
        raise NeuroTrainError(
            f"{run}: a {task.name} model ({type(model).__name__}) cannot be explained: it has no ViT-style "
            "vision tower to roll out and its outputs no class score for Grad-CAM"
        )
    if found is not None and target is not None:
        raise NeuroTrainError(
            f"--target {target}: attention rollout does not depend on a class; leave it out"
        )
    inputs = _model_inputs(predictor, image, found is not None)
    key = found[1].main_input_name if found else getattr(model, "main_input_name", "pixel_values")
    if not torch.is_tensor(inputs.get(key)):
        raise NeuroTrainError(f"{image}: the model's input {key!r} is not an image tensor")
    pixels = inputs[key].float() if found else inputs[key]
    size = tuple(int(s) for s in pixels.shape[2:])
    try:
        if found:
            native = rollout(model, found[1], pixels)
            method, layer, target = "rollout", found[0] or type(model).__name__, None
        else:
            native, target, layer = grad_cam(
                model, pixels, lambda outputs: task.explain_score(outputs, target, predictor.settings)
            )
            method = "grad-cam"
    except NeuroTrainError:
        raise
    except (RuntimeError, ValueError) as exc:
        raise NeuroTrainError(f"{image}: the model cannot take this input ({first_line(exc)})") from None
    if native.ndim == len(size) and all(n >= s for n, s in zip(native.shape, size)):
        native = native[tuple(slice(0, s) for s in size)]  # a model that pads its input at the end
    heat = _upsample(native, size, "nearest" if method == "rollout" else "linear")
    peak = _peak(native, size)
    id2label = getattr(model.config, "id2label", None) or {}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(str(image).rstrip("/")).name.split(".")[0] or "input"
    files = {kind: out / f"{stem}_attention.{ext}" for kind, ext in (("overlay", "png"), ("heatmap", "npy"))}
    files["summary"] = out / f"{stem}_attention.json"
    result: dict[str, Any] = {
        "method": method,
        "image": str(image),
        "model": type(model).__name__,
        "layer": layer,
        "target": target,
        "target_name": None if target is None else str(id2label.get(target, target)),
        "input_size": list(size),
        "grid": list(native.shape),
        "peak": peak,
        "peak_value": float(native.max()),
        "files": {kind: str(path) for kind, path in files.items()},
    }
    np.save(files["heatmap"], heat.astype(np.float32))
    picture, slice_heat = _picture(pixels, heat, peak)
    title = f"{method}" + ("" if target is None else f", class {result['target_name']}")
    _write_overlay(files["overlay"], picture, slice_heat, peak, title)
    files["summary"].write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result


def summary_line(result: dict[str, Any]) -> str:
    """The one line ``neurotrain analyze attention`` prints last."""
    what = result["method"] + ("" if result["target"] is None else f" for class {result['target_name']}")
    size = "x".join(str(s) for s in result["input_size"])
    where = (
        "no positive evidence (all-zero map)"
        if result["peak"] is None
        else f"peak at {tuple(result['peak'])} of {size}"
    )
    return f"{result['image']}: {what} ({result['layer']}), {where} -> {result['files']['overlay']}"
