"""`neurotrain plan`: model states against the ZeRO paper and DeepSpeed's own estimator, activations
against a hand count, and the chosen strategy's Accelerate config as Accelerate reads it."""

import json

import pytest
import torch
import yaml
from accelerate.commands.config.config_args import ClusterConfig
from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

from neurotrain_hf.cli import main
from neurotrain_hf.planning.activations import saved_bytes
from neurotrain_hf.planning.memory import Layout, get_strategy, precision_of

from .conftest import tiny_config_dict, write_toml


def test_model_states_equal_the_zero_paper():
    """Rajbhandari et al. 2020, figure 1: 7.5B parameters, 64 GPUs, mixed-precision Adam (K = 12)."""
    layout = Layout(7.5e9, 0.0, gpus_per_node=8, nodes=8)
    adam = precision_of("adamw_torch", mixed=True)
    assert (adam.weights, adam.gradients, adam.optimizer) == (2, 2, 12)
    paper = {"ddp": 120.0, "zero1": 31.4, "zero2": 16.6, "zero3": 1.9}
    got = {name: round(get_strategy(name).estimate(layout, adam).model_states / 1e9, 1) for name in paper}
    assert got == paper


@pytest.mark.parametrize("nodes,per_node", [(8, 8), (1, 2), (4, 1)])
def test_zero_estimates_differ_from_deepspeeds_by_its_extra_buffers_only(nodes, per_node):
    """DeepSpeed counts 18 bytes (fp32 gradients too) and the gathered largest layer at 4 bytes/param."""
    total, largest = 7_000_000_000, 500_000_000
    layout, gpus = Layout(float(total), float(largest), per_node, nodes), nodes * per_node
    adam = precision_of("adamw_torch", mixed=True)
    _, zero2 = estimate_zero2_model_states_mem_needs(total, per_node, nodes, cpu_offload=False)
    assert zero2 == pytest.approx(
        get_strategy("zero2").estimate(layout, adam).model_states + 4 * total / gpus
    )
    _, zero3, _ = estimate_zero3_model_states_mem_needs(total, largest, per_node, nodes, cpu_offload=False)
    ours = get_strategy("zero3").estimate(layout, adam).model_states
    assert zero3 == pytest.approx(ours + 2 * total / gpus + 2 * largest, rel=1e-9)  # we count 2 bytes
    _, offload, _ = estimate_zero3_model_states_mem_needs(total, largest, per_node, nodes)
    assert offload == get_strategy("zero3_offload").estimate(layout, adam).model_states == 4 * largest


def test_saved_activations_equal_a_hand_count():
    """Linear(10, 20) saves its input, ReLU its output, which Linear(20, 5) saves again (counted once)."""
    net = torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.ReLU(), torch.nn.Linear(20, 5))
    for batch in (3, 8):
        x = torch.randn(batch, 10)
        assert saved_bytes(lambda x=x: net(x).sum(), net) == 4 * batch * (10 + 20)


def run_plan(tmp_path, capsys, *options):
    config = write_toml(tmp_path / "plan.toml", tiny_config_dict(tmp_path, training={"optim": "adamw_torch"}))
    code = main(["plan", str(config), "--out", str(tmp_path / "plan"), *options])
    return code, capsys.readouterr()


def test_plan_of_a_recipe_measures_activations_and_writes_accelerates_config(tmp_path, capsys):
    code, out = run_plan(tmp_path, capsys, "--gpus-per-node", "2", "--gpu-memory", "24GiB")
    assert code == 0, out.err
    plan = json.loads((tmp_path / "plan" / "plan.json").read_text())
    ddp = plan["rows"][0]
    assert plan["chosen"] == "ddp" and ddp["activations_gb"] > 0
    assert ddp["weights_gb"] * 1e9 == pytest.approx(4 * plan["parameters"])  # fp32 AdamW: 4 + 4 + 8
    assert ddp["optimizer_gb"] * 1e9 == pytest.approx(8 * plan["trainable"])
    assert plan["gpu_memory_gb"] == pytest.approx(24 * 1024**3 / 1e9)
    cluster = ClusterConfig.from_yaml_file(str(tmp_path / "plan" / "accelerate.yaml"))
    assert (cluster.distributed_type, cluster.num_processes, cluster.num_machines) == ("MULTI_GPU", 2, 1)


def test_a_7b_model_on_64_small_gpus_gets_zero2_and_its_deepspeed_config(tmp_path, capsys):
    code, out = run_plan(
        tmp_path,
        capsys,
        "--parameters",
        "7.5B",
        "--gpus-per-node",
        "8",
        "--nodes",
        "8",
        "--gpu-memory",
        "32GB",
        "--training.bf16",
        "true",  # mixed-precision AdamW: the paper's 2 + 2 + 12 bytes
    )
    assert code == 0, out.err
    plan = json.loads((tmp_path / "plan" / "plan.json").read_text())
    fits = {row["strategy"]: row["fits"] for row in plan["rows"]}
    assert plan["parameters"] == 7.5e9 and plan["bytes_per_parameter"] == 16
    assert fits == {
        "ddp": False,
        "zero1": False,
        "zero2": True,
        "zero3": True,
        "fsdp2": True,
        "zero3_offload": True,
    }
    assert plan["chosen"] == "zero2" and "ZeRO-2" in out.out.splitlines()[-1]
    with open(tmp_path / "plan" / "accelerate.yaml") as f:
        written = yaml.safe_load(f)
    assert written["deepspeed_config"]["zero_stage"] == 2 and written["num_machines"] == 8
    cluster = ClusterConfig.from_yaml_file(str(tmp_path / "plan" / "accelerate.yaml"))
    assert cluster.num_processes == 64 and cluster.deepspeed_config["zero_stage"] == 2


def test_bad_sizes_are_refused_in_one_line(tmp_path, capsys):
    code, out = run_plan(tmp_path, capsys, "--gpu-memory", "eighty")
    assert code == 2 and out.err.strip().splitlines() == [
        "error: --gpu-memory 'eighty': expected a positive amount such as 80GB, 7.5e9 or 70B"
    ]
