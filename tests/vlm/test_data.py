"""VLM data as users have it: bad conversations and images are one line naming the row (exit 2) or
skipped and counted; ``neurotrain preview-labels`` shows the supervised tokens before training."""

from __future__ import annotations

import json

import pytest

from neurotrain_hf.config import build_config
from neurotrain_hf.errors import DataError
from neurotrain_hf.tasks.vlm.data import prepare
from tests.conftest import run_python
from tests.vlm.conversations import config, write_conversations

BAD = {
    "no assistant turn": [{"from": "human", "value": "<image>\nwhat is it?"}],
    "an assistant turn (answer) is empty": [
        {"from": "human", "value": "<image>\nwhat is it?"},
        {"from": "gpt", "value": "  "},
    ],
    "an image but no <image> marker": [
        {"from": "human", "value": "what is it?"},
        {"from": "gpt", "value": "red"},
    ],
}


def write_bad(root, kind: str, image: str = "images/0.png"):
    write_conversations(root, count=6)
    items = json.loads((root / "conversations.json").read_text())
    if kind == "marker without image":
        items[2].pop("image")
    elif kind == "corrupt image":
        (root / "images" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    else:
        items[2]["conversations"] = BAD[kind]
    (root / "conversations.json").write_text(json.dumps(items))
    return root


@pytest.mark.parametrize(
    ("kind", "line"),
    [
        ("no assistant turn", r"^train row 2 \(sample c2\): the conversation has no assistant turn; fix it"),
        (
            "an assistant turn (answer) is empty",
            r"^train row 2 \(sample c2\): an assistant turn \(answer\) is empty",
        ),
        (
            "an image but no <image> marker",
            r"^train row 2 \(sample c2\): the row has an image but no <image> marker",
        ),
        (
            "marker without image",
            r"^train row 2 \(sample c2\): the text has an <image> marker but the row has no image",
        ),
        ("corrupt image", r"3\.png: cannot read this image .*train row 3"),
    ],
)
def test_bad_rows_are_one_line_naming_the_row_or_skipped_and_counted(tmp_path, kind, line):
    root = write_bad(tmp_path / "data", kind)
    data = config(root, tmp_path / "runs", "bad")
    with pytest.raises(DataError, match=line):
        prepare(build_config(data))
    data["dataset"]["skip_bad_samples"] = True
    prepared = prepare(build_config(data))
    assert len(prepared.splits["train"]) == 5
    counted = prepared.report["skipped_conversations"] or prepared.report["skipped_samples"]
    assert counted == {"train": 1}


def test_the_cli_refuses_a_bad_row_in_one_line_with_exit_2(tmp_path):
    from neurotrain_hf.config.io import write_config_file

    root = write_bad(tmp_path / "data", "no assistant turn")
    path = tmp_path / "bad.toml"
    write_config_file(config(root, tmp_path / "runs", "bad"), path)
    proc = run_python(["-m", "neurotrain_hf.cli", "train", str(path)], timeout=300)
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith("error: train row 2 (sample c2): the conversation has no")
    )
    assert "Traceback" not in proc.stderr


def test_preview_labels_marks_exactly_the_answers(tmp_path):
    from neurotrain_hf.config.io import write_config_file

    root = write_conversations(tmp_path / "data", count=4)
    path = tmp_path / "p.toml"
    write_config_file(config(root, tmp_path / "runs", "p"), path)
    proc = run_python(["-m", "neurotrain_hf.cli", "preview-labels", "--count", "2", str(path)], timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    items = json.loads((root / "conversations.json").read_text())
    # sample c0 has two answers (the second turn asks the colour), c1 one
    first, second = items[0]["conversations"], items[1]["conversations"]
    assert lines[0].startswith("--- train row 0 (sample c0): ")
    assert lines[1] == (
        "<s> user : <image x4> what is in the image ? assistant : "
        f"[[{first[1]['value']} </s>]] user : and the colour ? assistant : [[{first[3]['value']} </s>]]"
    )
    words = len(second[1]["value"].split())
    assert lines[2].startswith(f"--- train row 1 (sample c1): {words + 1} of ")
    assert lines[3].endswith(f"assistant : [[{second[1]['value']} </s>]]")
