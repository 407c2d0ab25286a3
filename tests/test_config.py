import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from neurotrain_hf.cli import main as cli_main
from neurotrain_hf.config import build_config, get_config, get_config_value, load_config, read_config_file
from neurotrain_hf.config.sections import SECTIONS
from neurotrain_hf.errors import ConfigError
from neurotrain_hf.tasks import get_task, list_tasks

from .conftest import OFFLINE, RECIPES, ROOT, tiny_config_dict, write_toml

SHIPPED = sorted((RECIPES / "configs").glob("*.toml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_parses(path):
    config = load_config(path)
    assert config.basic.task in list_tasks()
    assert config.training.output_dir == str(config.run_dir)


def test_sections_map_onto_dataclasses_and_training_args():
    config = load_config(RECIPES / "configs" / "digits_cnn.toml")
    from neurotrain_hf.tasks.classification.config import ClassificationConfig

    assert isinstance(config.training, ClassificationConfig)
    assert config.training.per_device_train_batch_size == 64 == config.training.per_device_eval_batch_size
    assert config.training.seed == config.basic.seed
    assert config.model.kwargs == {"channels": [32, 64, 128], "dropout": 0.1}


def test_command_line_overrides(tmp_path):
    cfg = load_config(
        RECIPES / "configs" / "digits_cnn.toml",
        [
            "--training.learning_rate",
            "3e-4",
            "--dataset.name=digits",
            "--basic.run_id",
            "123",
            "--training.metrics",
            '["accuracy"]',
            "--training.bf16",
            "true",
        ],
    )
    assert cfg.training.learning_rate == 3e-4
    assert cfg.basic.run_id == "123"  # a str field keeps the text
    assert cfg.training.metrics == ["accuracy"]
    assert cfg.training.bf16 is True


def test_get_config_and_value():
    get_config(RECIPES / "configs" / "digits_cnn.toml")
    assert get_config_value("training.batch_size") == 64
    assert get_config_value("model.name") == "simple_cnn"
    assert get_config_value("training.nope", default=7) == 7
    with pytest.raises(ConfigError, match="no config value 'basic.nope'"):
        get_config_value("basic.nope")


@pytest.mark.parametrize(
    ("section", "values", "message"),
    [
        (
            "training",
            {"learning_rat": 0.1},
            "[training] learning_rat: the classification task does not read this key; nearest valid key: "
            "'learning_rate'",
        ),
        ("training", {"learning_rate": "fast"}, "[training] learning_rate = 'fast': expected float"),
        (
            "training",
            {"learning_rate": -1.0},
            "[training] learning_rate = -1.0: out of range, expected >= 0.0",
        ),
        ("dataset", {"valid_ratio": 1.5}, "[dataset] valid_ratio = 1.5: out of range, expected <= 0.9"),
        ("dataset", {"name": 3}, "[dataset] name = 3: expected str"),
        ("testing", {"split": "dev"}, "[testing] split = 'dev': expected one of 'test', 'valid', 'train'"),
        ("basic", {"task": "segmentatoin"}, "unknown task 'segmentatoin'"),
        ("training", {"seed": 1}, "[training] seed is set in [basic] seed"),
        ("traning", {"x": 1}, "unknown section [traning] (did you mean 'training'?)"),
        ("training", {"batch_size": 8, "per_device_train_batch_size": 4}, "batch_size = 8 conflicts"),
        ("training", {"num_train_epochs": True}, "expected float"),
    ],
)
def test_bad_values_fail_with_one_line(tmp_path, section, values, message):
    data = tiny_config_dict(tmp_path)
    data.setdefault(section, {}).update(values)
    with pytest.raises(ConfigError) as err:
        build_config(data, source="exp.toml")
    text = str(err.value)
    assert message in text and text.startswith("exp.toml") and "\n" not in text


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[training\nx=1")
    with pytest.raises(ConfigError, match="bad.toml: invalid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="unsupported config format"):
        load_config(tmp_path / "x.ini")


def test_unknown_override_key():
    with pytest.raises(
        ConfigError, match=r"command line: \[training\] lr: the classification task does not read"
    ):
        load_config(RECIPES / "configs" / "digits_cnn.toml", ["--training.lr", "1"])


def test_cli_check_exit_code_2_without_traceback(tmp_path):
    data = tiny_config_dict(tmp_path)
    data["training"]["learning_rat"] = 0.1
    path = write_toml(tmp_path / "exp.toml", data)
    proc = subprocess.run(
        [sys.executable, "-m", "neurotrain_hf.cli", "check", str(path)],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, **OFFLINE},
        cwd=ROOT,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "nearest valid key: 'learning_rate'" in proc.stderr
    ok = write_toml(tmp_path / "ok.toml", tiny_config_dict(tmp_path))
    assert cli_main(["check", str(ok)]) == 0


def test_convert_round_trips(tmp_path, capsys):
    src = RECIPES / "configs" / "digits_cnn.toml"
    original = load_config(src).to_dict()
    yaml_file, json_file, toml_file = tmp_path / "a.yaml", tmp_path / "a.json", tmp_path / "b.toml"
    assert cli_main(["convert", str(src), "--to", "yaml", "-o", str(yaml_file)]) == 0
    assert cli_main(["convert", str(yaml_file), "--to", "json", "-o", str(json_file)]) == 0
    assert cli_main(["convert", str(json_file), "--to", "toml", "-o", str(toml_file)]) == 0
    assert read_config_file(toml_file) == read_config_file(src)
    assert load_config(toml_file).to_dict() == original
    assert cli_main(["convert", str(src), "--to", "json"]) == 0
    assert '"learning_rate": 0.003' in capsys.readouterr().out


def test_resolved_config_round_trips(tmp_path):
    from neurotrain_hf.config import write_config_file

    cfg = load_config(RECIPES / "configs" / "digits_cnn.toml")
    path = write_config_file(cfg.to_dict(), tmp_path / "resolved.toml")
    assert load_config(path).to_dict() == cfg.to_dict()


def test_tokens_are_refused_but_token_counting_options_are_not():
    cfg = load_config(
        RECIPES / "configs" / "digits_cnn.toml", ["--training.average_tokens_across_devices", "false"]
    )
    assert cfg.training.average_tokens_across_devices is False
    assert cfg.to_dict()["training"]["average_tokens_across_devices"] is False
    with pytest.raises(ConfigError, match=r"\[training\] hub_token: secrets do not belong"):
        load_config(RECIPES / "configs" / "digits_cnn.toml", ["--training.hub_token", "hf_secret123"])


def _own_fields(cls):
    from transformers import TrainingArguments

    inherited = {f.name: f for f in dataclasses.fields(TrainingArguments)}
    return [
        f
        for f in dataclasses.fields(cls)
        if f.init
        and (
            f.name not in inherited
            or f.default != inherited[f.name].default
            or f.metadata is not inherited[f.name].metadata
        )
    ]


@pytest.mark.parametrize(
    "cls", [*SECTIONS.values(), get_task("classification").config_class()], ids=lambda c: c.__name__
)
def test_every_field_has_help(cls):
    missing = [f.name for f in _own_fields(cls) if not f.metadata.get("help")]
    assert not missing, f"{cls.__name__} fields without help: {missing}"


def test_help_shows_field_help(capsys):
    from neurotrain_hf.cli import recipe_main

    assert recipe_main("classification", ["--help"]) == 0
    out = capsys.readouterr().out
    assert "--training.loss" in out and "Loss name from the registry" in out
    assert "--dataset.valid_ratio" in out and "(>= 0.0, <= 0.9)" in out


def test_configuration_reference_is_up_to_date():
    from neurotrain_hf.config.reference import render

    doc = ROOT / "docs" / "configuration.md"
    assert doc.read_text(encoding="utf-8") == render(), "run `make docs` to regenerate docs/configuration.md"


def test_yaml_and_json_inputs(tmp_path):
    import json

    import yaml

    data = tiny_config_dict(tmp_path)
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "e.json").write_text(json.dumps(data))
    assert load_config(tmp_path / "e.yaml").to_dict() == load_config(tmp_path / "e.json").to_dict()


def test_paths_are_reported(tmp_path):
    assert Path(load_config(RECIPES / "configs" / "digits_cnn.toml").source).name == "digits_cnn.toml"
