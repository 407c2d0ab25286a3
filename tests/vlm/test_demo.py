"""The VLM demo Space, launched on 127.0.0.1 and called through ``gradio_client``: ``/predict(image,
question)`` answers as the ``Predictor`` does for the same image and question (a 16-bit image as its
8-bit RGB scaling); a missing, undecodable or oversized image and an empty or too long question are
refused with one line, no traceback, and the demo keeps answering; its queue and uploads are bounded."""

from __future__ import annotations

import contextlib
import re
import runpy

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.requires("gradio")
SPACE = ROOT / "spaces" / "vlm-demo"
IMAGE = SPACE / "examples" / "one_red_circle_top-left.png"
QUESTIONS = [  # the pair asked is the first two with different answers (the tiny model answers junk)
    "how many shapes are there?",
    "what colour are the shapes?",
    "is there a circle?",
    "where is the shape?",
    "are the shapes red?",
]


@contextlib.contextmanager
def serve(demo):
    from gradio_client import Client

    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        demo.close()


def refused(client, args: list, pattern: str) -> None:
    """``/predict(*args)`` must fail with one line matching ``pattern``."""
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as caught:
        client.predict(*args, api_name="/predict")
    message = caught.value.message
    assert re.search(pattern, message) and "\n" not in message, message
    assert "Traceback" not in message and "/gradio/" not in message, message


def test_space_answers_as_the_predictor_and_refuses_bad_inputs(
    vlm_run, sample_images, monkeypatch, capfd, caplog
):
    from gradio_client import handle_file

    from neurotrain_hf import Predictor
    from neurotrain_hf.demos import build_demo
    from neurotrain_hf.errors import NeuroTrainError

    predictor = Predictor.from_pretrained(vlm_run)
    answers = {q: predictor({"image": str(IMAGE), "question": q})["answer"] for q in QUESTIONS}
    asked = [q for i, q in enumerate(QUESTIONS) if answers[q] not in [answers[p] for p in QUESTIONS[:i]]][:2]
    assert len(asked) == 2, (
        f"every question gets the same answer {answers}: the comparison would not see the question"
    )
    long_question = "x" * 999 + "?"  # at the limit: answered
    answers[long_question] = predictor({"image": str(IMAGE), "question": long_question})["answer"]
    # a 16-bit grey image reaches the model scaled to 8 bits, grey repeated into RGB
    grey = np.asarray(Image.open(sample_images["digit16"]), dtype=np.float64)
    rgb = np.repeat(np.round(grey / 65535 * 255).astype(np.uint8)[..., None], 3, axis=-1)
    digit_answer = predictor({"image": rgb, "question": asked[0]})["answer"]

    with pytest.raises(NeuroTrainError, match=r"^the VLM demo takes no options, got top_k$"):
        build_demo(str(vlm_run), top_k=3)
    monkeypatch.setenv("NEUROTRAIN_MODEL", str(vlm_run))
    demo = runpy.run_path(str(SPACE / "app.py"))["demo"]  # the Space's app, the model from the environment
    queue = demo._queue
    assert (queue.max_size, queue.default_concurrency_limit) == (16, 1)  # serve_limits
    image = handle_file(str(IMAGE))
    with serve(demo) as client:
        assert demo.max_file_size == 2 * 20 * 2**20
        for question in asked:
            assert client.predict(image, question, api_name="/predict") == answers[question], question
        assert client.predict(image, f"  {long_question}\n", api_name="/predict") == answers[long_question]
        digit = handle_file(str(sample_images["digit16"]))
        assert client.predict(digit, asked[0], api_name="/predict") == digit_answer

        refused(client, [None, asked[0]], r"^no image: upload an image file$")
        refused(
            client,
            [handle_file(str(sample_images["corrupt"])), asked[0]],
            r"^corrupt\.png: not a readable image",
        )
        refused(
            client,
            [handle_file(str(sample_images["huge"])), asked[0]],
            r"^huge\.png: 5000 x 2 px is over the 4096 px limit per side$",
        )
        for blank in ("", " \n\t "):
            refused(client, [image, blank], r"^no question: type a question about the image$")
        refused(client, [image, "x" * 1001], r"^question: 1,001 characters, over the 1,000-character limit$")
        assert client.predict(image, asked[1], api_name="/predict") == answers[asked[1]]  # still answering
    err = capfd.readouterr().err
    assert "Traceback" not in err and not any(r.exc_info for r in caplog.records), err[-3000:]
    refusals = [r.message for r in caplog.records if r.name.startswith("neurotrain")]
    assert len(refusals) == 6 and all(m.startswith("refused: ") for m in refusals), refusals
