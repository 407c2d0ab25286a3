"""Gradient caching for contrastive batches larger than memory (``[training] contrastive_chunk = K``).

GradCache (Gao et al. 2021): (1) embed the batch K samples at a time without autograd graphs; (2) compute
the contrastive loss on the full batch of embeddings (negatives gathered from every process as usual)
and its gradient with respect to the embeddings and the temperature; (3) embed each chunk again, with
its graph, and back-propagate the cached gradient through it. The gradients equal the full-batch ones;
the activations held at once are one chunk's. Each chunk's second forward replays the random state of
its first (dropout masks agree). Under DDP the gradients are all-reduced once, on the last chunk.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch


@contextlib.contextmanager
def replayed_rng(state: tuple[torch.Tensor, list[torch.Tensor] | None]) -> Iterator[None]:
    """Run with the CPU (and CUDA) random state ``state``; the state before is restored afterwards."""
    cpu, cuda = state
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if cuda else []):
        torch.set_rng_state(cpu)
        if cuda:
            torch.cuda.set_rng_state_all(cuda)
        yield


def rng_state() -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    return torch.get_rng_state(), (torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)


def rows(inputs: dict[str, Any], part: slice) -> dict[str, Any]:
    """The samples ``part`` of a batch of model inputs (tensors and lists cut along the first axis)."""
    return {k: v[part] if isinstance(v, torch.Tensor | list) else v for k, v in inputs.items()}


def cached_gradient_step(
    model: torch.nn.Module,
    inputs: dict[str, Any],
    chunk: int,
    loss_of: Callable[[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]], torch.Tensor],
    logit_params: Callable[[], dict[str, torch.Tensor]],
    backward: Callable[[torch.Tensor], None],
    no_sync: Callable[[], Any],
    scale: float = 1.0,
) -> torch.Tensor:
    """One training step's forward and backward in chunks of ``chunk`` samples; returns the loss.

    ``loss_of(image, text, params)`` is the contrastive loss of the full batch; ``logit_params()`` the
    temperature (and bias) as the model's last forward used them; ``backward`` the accelerator's;
    ``no_sync()`` the context that defers DDP's all-reduce; ``scale`` divides the loss (accumulation).
    """
    size = next(v.shape[0] for v in inputs.values() if isinstance(v, torch.Tensor))
    parts = [slice(start, min(start + chunk, size)) for start in range(0, size, chunk)]
    states, images, texts = [], [], []
    with torch.no_grad():  # (1) embeddings of the whole batch, no graphs
        for part in parts:
            states.append(rng_state())
            out = model(**rows(inputs, part))
            images.append(out.image_embeds)
            texts.append(out.text_embeds)
    params = {k: v.detach().requires_grad_() for k, v in logit_params().items()}
    image = torch.cat(images).requires_grad_()
    text = torch.cat(texts).requires_grad_()
    with torch.enable_grad():  # (2) the full-batch loss and its gradient w.r.t. the embeddings
        loss = loss_of(image, text, params) / scale
        leaves = [image, text, *params.values()]
        grads = dict(zip(["image", "text", *params], torch.autograd.grad(loss, leaves)))
    for i, part in enumerate(parts):  # (3) each chunk again, with its graph, and the cached gradient
        last = i == len(parts) - 1
        with contextlib.nullcontext() if last else no_sync(), replayed_rng(states[i]):
            out = model(**rows(inputs, part))
            surrogate = (out.image_embeds * grads["image"][part]).sum()
            surrogate = surrogate + (out.text_embeds * grads["text"][part]).sum()
            if last:  # the temperature's gradient, through the forward DDP watches
                for name, value in logit_params().items():
                    surrogate = surrogate + (value * grads[name]).sum()
            backward(surrogate)
    return loss.detach()
