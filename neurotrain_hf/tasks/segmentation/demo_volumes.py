"""3D segmentation demo: a NIfTI volume in, the label volume (NIfTI, on the input's grid) and a slice out.

The mask is the ``Predictor``'s (``predict_files``): preprocessed like the Tester, sliding-window
inference, logits resampled back onto the uploaded file's voxel grid; it is written with the upload's
affine and header, so it overlays the input in any viewer. The picture is the axial slice with the most
predicted foreground (or the one the slider picks), classes tinted over the image; the table gives each
class's volume in millilitres. Uploads are checked, each failure one line naming the file: missing or
empty, over ``MAX_VOLUME_BYTES``, not a ``.nii``/``.nii.gz``, a header that does not read, not a 3-D
volume (a 2-D image, an axis of one voxel, more than 4 axes), over ``MAX_VOXELS`` voxels as stored or
once resampled to the model's spacing (read from the header, before any voxel is decoded: a small
``.nii.gz`` can declare gigabytes), truncated voxel data, or a channel count the model does not take.
Each request writes into its own folder (``ResultFiles``: the last few are kept).

API: ``/predict(volume, slice_index)`` -> ``(mask_nifti, slice_png, volumes)``; ``slice_index`` -1
(default) picks the slice with the most foreground.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ...demos.common import (
    MAX_BYTES,
    InputError,
    ResultFiles,
    examples_of,
    file_input,
    first_line,
    gradio,
    guarded,
    serve_limits,
)
from ...errors import NeuroTrainError

SUFFIXES = (".nii", ".nii.gz")
MAX_VOLUME_BYTES = MAX_BYTES * 10  # 200 MB per file
MAX_VOXELS = 2**26  # 67 M voxels (512 x 512 x 256), as stored and on the model's grid


def check_volume(path: str | os.PathLike | None) -> Path:
    """The upload's path if it can be a NIfTI volume we read; else an ``InputError`` with one line."""
    if not path:
        raise InputError("no file: upload a NIfTI volume (.nii or .nii.gz)")
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise InputError(f"{path.name}: the file is empty or missing")
    if not path.name.lower().endswith(SUFFIXES):
        raise InputError(f"{path.name}: expected a NIfTI volume (.nii or .nii.gz)")
    if path.stat().st_size > MAX_VOLUME_BYTES:
        raise InputError(f"{path.name}: over the {MAX_VOLUME_BYTES // 2**20} MB limit for volumes")
    return path


def check_header(path: Path, spacing: list[float] | None = None) -> tuple[int, ...]:
    """The stored shape of a NIfTI whose header says it is a 3-D volume of at most ``MAX_VOXELS``, also
    once resampled to ``spacing`` (mm); else an ``InputError`` with one line. No voxel is decoded."""
    import nibabel as nib

    try:
        image = nib.load(str(path))
        shape, zooms = tuple(int(n) for n in image.shape), image.header.get_zooms()
    except Exception as exc:  # noqa: BLE001 - nibabel raises many kinds for a file that is not NIfTI
        reason = first_line(exc).replace(str(path), path.name)  # not the server's path
        raise InputError(f"{path.name}: not a readable NIfTI ({reason})") from None
    size = " x ".join(map(str, shape))
    if len(shape) < 3 or min(shape[:3]) < 2:
        raise InputError(f"{path.name}: a 2-D image ({size}); upload a 3-D volume")
    if len(shape) > 4:
        raise InputError(f"{path.name}: {len(shape)} axes ({size}); expected a 3-D volume, channels last")
    stored = int(np.prod(shape[:3], dtype=np.float64))
    resampled = stored
    if spacing:
        scale = [max(float(z), 1e-6) / s for z, s in zip(zooms[:3], spacing)]
        resampled = int(np.prod([n * f for n, f in zip(shape[:3], scale)]))
    if max(stored, resampled) > MAX_VOXELS:
        which = "" if stored > MAX_VOXELS else f" once resampled to {spacing} mm"
        raise InputError(
            f"{path.name}: {size} voxels{which} is over the {MAX_VOXELS:,}-voxel limit"
            f" ({max(stored, resampled):,})"
        )
    return shape


def build_demo(folder: Path, model: str, examples: Any = None) -> Any:
    """A ``gr.Blocks`` segmenting one uploaded NIfTI volume with a 3D model folder (``model``: its name)."""
    from ...predictor import Predictor
    from .nifti import read_image
    from .volume_overlay import slice_picture

    gr = gradio()
    predictor = Predictor.from_pretrained(folder)
    names = list(getattr(predictor.model.config, "id2label", {}).values())
    task = predictor.task
    spacing = getattr(predictor.processor, "spacing", None)
    results = ResultFiles()

    @guarded
    def predict(path: str | None, slice_index: float = -1) -> tuple[str, str, list[list[Any]]]:
        upload = check_volume(path)
        check_header(upload, spacing)
        try:
            record = predictor.predict_files([str(upload)])[0]
        except NeuroTrainError as exc:  # name the upload, not gradio's temporary path
            message = first_line(exc).replace(str(upload), upload.name)
            raise InputError(
                message if message.startswith(upload.name) else f"{upload.name}: {message}"
            ) from None
        folder = results.folder()
        written = task.save_prediction(record, upload, folder)
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
        return str(written[0]), results.png(folder, "slice", picture), table

    files = examples_of(examples, suffixes=SUFFIXES)
    with gr.Blocks(title="neurotrain 3D segmentation") as demo:
        gr.Markdown(
            f"## Volume segmentation\nModel: `{model}`. Upload a NIfTI volume (.nii / .nii.gz): the label "
            "volume on the same voxel grid (download it and open it over the input in any viewer), one axial "
            "slice, and each structure's volume. Research use only, not for clinical use."
        )
        with gr.Row():
            with gr.Column():
                volume = file_input("Volume (NIfTI)", [".nii", ".gz"])
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
    return serve_limits(demo, MAX_VOLUME_BYTES)
