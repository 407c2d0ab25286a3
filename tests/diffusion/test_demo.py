"""The diffusion demo Space, launched on 127.0.0.1 and called through ``gradio_client``: its gallery holds
the images the ``Predictor`` generates for the same seeds, class or mask, steps and guidance (uint8,
through the PNG); bad requests (an unknown class, a mask of another size, limits exceeded) are refused
with one line and the demo keeps answering; its queue and uploads are bounded like every demo's."""

from __future__ import annotations

import contextlib
import re
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import ROOT, free_port
from tests.helpers.diffusion_runs import tiny

pytestmark = pytest.mark.requires("gradio")
SPACE = ROOT / "spaces" / "diffusion-demo"
CLASSES = ["red circle", "green square", "blue triangle", "yellow cross"]  # color_shapes, in label order


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("diffusion_demo")
    return {
        "class": tiny(tmp, "class", "class", "color_shapes", guidance_scale=2.0),
        "mask": tiny(tmp, "mask", "mask", "vessel_patches", sampler="dpm++"),
    }


@contextlib.contextmanager
def serve(demo):
    from gradio_client import Client

    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        demo.close()


def expected(run: Path, requests: list[dict], steps: int | None = None, guidance: float | None = None):
    """The Predictor's images (uint8) for ``requests``, at the given steps / guidance."""
    from neurotrain_hf import Predictor

    predictor = Predictor.from_pretrained(run)
    if steps is not None:
        predictor.inference.settings.update(sampling_steps=steps, guidance_scale=guidance)
    images = np.stack([r["image"] for r in predictor.predict(requests)])
    return np.round(np.clip(images, 0, 1) * 255).astype(np.uint8)


def gallery_images(gallery: list[dict]) -> np.ndarray:
    files = [Path(item["image"]) for item in gallery]
    assert all(Image.open(f).format == "PNG" for f in files)
    return np.stack([np.asarray(Image.open(f)) for f in files])


def refused(client, pattern: str, **kwargs) -> None:
    """``/predict(**kwargs)`` must fail with one line matching ``pattern``."""
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as caught:
        client.predict(**kwargs, api_name="/predict")
    message = caught.value.message
    assert re.search(pattern, message) and "\n" not in message, message
    assert "Traceback" not in message and "/gradio/" not in message, message


def test_space_serves_the_predictors_images_and_refuses_bad_requests(runs, monkeypatch, capfd, caplog):
    run = runs["class"]
    monkeypatch.setenv("NEUROTRAIN_MODEL", str(run))
    demo = runpy.run_path(str(SPACE / "app.py"))["demo"]  # the Space's app, the model from the environment
    queue = demo._queue
    assert (queue.max_size, queue.default_concurrency_limit) == (16, 1)  # serve_limits
    with serve(demo) as client:
        assert demo.max_file_size == 2 * 20 * 2**20
        # the saved settings (4 DDIM steps, guidance 2): the Predictor's images for seeds 5, 6, 7
        gallery = client.predict(class_name="blue triangle", num_images=3, seed=5, api_name="/predict")
        first = expected(run, [{"noise_seed": 5 + i, "class": 2} for i in range(3)])
        assert first.shape == (3, 16, 16, 3)
        np.testing.assert_array_equal(gallery_images(gallery), first)
        assert [item["caption"] for item in gallery] == [f"seed {s}, blue triangle" for s in (5, 6, 7)]
        # steps and guidance chosen for one request; the class given by its index
        gallery = client.predict(
            class_name="1", num_images=2, seed=0, steps=2, guidance_scale=4.0, api_name="/predict"
        )
        want = expected(run, [{"noise_seed": i, "class": 1} for i in range(2)], steps=2, guidance=4.0)
        np.testing.assert_array_equal(gallery_images(gallery), want)
        assert not np.array_equal(want, expected(run, [{"noise_seed": i, "class": 1} for i in range(2)]))

        names = re.escape(", ".join(CLASSES))
        refused(
            client,
            rf"^class 'purple hexagon': not one of the model's classes \({names}\)$",
            class_name="purple hexagon",
        )
        refused(client, rf"^class '4': not one of the model's classes \({names}\)$", class_name="4")
        refused(client, r"^number of images 17: expected a whole number from 1 to 16$", num_images=17)
        refused(client, r"^sampling steps 101: expected a whole number from 1 to 100$", steps=101)
        refused(client, r"^guidance scale -1(\.0)?: expected a number from 0 to 20$", guidance_scale=-1)
        again = client.predict(class_name="blue triangle", num_images=1, seed=5, api_name="/predict")
        np.testing.assert_array_equal(gallery_images(again), expected(run, [{"noise_seed": 5, "class": 2}]))
    err = capfd.readouterr().err
    assert "Traceback" not in err and not any(r.exc_info for r in caplog.records), err[-3000:]
    refusals = [r.message for r in caplog.records if r.name.startswith("neurotrain")]
    assert len(refusals) == 5 and all(m.startswith("refused: ") for m in refusals), refusals


def test_mask_demo_generates_for_the_mask_and_refuses_another_size(runs, tmp_path):
    from gradio_client import handle_file

    from neurotrain_hf.demos import build_demo  # the model folder's task builds its demo

    pixels = np.zeros((16, 16), np.uint8)
    pixels[4:12, 6:9] = 255  # a vertical bar
    good, small = tmp_path / "mask.png", tmp_path / "small.png"
    Image.fromarray(pixels).save(good)
    Image.fromarray(pixels[:8, :8]).save(small)
    mask = torch.from_numpy(np.where(pixels > 0, 1.0, -1.0).astype(np.float32))[None]  # {-1, 1}, (1, H, W)
    with serve(build_demo(str(runs["mask"]))) as client:
        gallery = client.predict(mask=handle_file(str(good)), num_images=2, seed=3, api_name="/predict")
        want = expected(runs["mask"], [{"noise_seed": 3 + i, "mask": mask} for i in range(2)])
        np.testing.assert_array_equal(gallery_images(gallery), want)
        unmasked = expected(runs["mask"], [{"noise_seed": 3 + i} for i in range(2)])
        assert not np.array_equal(want, unmasked)  # the mask reached the model
        refused(
            client,
            r"^small\.png: mask size \(8, 8\) \(w, h\) differs from the model's image size 16x16$",
            mask=handle_file(str(small)),
        )
        refused(client, r"^class 'red circle': this model is not class-conditioned$", class_name="red circle")
        np.testing.assert_array_equal(
            gallery_images(client.predict(num_images=2, seed=3, api_name="/predict")), unmasked
        )
