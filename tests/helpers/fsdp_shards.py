"""Under `torchrun --nproc_per_node 2` on CPU (gloo): shard a model folder's weights with FSDP2's
``fully_shard`` and write them with Accelerate's own ``save_fsdp_model`` (SHARDED_STATE_DICT, DCP), the
files the Trainer's FSDP2 checkpoints hold, into CHECKPOINT/pytorch_model_fsdp_0.

    torchrun --nproc_per_node 2 tests/helpers/fsdp_shards.py MODEL_FOLDER CHECKPOINT
"""

import sys
from types import SimpleNamespace

import torch
import torch.distributed as dist
from accelerate import PartialState
from accelerate.utils import FullyShardedDataParallelPlugin
from accelerate.utils.fsdp_utils import save_fsdp_model
from torch.distributed.fsdp import fully_shard
from transformers import AutoModelForImageClassification

import neurotrain_hf.models  # noqa: F401 - registers the tiny models with the Auto classes


def main(model_folder: str, checkpoint: str) -> None:
    PartialState(cpu=True)  # the gloo group (and Accelerate's logging, which save_fsdp_model uses)
    model = AutoModelForImageClassification.from_pretrained(model_folder)
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            fully_shard(module)
    fully_shard(model)
    shapes = {name: tuple(p.to_local().shape) for name, p in model.named_parameters()}
    full = {name: tuple(p.shape) for name, p in model.named_parameters()}
    assert shapes != full, "nothing was sharded"
    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, state_dict_type="SHARDED_STATE_DICT")
    accelerator = SimpleNamespace(process_index=dist.get_rank(), num_processes=dist.get_world_size())
    save_fsdp_model(plugin, accelerator, model, checkpoint)
    dist.barrier()


if __name__ == "__main__":
    main(*sys.argv[1:3])
