"""Run under `torchrun --nproc_per_node 2`: the CLIP/SigLIP losses with gathered negatives on 2 ranks x B
equal one process's on the concatenated 2B batch (loss value and DDP-averaged gradients).

Writes ``<out>/rank<r>.json`` with, per variant, the largest difference to the single-process reference.
"""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from neurotrain_hf.tasks.clip.loss import clip_loss, siglip_loss


def towers(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    image = torch.nn.Linear(12, 8)
    text = torch.nn.Linear(10, 8)
    with torch.no_grad():
        for p in (*image.parameters(), *text.parameters()):
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    scale = torch.nn.Parameter(torch.tensor(2.3))
    bias = torch.nn.Parameter(torch.tensor(-1.5))
    return image, text, scale, bias


def loss_and_grads(x, y, name, **options):
    image, text, scale, bias = towers()
    params = [*image.parameters(), *text.parameters(), scale, bias]
    if name == "siglip":
        loss = siglip_loss(image(x), text(y), scale, bias, **options)
    else:
        loss = clip_loss(image(x), text(y), scale, **options)
    loss.backward()
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    return loss.detach(), grads


def main(out: Path) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    g = torch.Generator().manual_seed(123)
    batch = 6
    x_all = torch.randn(world * batch, 12, generator=g)
    y_all = torch.randn(world * batch, 10, generator=g)
    x, y = x_all[rank * batch : (rank + 1) * batch], y_all[rank * batch : (rank + 1) * batch]
    result = {"world_size": world}
    for name in ("infonce", "siglip"):
        # the single-process reference on the full batch (no process group involved: world is faked as 1)
        ref_loss, ref_grads = _single(x_all, y_all, name)
        for local in (False, True):
            loss, grads = loss_and_grads(x, y, name, gather_with_grad=True, local_loss=local)
            dist.all_reduce(loss)
            loss /= world  # the logged loss: mean over ranks
            for grad in grads:  # what DDP does with the gradients
                dist.all_reduce(grad)
                grad /= world
            result[f"{name}_local{int(local)}"] = {
                "loss": float((loss - ref_loss).abs()),
                "grad": max(float((a - b).abs().max()) for a, b in zip(grads, ref_grads)),
                "grad_scale": max(float(b.abs().max()) for b in ref_grads),
            }
    (out / f"rank{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


def _single(x, y, name):
    import neurotrain_hf.tasks.clip.loss as loss_module

    real = loss_module._world
    loss_module._world = lambda: (0, 1)
    try:
        return loss_and_grads(x, y, name)
    finally:
        loss_module._world = real


if __name__ == "__main__":
    main(Path(sys.argv[1]))
