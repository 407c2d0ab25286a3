"""The task contract: the hooks a task supplies, and who calls them.

- Runner (``runner.py``): ``prepare_data`` -> ``build_model`` -> ``build_trainer`` -> train ->
  ``finalize_model`` -> save (model + ``data.processor``) -> Tester -> ``write_plots``.
- Tester (``tester.py``): the trainer's ``predict`` on a split; for each evaluated batch the task's
  ``sample_records`` (CSV rows) and ``write_samples`` (pictures, per-rank result parts) receive a
  ``SampleBatch`` and the ``TestOutputs`` (split, folder, the split's rows); ``finish_outputs`` runs
  once on the main process when every rank is done. Trainers compute; tasks write files.
- Predictor and ``neurotrain predict`` (``predictor.py``, ``cli.py``): ``load_model``,
  ``load_processor``, ``settings``, ``inference`` (a forward, or a loop: a sampler, generation),
  ``read_input``, ``input_options``, ``batch_key``, ``preprocess``, ``predictions``, ``summary``, ``save_prediction``,
  ``finish_prediction``; generative tasks turn options into ``requests`` (no input files) and may
  write labelled datasets (``generate_dataset``, ``neurotrain generate``);
  ``claims`` tells the task of a model folder without ``neurotrain_task``.
- Tools (``tools/``): ``neurotrain analyze attention`` takes Grad-CAM's score from ``explain_score``;
  ``neurotrain export onnx`` writes the graphs of ``onnx_graphs`` and checks them with ``onnx_agreement``.
- Hub push and model cards (``hub.py``, ``model_card.py``): ``run_files``, ``metric_protocol``,
  ``load_snippet``, ``limitations``. LoRA (``adapters.py``): ``lora_targets``, ``lora_trained``, ``probe_inputs``,
  ``probe_outputs``. Demos (``demos/``): ``build_demo``.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import datasets

from ..errors import NeuroTrainError, first_line
from ..trainer.evaluation import SampleBatch, TestOutputs
from ..trainer.inference import Inference

__all__ = ["OnnxGraph", "SampleBatch", "Task", "TaskData", "TestOutputs", "loss_text"]

TASK_KEY = "neurotrain_task"  # written into a saved config.json: which task serves the folder
SETTINGS_KEY = "neurotrain_inference"  # the task's inference / post-processing settings in config.json


@dataclass
class OnnxGraph:
    """One graph ``neurotrain export onnx`` writes: a module taking ``inputs`` (name -> example tensor, in
    forward order) and returning the tensors named by ``outputs``; axis 0 of each is the batch."""

    name: str
    module: Any
    inputs: dict[str, Any]
    outputs: list[str]


@dataclass
class TaskData:
    """Prepared data: splits with transforms attached, what the model needs to know, the processor."""

    splits: datasets.DatasetDict
    info: Any
    processor: Any = None
    report: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Any] = field(default_factory=dict)  # extra JSON files for the run folder (name -> value)


class Task:
    """Base class of a task's hooks; subclasses set the class attributes and override the hooks."""

    name: ClassVar[str] = ""
    auto_model: ClassVar[str] = ""  # the transformers Auto class that loads its model folders
    processor_class: ClassVar[str] = "AutoProcessor"  # the Auto class of the processor saved beside them
    hub_task: ClassVar[str] = ""  # the Hub's pipeline tag / model-index task type
    description: ClassVar[str] = ""
    medical: ClassVar[bool] = False  # cards then say: research use, not for clinical use
    run_files: ClassVar[tuple[str, ...]] = ()  # run-folder files pushed with the record (besides the shared)

    # --- training ---------------------------------------------------------------------------------
    def prepare_data(self, config) -> TaskData:
        """Load, check and split the configured dataset; attach the train/eval transforms."""
        raise NotImplementedError

    def build_model(self, config, data: TaskData) -> Any:
        """A fresh (or pretrained) ``PreTrainedModel`` sized for the data, through the model registry."""
        raise NotImplementedError

    def build_trainer(self, config, model: Any, data: TaskData, callbacks: list | None = None) -> Any:
        """The task's ``NeuroTrainer`` subclass on the prepared splits."""
        raise NotImplementedError

    def inference(self, model_config: Any = None) -> Inference:
        """How outputs are produced (a forward, or a loop) and turned into metric inputs; shared by
        evaluation, the Tester and the Predictor."""
        return Inference()

    def settings(self, model_config: Any) -> Any:
        """The task's inference/post-processing settings saved in a model config (None: it has none)."""
        return None

    def finalize_model(self, model: Any, valid_artifacts: dict[str, Any]) -> None:
        """Before saving: record what validation chose (e.g. a tuned threshold) in the model's settings."""

    # --- saved models -------------------------------------------------------------------------------
    @classmethod
    def claims(cls, model_config: dict[str, Any]) -> bool:
        """Whether a model config without ``neurotrain_task`` is this task's (e.g. by its architecture)."""
        return False

    def load_model(self, folder: str | Path) -> Any:
        """A trained model folder through the task's transformers Auto class (no remote code)."""
        import transformers

        if not self.auto_model:
            raise NeuroTrainError(f"the {self.name} task names no auto_model: it must override load_model")
        return getattr(transformers, self.auto_model).from_pretrained(str(folder))

    def load_processor(self, folder: str | Path) -> Any:
        """The processor saved beside the model (``processor_class``); None when the folder has none."""
        import transformers

        try:
            return getattr(transformers, self.processor_class).from_pretrained(str(folder))
        except (OSError, ValueError) as exc:
            if any(Path(folder, n).is_file() for n in ("preprocessor_config.json", "processor_config.json")):
                raise NeuroTrainError(f"{folder}: cannot load its processor ({first_line(exc)})") from None
            return None

    def lora_targets(self, model: Any) -> list[str] | str:
        """The modules ``[peft]`` adapts when ``target_modules`` is not set."""
        return "all-linear"

    def lora_trained(self, model: Any) -> list[str]:
        """Modules trained in full and saved beside the adapter (PEFT ``modules_to_save``), e.g. a VLM's
        projector; ``[peft] modules_to_save`` adds to them."""
        return []

    def probe_inputs(self, model: Any) -> dict[str, Any]:
        """A fixed small batch the model takes (an adapter merge checks outputs agree on it)."""
        raise NeuroTrainError(f"the {self.name} task has no probe batch (probe_inputs) to check a merge on")

    def probe_outputs(self, model: Any, inputs: dict[str, Any]) -> list[Any]:
        """The output tensors compared on the probe batch."""
        from ..models.registry import logits_of

        return [logits_of(model(**inputs)).float()]

    # --- prediction ---------------------------------------------------------------------------------
    def read_input(self, source: str | Path) -> Any:
        """One ``neurotrain predict`` argument -> what ``preprocess`` takes; a bad one is one line naming it."""
        raise NeuroTrainError(f"the {self.name} task does not predict from files")

    def input_options(self, item: Any, options: dict[str, Any]) -> Any:
        """``neurotrain predict`` options that go with every input file (e.g. ``--question``) -> the item."""
        given = [k for k, v in options.items() if v is not None]
        if given:
            raise NeuroTrainError(f"--{given[0]}: the {self.name} task takes no such option with input files")
        return item

    def requests(self, model_config: Any, options: dict[str, Any]) -> list[tuple[str, Any]]:
        """Generative tasks: ``neurotrain predict`` options (num, seed, class, mask, prompt) -> named items
        for ``preprocess`` (no input files)."""
        raise NeuroTrainError(f"the {self.name} task predicts from input files: give them after the model")

    def finish_prediction(self, records: list[dict[str, Any]], out_dir: str | Path | None) -> list[Path]:
        """After ``neurotrain predict`` saved every record: files made from all of them (e.g. a grid)."""
        return []

    def generate_dataset(
        self, predictor: Any, conditions: str, num: int, seed: int, out: str | Path
    ) -> dict[str, Any]:
        """Generative tasks: ``neurotrain generate``: a labelled dataset made by the model from the
        conditions in a folder; returns a summary (what was written where)."""
        raise NeuroTrainError(f"the {self.name} task does not generate datasets")

    def batch_key(self, item: Any) -> Hashable:
        """Inputs with equal keys go through the model together (e.g. images of one size)."""
        return None

    def preprocess(self, processor: Any, items: Sequence[Any], settings: Any = None) -> dict[str, Any]:
        """A batch of inputs -> the keyword inputs of ``inference`` (plus anything ``predictions`` needs);
        ``settings``: the task's settings in use (e.g. zero-shot prompts to embed beside the images)."""
        return dict(processor(list(items), return_tensors="pt"))

    def predictions(
        self, outputs: Any, model: Any, inputs: dict[str, Any] | None = None, settings: Any = None
    ) -> list[dict[str, Any]]:
        """Outputs of a batch -> one record per input (the Predictor's return value); ``settings``
        overrides the saved ones (a demo's sliders)."""
        raise NotImplementedError

    def summary(self, record: dict[str, Any]) -> dict[str, Any]:
        """What ``neurotrain predict`` prints for one record (JSON-able)."""
        return record

    def explain_score(self, outputs: Any, target: int | None = None, settings: Any = None) -> tuple[Any, int]:
        """``neurotrain analyze attention`` (Grad-CAM): the scalar score of a batch of one's outputs to
        explain, and its class (``target``, else the predicted one); one line where outputs have none."""
        raise NeuroTrainError(f"the {self.name} task's outputs have no class score for Grad-CAM to explain")

    def onnx_graphs(self, model: Any, batch: dict[str, Any]) -> list[OnnxGraph]:
        """The graphs that serve this task's model without torch (``batch``: a collated batch of the test
        split, or ``probe_inputs``); one line naming why where the model cannot be exported."""
        raise NeuroTrainError(f"the {self.name} task has no ONNX export")

    def onnx_agreement(
        self, graph: str, reference: dict[str, Any], exported: dict[str, Any]
    ) -> dict[str, float]:
        """Task-level agreement (fractions in [0, 1]) of a graph's onnxruntime outputs with PyTorch's (numpy
        arrays by output name): the same labels, mask pixels or ranks."""
        return {}

    def save_prediction(
        self, record: dict[str, Any], source: str | Path, out_dir: str | Path | None
    ) -> list[Path]:
        """Write a record's outputs (masks, volumes, drawings) for ``neurotrain predict``; returns the paths.
        ``out_dir`` None: only what the task always writes (nothing by default)."""
        return []

    # --- test outputs (the Tester) --------------------------------------------------------------------
    def sample_records(self, batch: SampleBatch, out: TestOutputs) -> list[dict[str, Any]]:
        """Per-sample CSV rows of a test run (``<split>_per_sample.csv``)."""
        return [{"index": i, "loss": loss_text(batch.losses, k)} for k, i in enumerate(batch.indices)]

    def write_samples(self, batch: SampleBatch, out: TestOutputs) -> None:
        """Files of a batch beyond the CSV rows (pictures, this rank's result parts)."""

    def finish_outputs(self, out: TestOutputs) -> None:
        """On the main process, once every rank is done: merge parts, write split-level files."""

    def write_plots(self, run_dir: Path, valid: dict[str, Any], test: dict[str, Any], model: Any) -> None:
        """Task plots from the kept evaluation artifacts of validation (best model) and test."""

    # --- sharing ---------------------------------------------------------------------------------------
    def metric_protocol(self, key: str, config: dict[str, Any]) -> str:
        """How a reported metric was measured, for model cards (tasks name their protocols)."""
        return key

    def load_snippet(self, repo_id: str) -> str:
        """Python that loads the pushed model (our architectures register with the Auto classes)."""
        return (
            "import neurotrain_hf  # registers neurotrain's classes with the Auto classes (no remote code)\n"
            f"from transformers import {self.auto_model}, {self.processor_class}\n\n"
            f'model = {self.auto_model}.from_pretrained("{repo_id}")\n'
            f'processor = {self.processor_class}.from_pretrained("{repo_id}")\n'
            f'# or: neurotrain_hf.Predictor.from_pretrained("{repo_id}")(input)'
        )

    def limitations(self) -> str:
        text = (
            "Trained and evaluated on the dataset named above only; check it on data like yours before use. "
            "Results are from one run with one seed."
        )
        if self.medical:
            text += (
                " **Research use only: not a medical device and not for clinical use** (diagnosis, screening or "
                "treatment decisions). Performance on other devices, sites and populations is unknown."
            )
        return text

    def preview_labels(self, config: Any, count: int = 2) -> str:
        """``neurotrain preview-labels``: training samples rendered with the supervised tokens marked."""
        raise NeuroTrainError(f"the {self.name} task has no label preview")

    def build_demo(self, folder: Path, model_name: str, examples: Any = None, **options: Any) -> Any:
        """A Gradio ``Blocks`` serving the model folder with the API endpoint ``/predict``."""
        raise NeuroTrainError(f"the {self.name} task has no demo")


def loss_text(losses: Any, k: int) -> str:
    """A per-sample loss as CSV text (empty when the batch has none)."""
    return f"{float(losses[k]):.6f}" if losses is not None else ""
