"""Per-GPU memory of a training run under each parallel strategy, by the ZeRO paper's accounting.

Model states per parameter: P bytes of working weights, G of gradients, K of optimizer states (with mixed
precision K includes the fp32 master weights). Mixed-precision Adam is 2 + 2 + 12 = 16 bytes: 7.5B
parameters on 64 GPUs need 120 / 31.4 / 16.6 / 1.9 GB for DDP / ZeRO-1 / ZeRO-2 / ZeRO-3 (Rajbhandari et
al. 2020, figure 1). Activations come on top (measured, ``planning/activations.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

GB = 1e9  # the paper's (and nvidia-smi's marketing) gigabytes; the planner prints GB = 10^9 bytes
USABLE = 0.9  # of a GPU's memory: the CUDA context, allocator fragmentation and NCCL buffers take the rest


@dataclass(frozen=True)
class Precision:
    """Bytes per parameter of the model states (the paper's P, G, K)."""

    weights: float
    gradients: float
    optimizer: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer


def precision_of(optim: str, mixed: bool, momentum: float = 0.0) -> Precision:
    """P, G, K for an optimizer name (``[training] optim``) with or without bf16/fp16 mixed precision."""
    name = optim.lower()
    if "8bit" in name:
        states = 2.0  # two 1-byte Adam moments
    elif "adam" in name:
        states = 8.0  # fp32 first and second moments
    elif "adafactor" in name:
        states = 0.0  # factored second moment: O(rows + columns), negligible per parameter
    elif "lion" in name or ("sgd" in name and momentum):
        states = 4.0  # one fp32 moment
    else:
        states = 0.0  # plain SGD
    if mixed:
        return Precision(2.0, 2.0, states + 4.0)  # + the fp32 master copy of the weights
    return Precision(4.0, 4.0, states)


@dataclass(frozen=True)
class Layout:
    """The run's shape: parameters, the largest layer (gathered whole by ZeRO-3/FSDP), GPUs."""

    parameters: float
    largest_layer: float
    gpus_per_node: int
    nodes: int

    @property
    def gpus(self) -> int:
        return self.gpus_per_node * self.nodes


@dataclass(frozen=True)
class Estimate:
    """One strategy's bytes per GPU (weights, gradients, optimizer states) and host bytes per node."""

    weights: float
    gradients: float
    optimizer: float
    cpu_per_node: float = 0.0

    @property
    def model_states(self) -> float:
        return self.weights + self.gradients + self.optimizer


@dataclass(frozen=True)
class Strategy:
    """A parallel strategy: how it splits the model states, and the Accelerate config that selects it."""

    name: str
    title: str
    estimate: Callable[[Layout, Precision], Estimate]
    accelerate: dict = field(default_factory=dict)  # distributed_type and its plugin section


_STRATEGIES: dict[str, Strategy] = {}


def register_strategy(name: str, title: str, accelerate: dict):
    """Register a strategy; the order of registration is the order of preference (least communication
    and fewest moving parts first), which ``cheapest_fit`` follows."""

    def wrap(estimate: Callable[[Layout, Precision], Estimate]) -> Callable[[Layout, Precision], Estimate]:
        _STRATEGIES[name] = Strategy(name, title, estimate, accelerate)
        return estimate

    return wrap


def list_strategies() -> list[str]:
    return list(_STRATEGIES)


def get_strategy(name: str) -> Strategy:
    return _STRATEGIES[name]


def _deepspeed(stage: int, offload: bool = False) -> dict:
    device = "cpu" if offload else "none"
    plugin = {
        "zero_stage": stage,
        "offload_optimizer_device": device,
        "offload_param_device": device if stage == 3 else "none",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "deepspeed_multinode_launcher": "standard",
    }
    if stage == 3:
        plugin.update({"zero3_init_flag": False, "zero3_save_16bit_model": True})
    return {"distributed_type": "DEEPSPEED", "deepspeed_config": plugin}


@register_strategy("ddp", "DDP", {"distributed_type": "MULTI_GPU"})
def _ddp(layout: Layout, p: Precision) -> Estimate:
    n = layout.parameters
    return Estimate(p.weights * n, p.gradients * n, p.optimizer * n)


@register_strategy("zero1", "ZeRO-1", _deepspeed(1))
def _zero1(layout: Layout, p: Precision) -> Estimate:
    n = layout.parameters
    return Estimate(p.weights * n, p.gradients * n, p.optimizer * n / layout.gpus)


@register_strategy("zero2", "ZeRO-2", _deepspeed(2))
def _zero2(layout: Layout, p: Precision) -> Estimate:
    n = layout.parameters
    return Estimate(p.weights * n, p.gradients * n / layout.gpus, p.optimizer * n / layout.gpus)


@register_strategy("zero3", "ZeRO-3", _deepspeed(3))
def _zero3(layout: Layout, p: Precision) -> Estimate:
    """Everything sharded; the layer being computed is gathered whole (its working weights)."""
    n, gpus = layout.parameters, layout.gpus
    gathered = p.weights * layout.largest_layer
    return Estimate(p.weights * n / gpus + gathered, p.gradients * n / gpus, p.optimizer * n / gpus)


FSDP2 = {
    "distributed_type": "FSDP",
    "fsdp_config": {
        "fsdp_version": 2,
        "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "fsdp_reshard_after_forward": True,
        "fsdp_state_dict_type": "SHARDED_STATE_DICT",
        "fsdp_cpu_ram_efficient_loading": True,
        "fsdp_offload_params": False,
    },
}


@register_strategy("fsdp2", "FSDP2 (full shard)", FSDP2)
def _fsdp2(layout: Layout, p: Precision) -> Estimate:
    """Shards like ZeRO-3; the layer being computed is unsharded, and the next one prefetched."""
    n, gpus = layout.parameters, layout.gpus
    unsharded = 2 * p.weights * layout.largest_layer
    return Estimate(p.weights * n / gpus + unsharded, p.gradients * n / gpus, p.optimizer * n / gpus)


@register_strategy("zero3_offload", "ZeRO-3 + CPU offload", _deepspeed(3, offload=True))
def _zero3_offload(layout: Layout, p: Precision) -> Estimate:
    """Weights, gradients and optimizer states in host memory; the GPU holds the gathered layer and its
    gradient (DeepSpeed's estimator counts 4 bytes per parameter of the largest layer)."""
    n = layout.parameters
    layer = layout.largest_layer
    return Estimate(p.weights * layer, p.gradients * layer, 0.0, cpu_per_node=p.total * n / layout.nodes)


def deepspeed_estimate(name: str, layout: Layout) -> tuple[float, float] | None:
    """DeepSpeed's own estimator for a ZeRO strategy (mixed-precision Adam, its 18-byte accounting):
    (GPU bytes per GPU, host bytes per node), or None for a strategy it does not cover."""
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    total, largest = int(layout.parameters), int(layout.largest_layer)
    per_node, nodes = layout.gpus_per_node, layout.nodes
    if name == "zero2":
        cpu, gpu = estimate_zero2_model_states_mem_needs(total, per_node, nodes, cpu_offload=False)
    elif name == "zero3":
        cpu, gpu, _ = estimate_zero3_model_states_mem_needs(
            total, largest, per_node, nodes, cpu_offload=False
        )
    elif name == "zero3_offload":
        cpu, gpu, _ = estimate_zero3_model_states_mem_needs(
            total, largest, per_node, nodes, cpu_offload=True, cpu_offload_params=True
        )
    else:
        return None
    return float(gpu), float(cpu)
