"""3D segmentation demo: a NIfTI volume in, the label volume (NIfTI, on the input's grid) and a slice out.

The mask is the ``Predictor``'s (``predict_files``): preprocessed like the Tester, sliding-window
inference, logits resampled back onto the uploaded file's voxel grid; it is written with the upload's
affine and header, so it overlays the input in any viewer. The picture is the axial slice with the most
predicted foreground (or the one the slider picks), classes tinted over the image; the table gives each
class's volume in millilitres. Uploads are checked: missing or empty, over ``MAX_BYTES``, not a
``.nii``/``.nii.gz``, unreadable or truncated NIfTI, or a channel count the model does not take.

API: ``/predict(volume, slice_index)`` -> ``(mask_nifti, slice_png, volumes)``; ``slice_index`` -1
(default) picks the slice with the most foreground.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ...demos.common import MAX_BYTES, InputError, examples_of, gradio, guarded
from ...errors import NeuroTrainError

SUFFIXES = (".nii", ".nii.gz")


def check_volume(path: str | os.PathLike | None) -> Path:
    """The upload's path if it can be a NIfTI volume we read; else an ``InputError`` with one line."""
    if not path:
        raise InputError("no file: upload a NIfTI volume (.nii or .nii.gz)")
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise InputError(f"{path.name}: the file is empty or missing")
    if not path.name.lower().endswith(SUFFIXES):
        raise InputError(f"{path.name}: expected a NIfTI volume (.nii or .nii.gz)")
    if path.stat().st_size > MAX_BYTES * 10:
        raise InputError(f"{path.name}: over the {MAX_BYTES * 10 // 2**20} MB limit for volumes")
    return path


def build_demo(folder: Path, model: str, examples: Any = None) -> Any:
    """A ``gr.Blocks`` segmenting one uploaded NIfTI volume with a 3D model folder (``model``: its name)."""
    from ...predictor import Predictor
    from .nifti import read_image
    from .volume_overlay import slice_picture

    gr = gradio()
    predictor = Predictor.from_pretrained(folder)
    names = list(getattr(predictor.model.config, "id2label", {}).values())
    task = predictor.task
    out_dir = Path(tempfile.mkdtemp(prefix="neurotrain-demo-"))

    @guarded
    def predict(path: str | None, slice_index: float = -1) -> tuple[str, np.ndarray, list[list[Any]]]:
        upload = check_volume(path)
        try:
            record = predictor.predict_files([str(upload)])[0]
        except NeuroTrainError as exc:  # name the upload, not gradio's temporary path
            raise InputError(str(exc).replace(str(upload), upload.name)) from None
        written = task.save_prediction(
            record, upload, tempfile.mkdtemp(dir=out_dir)
        )  # one folder per request
        mask = record["mask"]
        image = read_image(record["image"][:1])[0][0]
        z = int(slice_index) if slice_index is not None and int(slice_index) >= 0 else None
        if z is not None and not 0 <= z < mask.shape[2]:
            raise InputError(f"slice {z}: the volume has {mask.shape[2]} slices (0-{mask.shape[2] - 1})")
        picture = (
            slice_picture(image, mask)
            if z is None
            else slice_picture(image[:, :, z : z + 1], mask[:, :, z : z + 1])
        )
        table = [
            [names[int(c)] if int(c) < len(names) else c, ml]
            for c, ml in task.summary(record)["volume_ml"].items()
        ]
        return str(written[0]), picture, table

    files = examples_of(examples, suffixes=SUFFIXES)
    with gr.Blocks(title="neurotrain 3D segmentation") as demo:
        gr.Markdown(
            f"## Volume segmentation\nModel: `{model}`. Upload a NIfTI volume (.nii / .nii.gz): the label "
            "volume on the same voxel grid (download it and open it over the input in any viewer), one axial "
            "slice, and each structure's volume. Research use only, not for clinical use."
        )
        with gr.Row():
            with gr.Column():
                volume = gr.File(label="Volume (NIfTI)", file_types=[".nii", ".gz"], type="filepath")
                slice_index = gr.Number(value=-1, precision=0, label="Axial slice (-1: most foreground)")
                button = gr.Button("Segment", variant="primary")
            with gr.Column():
                mask = gr.File(label="Label volume (NIfTI)")
                picture = gr.Image(label="Slice", format="png", type="numpy")
                volumes = gr.Dataframe(headers=["structure", "volume (ml)"], label="Volumes")
        button.click(
            predict, inputs=[volume, slice_index], outputs=[mask, picture, volumes], api_name="predict"
        )
        if files:
            gr.Examples(files, inputs=volume, cache_examples=False)
    return demo
