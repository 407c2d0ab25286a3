"""``[training] report_to = ["mlflow", "trackio", "tensorboard"]``: one run, read back through each library's
own client (MlflowClient, trackio's Api and storage in a fresh process, TensorBoard's EventAccumulator) and
compared with the run folder's history.jsonl, report.json, config.toml and plots."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tomllib
from PIL import Image

from .conftest import make_config, run_python, tiny_config_dict, write_toml

pytestmark = pytest.mark.requires("mlflow", "trackio", "tensorboard")

TRACKERS = ["mlflow", "trackio", "tensorboard"]
PROJECT = "neurotrain-classification"  # MLflow experiment and trackio project: neurotrain-<task>
ENV_PREFIXES = ("MLFLOW_", "TRACKIO_", "TENSORBOARD_")
LOCAL_HOSTS = ("127.0.0.1", "::1", "localhost")
EVAL_KEYS = ("loss", "eval_loss", "eval_accuracy", "eval_f1")  # history.jsonl columns


def tracker_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)}


def isolate(mp: pytest.MonkeyPatch, cwd: Path, attempts: list) -> None:
    """No tracker settings from the environment; cwd in a fresh folder; every connection or name lookup
    leaving this machine recorded and refused. The Hub client is let past its offline switch, with a token,
    so that a Hub call would reach the guard instead of stopping early."""
    import huggingface_hub.constants

    for key in tracker_env():
        mp.delenv(key)
    mp.chdir(cwd)
    connect, getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def guarded_connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOCAL_HOSTS:
            attempts.append(address)
            raise OSError(f"test: no network ({address})")
        return connect(sock, address)

    def guarded_getaddrinfo(host, *args, **kwargs):
        if host is not None and host not in LOCAL_HOSTS:
            attempts.append(host)
            raise socket.gaierror(f"test: no network ({host})")
        return getaddrinfo(host, *args, **kwargs)

    mp.setattr(socket.socket, "connect", guarded_connect)
    mp.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    mp.setenv("HF_TOKEN", "hf_test_token_never_sent")


def library_state() -> dict:
    """What the libraries keep process-wide: MLflow's tracking URI and active experiment, trackio's store."""
    import mlflow
    from trackio.sqlite_storage import SQLiteStorage

    db = SQLiteStorage.get_project_db_path(PROJECT)
    return {
        "mlflow_uri_set": mlflow.is_tracking_uri_set(),
        "mlflow_experiment": mlflow.tracking.fluent._active_experiment_id,
        "trackio_default_db": (db, db.exists()),
    }


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """One run (2 epochs, evaluated each) reporting to the three trackers."""
    from transformers import TrainerCallback

    from neurotrain_hf.runner import run

    class EnvDuringTraining(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.env = tracker_env()

    tmp = tmp_path_factory.mktemp("trackers")
    attempts: list = []
    with pytest.MonkeyPatch.context() as mp:
        isolate(mp, tmp, attempts)
        state_before = library_state()
        config = make_config(tmp, training={"report_to": TRACKERS, "eval_strategy": "epoch"})
        during = EnvDuringTraining()
        run(config, callbacks=[during])
        env_after, state_after = tracker_env(), library_state()
    run_dir = config.run_dir
    return SimpleNamespace(
        root=tmp / "runs",
        run_dir=run_dir,
        attempts=attempts,
        env_during=during.env,
        env_after=env_after,
        state_before=state_before,
        state_after=state_after,
        in_cwd=sorted(p.name for p in tmp.iterdir()),
        history=[json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()],
        report=json.loads((run_dir / "report.json").read_text()),
        toml_text=(run_dir / "config.toml").read_text(),
        pngs=sorted(run_dir.glob("*.png")),
    )


def series(rows: list[dict], key: str) -> list[tuple[int, float]]:
    return [(row["step"], row[key]) for row in rows if key in row]


def leaves(data: dict, prefix: str = "config") -> dict:
    """The TOML's values by dotted name, as the trackers' params are named."""
    out = {}
    for key, value in data.items():
        name = f"{prefix}.{key}"
        out.update(leaves(value, name) if isinstance(value, dict) else {name: value})
    return out


def as_toml_value(text: str, expected):
    return text if isinstance(expected, str) else json.loads(text)


def numeric_results(report: dict) -> dict[str, float]:
    return {
        k: v for k, v in report["test"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def pixels(data) -> np.ndarray:
    with Image.open(data) as image:
        return np.asarray(image.convert("RGB"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_series(logged: list[tuple[int, float]], expected: list[tuple[int, float]]) -> None:
    assert expected, "history.jsonl has no such rows"
    assert [step for step, _ in logged] == [step for step, _ in expected]
    assert [v for _, v in logged] == pytest.approx([v for _, v in expected], rel=1e-6, abs=1e-6)


def test_run_stays_local_and_restores_the_environment(tracked):
    assert tracked.attempts == []  # not the Hub (trackio's whoami), not MLflow's telemetry
    # mlflow's telemetry is off in tests anyway (PYTEST_CURRENT_TEST): the run turns it off for users
    assert tracked.env_during["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert tracked.env_after == {}
    assert tracked.state_after == tracked.state_before  # trackio's default store neither moved nor written
    assert tracked.in_cwd == ["runs"]  # nothing relative to the working directory (./mlruns, ...)
    assert len(tracked.pngs) >= 2  # training curves and confusion matrices


def mlflow_run(uri: str, name: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(PROJECT)
    (run,) = client.search_runs([experiment.experiment_id], filter_string=f"attributes.run_name = '{name}'")
    return client, experiment, run


def test_mlflow_holds_the_run(tracked, tmp_path):
    client, experiment, run = mlflow_run(f"sqlite:///{tracked.root / 'mlflow.db'}", "t")
    assert experiment.artifact_location.startswith((tracked.root / "mlartifacts").as_uri())
    assert run.info.status == "FINISHED"
    for key in EVAL_KEYS:  # logged by transformers' MLflowCallback
        history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: (m.step, m.timestamp))
        assert_series([(m.step, m.value) for m in history], series(tracked.history, key))
    params = run.data.params
    for key, value in leaves(tomllib.loads(tracked.toml_text)).items():
        assert as_toml_value(params[key], value) == value, key
    assert params["config.training.learning_rate"] == "0.003"
    for name, value in numeric_results(tracked.report).items():
        assert run.data.metrics[f"test_{name}"] == pytest.approx(value, abs=1e-6), name
    listed = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {p.name for p in tracked.pngs} | {"config.toml", "report.json"} <= listed
    for name in ("config.toml", tracked.pngs[0].name):
        copy = Path(client.download_artifacts(run.info.run_id, name, str(tmp_path)))
        assert sha256(copy) == sha256(tracked.run_dir / name)


READ_TRACKIO = textwrap.dedent(
    """
    import json, sys
    import trackio
    from trackio.sqlite_storage import SQLiteStorage  # what `trackio get metric/artifact` read

    project = sys.argv[1]
    runs = {run.name: run.config for run in trackio.Api().runs(project)}
    logs = {name: SQLiteStorage.get_logs(project, name) for name in runs}
    names = [a["name"] for a in SQLiteStorage.get_artifacts(project)]
    artifacts = {name: SQLiteStorage.get_artifact_manifest(project, name, None) for name in names}
    print(json.dumps({"runs": runs, "logs": logs, "artifacts": artifacts}, default=str))
    """
)


def read_trackio(store: Path) -> dict:
    """trackio's own reading API, in a process where TRACKIO_DIR names the store from the start."""
    result = run_python(["-c", READ_TRACKIO, PROJECT], env={"TRACKIO_DIR": str(store)}, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_trackio_holds_the_run(tracked):
    store = tracked.root / "trackio"
    data = read_trackio(store)
    assert list(data["runs"]) == ["t"]
    config, rows = data["runs"]["t"], data["logs"]["t"]
    for key, value in leaves(tomllib.loads(tracked.toml_text)).items():
        assert as_toml_value(config[key], value) == value, key
    assert config["learning_rate"] == 0.003  # TrackioCallback's TrainingArguments config is kept
    for key in EVAL_KEYS:  # logged by transformers' TrackioCallback, at its own step counter
        tag = key.replace("eval_", "eval/") if key.startswith("eval_") else f"train/{key}"
        assert_series(
            [(r["train/global_step"], r[tag]) for r in rows if tag in r], series(tracked.history, key)
        )
    for name, value in numeric_results(tracked.report).items():
        (logged,) = [r[f"test/{name}"] for r in rows if f"test/{name}" in r]
        assert logged == pytest.approx(value, abs=1e-6), name
    for png in tracked.pngs:
        (image,) = [r[f"plots/{png.stem}"] for r in rows if f"plots/{png.stem}" in r]
        assert image["_type"] == "trackio.image"
        assert np.array_equal(pixels(store / "media" / image["file_path"]), pixels(png))
    manifest = data["artifacts"]["t-run-files"]["manifest"]
    expected = {p.name: sha256(p) for p in tracked.pngs}
    expected.update({name: sha256(tracked.run_dir / name) for name in ("config.toml", "report.json")})
    assert {entry["path"]: entry["digest"] for entry in manifest} == expected


def test_tensorboard_holds_the_run(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(
        str(tracked.run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0}
    )
    events.Reload()
    for key in EVAL_KEYS:  # logged by transformers' TensorBoardCallback (float32 values)
        tag = key.replace("eval_", "eval/") if key.startswith("eval_") else f"train/{key}"
        assert_series([(e.step, e.value) for e in events.Scalars(tag)], series(tracked.history, key))
    step = tracked.report["global_step"]
    for name, value in numeric_results(tracked.report).items():
        assert [(e.step, e.value) for e in events.Scalars(f"test/{name}")] == [
            (step, pytest.approx(value, rel=1e-6, abs=1e-6))
        ], name
    (text,) = events.Tensors("config/text_summary")
    assert text.tensor_proto.string_val[0].decode() == f"```toml\n{tracked.toml_text}\n```"
    for png in tracked.pngs:
        (image,) = events.Images(f"plots/{png.stem}")
        assert np.array_equal(pixels(io.BytesIO(image.encoded_image_string)), pixels(png))


def test_a_second_run_keeps_to_its_own_stores_and_a_users_uri(tracked, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from neurotrain_hf.runner import run

    attempts: list = []
    isolate(monkeypatch, tmp_path, attempts)
    (tmp_path / "elsewhere").mkdir()
    user_uri = f"sqlite:///{tmp_path / 'elsewhere' / 'user.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", user_uri)
    first_events = sorted((tracked.run_dir / "tensorboard").iterdir())
    config = make_config(
        tmp_path / "second", basic={"run_id": "t2"}, training={"report_to": TRACKERS, "num_train_epochs": 1}
    )
    report = run(config)
    assert tracker_env() == {"MLFLOW_TRACKING_URI": user_uri}
    assert attempts == []
    second_root = tmp_path / "second" / "runs"
    assert not (second_root / "mlflow.db").exists()
    _, _, run2 = mlflow_run(user_uri, "t2")
    assert run2.data.metrics["test_accuracy"] == pytest.approx(report["test"]["accuracy"], abs=1e-6)
    first = MlflowClient(f"sqlite:///{tracked.root / 'mlflow.db'}")
    experiments = [e.experiment_id for e in first.search_experiments()]
    assert [r.info.run_name for r in first.search_runs(experiments)] == ["t"]
    assert list(read_trackio(tracked.root / "trackio")["runs"]) == ["t"]
    assert list(read_trackio(second_root / "trackio")["runs"]) == ["t2"]
    assert sorted((tracked.run_dir / "tensorboard").iterdir()) == first_events
    assert any((config.run_dir / "tensorboard").iterdir())


NONE_RUN = textwrap.dedent(
    """
    import json, sys
    sys.modules["deepspeed"] = None  # DeepSpeed imports mlflow itself (deepspeed.autotuning) once loaded
    from neurotrain_hf.config import load_config
    from neurotrain_hf.runner import run
    run(load_config(sys.argv[1]))
    print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & {"mlflow", "trackio", "tensorboard"})))
    """
)


def test_report_to_none_imports_no_tracker(tmp_path):
    toml = write_toml(tmp_path / "none.toml", tiny_config_dict(tmp_path, training={"num_train_epochs": 1}))
    result = run_python(["-c", NONE_RUN, str(toml)], timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_a_missing_tracker_library_is_one_config_error(tmp_path, monkeypatch):
    from neurotrain_hf.errors import ConfigError
    from neurotrain_hf.runner import run
    from neurotrain_hf.trainer import trackers

    real = trackers.find_spec
    monkeypatch.setattr(trackers, "find_spec", lambda name: None if name == "trackio" else real(name))
    config = make_config(tmp_path, training={"report_to": ["tensorboard", "trackio"]})
    with pytest.raises(
        ConfigError, match=r"\[training\] report_to names trackio, .*neurotrain-hf\[trackers\]"
    ):
        run(config)
