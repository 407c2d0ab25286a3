"""VLM runs end to end: the default recipe learns on a shortened schedule, the saved folder answers the
same through ``pipeline("image-text-to-text")``, the Predictor and ``neurotrain predict``; a LoRA run's
adapter reloads exactly; QLoRA trains (or refuses in one line); the loss is normalised by supervised
tokens across accumulation and processes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from neurotrain_hf.config import build_config
from neurotrain_hf.runner import run
from tests.conftest import run_python
from tests.helpers.launch import accelerate_launch
from tests.vlm.conversations import config as conversations_config
from tests.vlm.conversations import write_conversations

SHORT = ["--training.num_train_epochs", "1", "--training.save_strategy", "no", "--training.eval_strategy", "no",
         "--training.load_best_model_at_end", "false"]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The default recipe as typed, on a shortened schedule (the full default's targets are the reviewers'
    `make train-vlm` check)."""
    out = tmp_path_factory.mktemp("vlm")
    proc = run_python(["recipes/train_vlm.py", "--basic.output_dir", str(out), *SHORT], timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-2].startswith("run folder: ") and lines[-1].startswith("test metrics: ")
    return {
        "run": out / "vlm" / "synthetic_vqa_llava",
        "test": json.loads(lines[-1][len("test metrics: ") :]),
    }


@pytest.mark.slow
def test_the_default_recipe_learns_on_a_short_schedule(trained):
    """One epoch: the loss falls, and the colour of held-out scenes is answered right (guessing: 1 in 4)."""
    import csv

    test, run_dir = trained["test"], trained["run"]
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    losses = [row["loss"] for row in history if "loss" in row]
    assert losses[-1] < 0.4 * losses[0]  # 2.77 -> 0.82 at the default learning rate
    with open(run_dir / "test_per_sample.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 400 and set(rows[0]) == {
        "index",
        "question",
        "reference",
        "answer",
        "answer_type",
        "correct",
        "loss",
    }
    colour = [r for r in rows if r["question"] == "what colour are the shapes?"]
    assert len(colour) > 30 and sum(r["answer"] == r["reference"] for r in colour) >= 0.9 * len(colour)
    assert test["open_recall"] >= 0.4 and test["exact_match"] == pytest.approx(
        sum(r["answer"] == r["reference"] for r in rows) / 400
    )


@pytest.mark.slow
def test_pipeline_predictor_and_cli_give_the_same_answers(trained, tmp_path):
    from transformers import pipeline

    from neurotrain_hf import Predictor
    from neurotrain_hf.tasks.vlm.synthetic import render_scene

    image = tmp_path / "scene.png"
    Image.fromarray(
        render_scene(
            (("circle", "red", "top left"), ("circle", "red", "bottom right")), 48, np.random.default_rng(1)
        )
    ).save(image)
    questions = ["how many shapes are there?", "what colour are the shapes?", "is there a square?"]
    pipe = pipeline("image-text-to-text", model=str(trained["run"] / "model"))
    predictor = Predictor.from_pretrained(trained["run"])
    for question in questions:
        messages = [
            {
                "role": "user",
                "content": [{"type": "image", "url": str(image)}, {"type": "text", "text": question}],
            }
        ]
        expected = pipe(text=messages, return_full_text=False, max_new_tokens=4)[0]["generated_text"].strip()
        assert predictor({"image": str(image), "question": question})["answer"] == expected
        if question != questions[0]:
            continue  # one CLI call (each costs an interpreter start)
        cli = subprocess.run(
            [sys.executable, "-m", "neurotrain_hf.cli", "predict", str(trained["run"]), str(image), "--question", question],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert cli.returncode == 0, cli.stderr[-2000:]
        assert json.loads(cli.stdout.strip().splitlines()[-1])["answer"] == expected
    two = subprocess.run(
        [sys.executable, "-m", "neurotrain_hf.cli", "predict", str(trained["run"]), str(image)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert two.returncode == 2 and two.stderr.strip().splitlines()[-1] == (
        'error: give the question to ask about the image with --question "..."'
    )


def probe(model, processor):
    """Logits of a fixed conversation batch (the same inputs for every model compared)."""
    from neurotrain_hf.tasks.vlm.data import encode_rows
    from neurotrain_hf.tasks.vlm.labels import pad

    image = np.random.default_rng(3).integers(0, 255, (48, 48, 3), dtype=np.uint8)
    rows = {
        "messages": [
            [
                {"role": "user", "content": "<image>\nwhat colour are the shapes?"},
                {"role": "assistant", "content": "red"},
            ]
        ],
        "image": [image],
        "sample_id": ["p"],
    }
    encoded, extra = encode_rows(processor, rows, ["probe"])
    batch = {**pad(encoded, 0), **extra}
    batch.pop("labels")
    with torch.no_grad():
        return model(**batch).logits


@pytest.mark.slow
def test_lora_adapter_reloads_exactly_and_qlora_trains_or_refuses(trained, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor, TrainerCallback

    base = trained["run"] / "model"
    processor = AutoProcessor.from_pretrained(base)
    seen = {}

    class Keep(TrainerCallback):
        def on_train_end(self, args, state, control, model=None, **kwargs):
            seen["logits"] = probe(model.eval(), processor)

    data = {
        "basic": {"task": "vlm", "run_id": "lora", "seed": 0, "output_dir": str(tmp_path)},
        "model": {"name": f"hf/{base}", "pretrained": True},
        "dataset": {"name": "synthetic_vqa", "num_images": 24, "held_out_images": 4},
        "training": {"train": "lora", "max_steps": 3, "batch_size": 8, "learning_rate": 5e-3, "max_length": 64,
                     "eval_strategy": "no", "save_strategy": "no", "report_to": "none", "disable_tqdm": True},
        "peft": {"r": 4, "alpha": 8},
        "testing": {"run_after_training": False},
    }  # fmt: skip
    run(build_config(data), callbacks=[Keep()])
    run_dir = tmp_path / "vlm" / "lora"
    adapter = load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))
    assert any("lora_A" in k for k in adapter) and any("multi_modal_projector" in k for k in adapter)
    assert not any("vision_tower" in k for k in adapter)  # frozen: not saved, not trained
    reloaded = PeftModel.from_pretrained(
        AutoModelForImageTextToText.from_pretrained(base), run_dir / "adapter"
    ).eval()
    assert torch.equal(probe(reloaded, processor), seen["logits"])
    merged = AutoModelForImageTextToText.from_pretrained(run_dir / "model").eval()
    torch.testing.assert_close(probe(merged, processor), seen["logits"], rtol=0, atol=1e-4)
    assert not torch.allclose(
        probe(AutoModelForImageTextToText.from_pretrained(base).eval(), processor), seen["logits"]
    )

    data["basic"]["run_id"] = "qlora"
    data["training"]["quantization"] = "4bit"
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        from neurotrain_hf.errors import ConfigError

        with pytest.raises(ConfigError, match=r"^\[training\] quantization = '4bit' needs bitsandbytes"):
            run(build_config(data))
        return
    report = run(build_config(data))
    assert report["global_step"] == 3 and np.isfinite(report["train"]["train_loss"])
    assert (tmp_path / "vlm" / "qlora" / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_loss_is_normalised_by_supervised_tokens_across_accumulation_and_processes(tmp_path):
    """1 process x 8 == 2 processes x 4 == 4 accumulated micro-batches of 2, to 1e-6, on conversations with
    answers of 1 to 14 words."""
    from neurotrain_hf.config.io import write_config_file

    root = write_conversations(tmp_path / "data")
    out = tmp_path / "runs"
    two = tmp_path / "two.toml"
    write_config_file(conversations_config(root, out, "two", per_device_train_batch_size=4), two)
    proc = accelerate_launch(2, "tests/helpers/ddp_train.py", str(two))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run(build_config(conversations_config(root, out, "one", per_device_train_batch_size=8)))
    run(
        build_config(
            conversations_config(
                root, out, "accum", per_device_train_batch_size=2, gradient_accumulation_steps=4
            )
        )
    )
    one, two_w, accum = (
        load_file(str(out / "vlm" / r / "model" / "model.safetensors")) for r in ("one", "two", "accum")
    )
    for key in one:
        torch.testing.assert_close(two_w[key], one[key], rtol=0, atol=1e-6)
        torch.testing.assert_close(accum[key], one[key], rtol=0, atol=1e-6)
    from transformers import AutoModelForImageTextToText

    from neurotrain_hf.runner import build

    initial = build(build_config(conversations_config(root, out, "start")))[2].model.state_dict()
    trained = AutoModelForImageTextToText.from_pretrained(out / "vlm" / "one" / "model").state_dict()
    assert set(initial) == set(trained) and any(not torch.equal(initial[k], trained[k]) for k in initial)
