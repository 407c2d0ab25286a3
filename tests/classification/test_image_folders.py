"""Users' real image folders: mixed modes and formats, EXIF, 16-bit, mixed sizes, corrupt and stray files."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from neurotrain_hf.data import prepare_data
from neurotrain_hf.errors import DataError

from ..conftest import make_config, run_python, tiny_config_dict, write_toml

SIZE = 12
MODES_WANTED = {"L", "LA", "RGB", "RGBA", "P", "I;16", "1"}


# --- fixtures generated on the fly ---------------------------------------------------------------
def _rgb(w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def _grey(w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L")


def _grey_palette(w: int, h: int, index: int = 102) -> Image.Image:
    image = Image.new("P", (w, h), index)
    image.putpalette([v for i in range(256) for v in (i, i, i)])
    return image


def _save(image: Image.Image, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def mode_zoo(w: int = SIZE, h: int = SIZE, seed: int = 0) -> dict[str, tuple[Image.Image, dict]]:
    """file name -> (image, save kwargs): every PIL mode and file format users have."""
    rgb = _rgb(w, h, seed)
    rgba = rgb.copy()
    rgba.putalpha(_grey(w, h, seed + 1))
    grey = _grey(w, h, seed + 2)
    la = grey.copy().convert("LA")
    la.putalpha(_grey(w, h, seed + 3))
    palette = rgb.quantize(8)
    grey16 = Image.fromarray((np.arange(w * h, dtype=np.uint16).reshape(h, w) * 300).astype(np.uint16))
    return {
        "l.png": (grey, {}),
        "la.png": (la, {}),
        "rgb.png": (rgb, {}),
        "rgba.png": (rgba, {}),
        "palette.png": (palette, {}),
        "palette_transparent.png": (palette, {"transparency": 0}),
        "palette_transparent.gif": (palette, {"transparency": 0}),
        "palette.gif": (palette, {}),
        "grey16.png": (grey16, {}),
        "grey16.tif": (grey16, {}),
        "bilevel.png": (grey.convert("1"), {}),
        "bilevel.bmp": (grey.convert("1"), {}),
        "photo_upper.JPG": (rgb, {"quality": 90}),
        "photo_upper.JPEG": (rgb, {"quality": 90}),
        "photo_lower.jpg": (grey, {"quality": 90}),
        "rgb.tiff": (rgb, {}),
        "rgb.bmp": (rgb, {}),
        "rgb.webp": (rgb, {}),
        "rgba.webp": (rgba, {"lossless": True}),
    }


def write_zoo(folder: Path, w: int = SIZE, h: int = SIZE, seed: int = 0) -> list[Path]:
    return [_save(img, folder / name, **kw) for name, (img, kw) in mode_zoo(w, h, seed).items()]


def write_jpeg_bytes(w: int = 16, h: int = 16) -> bytes:
    import io

    buf = io.BytesIO()
    _rgb(w, h, 7).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def write_bad_files(folder: Path) -> dict[str, Path]:
    """A truncated JPEG, a text file named .png and a zero-byte .jpg."""
    folder.mkdir(parents=True, exist_ok=True)
    data = write_jpeg_bytes(32, 32)
    bad = {"truncated": folder / "truncated.jpg", "text": folder / "x.png", "empty": folder / "y.jpg"}
    bad["truncated"].write_bytes(data[: len(data) // 2])
    bad["text"].write_text("this is not an image\n", encoding="utf-8")
    bad["empty"].write_bytes(b"")
    return bad


def write_strays(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1\x00" * 8)
    (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64)
    (folder / "notes.txt").write_text("taken on a Tuesday\n", encoding="utf-8")
    (folder / "readme.md").write_text("# pictures\n", encoding="utf-8")


def write_exif_jpeg(path: Path, w: int = 12, h: int = 8, marker: int = 4) -> Path:
    """A w x h JPEG (stored sideways, EXIF Orientation=6) with a white block at its stored top-left."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:marker, :marker] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(Image.fromarray(arr), path, exif=exif, quality=95)


def folder_config(tmp_path: Path, root: Path, **sections):
    dataset = {
        "name": "imagefolder",
        "root": str(root),
        "max_samples": None,
        "cache_dir": str(tmp_path / "hf_cache"),
        **sections.pop("dataset", {}),
    }
    training = {"num_train_epochs": 1, "batch_size": 4, "plots": False, **sections.pop("training", {})}
    return make_config(tmp_path, dataset=dataset, training=training, **sections)


def folder_toml(tmp_path: Path, root: Path, **sections) -> Path:
    data = tiny_config_dict(
        tmp_path,
        dataset={"name": "imagefolder", "root": str(root), "cache_dir": str(tmp_path / "hf_cache")},
        augmentation={"resize": 16},
        training={"num_train_epochs": 1, "batch_size": 4, "plots": False},
        **sections,
    )
    data["dataset"].pop("max_samples")
    return write_toml(tmp_path / "exp.toml", data)


def raw_paths(split) -> list[str]:
    return [str(Path(v["path"]).resolve()) for v in split.with_format(None)["image"]]


def pixels_by_file(data) -> dict[str, torch.Tensor]:
    """Resolved file path -> the transformed (C, H, W) tensor, over every split."""
    out = {}
    for split in data.splits.values():
        values = split[:]["pixel_values"] if len(split) else []
        out.update(zip(raw_paths(split), values))
    return out


def check_batches(data, channels: int, size: tuple[int, int]) -> int:
    """Every split in batches of 4: (B, C, H, W) float32, finite. Returns the number of samples."""
    total = 0
    for split in data.splits.values():
        for start in range(0, len(split), 4):
            x = split[start : start + 4]["pixel_values"]
            n = min(4, len(split) - start)
            assert x.shape == (n, channels, *size) and x.dtype == torch.float32
            assert torch.isfinite(x).all()
            total += n
    return total


def one_line(message: str) -> bool:
    return "\n" not in message.strip()


def one_error_line(stderr: str) -> str:
    """The single ``error:`` line of a CLI's stderr (progress bars of model loading aside), no traceback."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and stderr.rstrip().endswith(errors[0]), stderr
    return errors[0]


# --- 1. mixed modes and formats ------------------------------------------------------------------
def test_fixture_zoo_covers_the_modes_and_formats(tmp_path):
    files = write_zoo(tmp_path / "zoo")
    modes = {Image.open(p).mode for p in files}
    assert modes >= MODES_WANTED, modes
    formats = {Image.open(p).format for p in files}
    assert {"PNG", "JPEG", "GIF", "TIFF", "BMP", "WEBP"} <= formats
    assert {p.suffix for p in files} >= {".JPG", ".JPEG", ".jpg"}
    assert "transparency" in Image.open(tmp_path / "zoo" / "palette_transparent.png").info


def test_mixed_modes_and_formats_load_as_rgb(tmp_path):
    root = tmp_path / "photos"
    files = write_zoo(root / "cat", seed=0) + write_zoo(root / "dog", seed=10)
    data = prepare_data(folder_config(tmp_path, root))
    assert data.info.channels == 3 and data.info.label_names == ["cat", "dog"]
    assert len(data.info.mean) == 3 and len(data.info.std) == 3
    assert check_batches(data, 3, (SIZE, SIZE)) == len(files) == 38
    seen = set()
    for split in data.splits.values():
        seen.update(raw_paths(split))
    assert seen == {str(p.resolve()) for p in files}
    assert data.report.get("skipped_samples", {}) == {}


def test_mixed_modes_forced_grey(tmp_path):
    root = tmp_path / "photos"
    files = write_zoo(root / "cat", seed=0) + write_zoo(root / "dog", seed=10)
    data = prepare_data(folder_config(tmp_path, root, dataset={"channels": 1}))
    assert data.info.channels == 1 and len(data.info.mean) == 1
    assert check_batches(data, 1, (SIZE, SIZE)) == len(files)


def write_grey_folder(root: Path) -> dict[str, Path]:
    files = {
        "white16": _save(
            Image.fromarray(np.full((SIZE, SIZE), 65535, np.uint16)), root / "a" / "white16.png"
        ),
        "black16": _save(Image.fromarray(np.zeros((SIZE, SIZE), np.uint16)), root / "a" / "black16.png"),
        "fifth16": _save(
            Image.fromarray(np.full((SIZE, SIZE), 13107, np.uint16)), root / "b" / "fifth16.tif"
        ),
        "grey_l": _save(Image.new("L", (SIZE, SIZE), 51), root / "b" / "grey.png"),
        "grey_p": _save(_grey_palette(SIZE, SIZE, 102), root / "b" / "palette.png"),
        "grey_jpg": _save(_grey(SIZE, SIZE, 3), root / "a" / "photo.JPG"),
    }
    assert Image.open(files["white16"]).mode == "I;16" and Image.open(files["grey_p"]).mode == "P"
    return files


def test_grey_only_folder_is_one_channel_and_16_bit_is_scaled(tmp_path):
    root = tmp_path / "grey"
    files = write_grey_folder(root)
    splits = {"valid_ratio": 0.0, "test_ratio": 0.0}
    data = prepare_data(folder_config(tmp_path, root, dataset=splits))
    assert data.info.channels == 1
    assert check_batches(data, 1, (SIZE, SIZE)) == len(files)

    raw = prepare_data(folder_config(tmp_path, root, dataset=splits, augmentation={"normalize": False}))
    px = pixels_by_file(raw)
    get = {k: px[str(p.resolve())] for k, p in files.items()}
    assert get["white16"].shape == (1, SIZE, SIZE)
    torch.testing.assert_close(get["white16"], torch.ones(1, SIZE, SIZE))  # 65535 / 65535
    torch.testing.assert_close(get["black16"], torch.zeros(1, SIZE, SIZE))
    torch.testing.assert_close(get["fifth16"], torch.full((1, SIZE, SIZE), 13107 / 65535))
    torch.testing.assert_close(get["grey_l"], torch.full((1, SIZE, SIZE), 51 / 255))
    torch.testing.assert_close(get["grey_p"], torch.full((1, SIZE, SIZE), 102 / 255))

    rgb = prepare_data(
        folder_config(tmp_path, root, dataset={**splits, "channels": 3}, augmentation={"normalize": False})
    )
    assert rgb.info.channels == 3
    white = pixels_by_file(rgb)[str(files["white16"].resolve())]
    torch.testing.assert_close(white, torch.ones(3, SIZE, SIZE))


# --- 2. EXIF orientation -------------------------------------------------------------------------
def test_exif_orientation_is_applied(tmp_path):
    root = tmp_path / "exif"
    path = write_exif_jpeg(root / "a" / "portrait.jpg")  # stored 12 wide x 8 high
    plain = _save(_rgb(8, 12, 1), root / "b" / "upright.png")  # already 8 wide x 12 high: same upright size
    with Image.open(path) as stored:
        assert stored.size == (12, 8) and stored.getexif()[0x0112] == 6
        reference = np.asarray(ImageOps.exif_transpose(stored).convert("RGB"))
    assert reference.shape == (12, 8, 3)
    assert reference[:4, 4:].mean() > 200 and reference[:4, :4].mean() < 50  # marker now top-right
    cfg = folder_config(
        tmp_path, root, dataset={"valid_ratio": 0.0, "test_ratio": 0.0}, augmentation={"normalize": False}
    )
    data = prepare_data(cfg)  # no size error: sizes are compared upright
    px = pixels_by_file(data)
    out = px[str(path.resolve())]
    assert out.shape == (3, 12, 8) and px[str(plain.resolve())].shape == (3, 12, 8)
    got = (out.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    np.testing.assert_array_equal(got, reference)
    assert got[:4, 4:].mean() > 200 and got[:4, :4].mean() < 50


# --- 3. mixed sizes ------------------------------------------------------------------------------
def write_mixed_sizes(root: Path) -> list[Path]:
    files = []
    for i in range(3):
        files.append(_save(_rgb(10, 10, i), root / "train" / "a" / f"a{i}.png"))
        files.append(_save(_grey(10, 10, i), root / "train" / "b" / f"b{i}.png"))
    files.append(_save(_rgb(12, 8, 5), root / "test" / "a" / "wide.jpg"))
    files.append(_save(_rgb(10, 10, 6), root / "test" / "b" / "square.png"))
    return files


def test_mixed_sizes_with_resize(tmp_path):
    root = tmp_path / "sizes"
    files = write_mixed_sizes(root)
    data = prepare_data(folder_config(tmp_path, root, augmentation={"resize": 16}))
    assert set(data.splits) == {"train", "valid", "test"} and len(data.splits["test"]) == 2
    assert check_batches(data, 3, (16, 16)) == len(files)


def test_mixed_sizes_without_resize_name_two_files(tmp_path):
    root = tmp_path / "sizes"
    write_mixed_sizes(root)
    with pytest.raises(DataError) as info:
        prepare_data(folder_config(tmp_path, root))
    message = str(info.value)
    assert one_line(message) and "set [augmentation] resize" in message
    found = re.search(r"(\S+) is (\d+)x(\d+) but (\S+) is (\d+)x(\d+)", message)
    assert found, message
    fa, fb = found.group(1), found.group(4)
    size_a, size_b = tuple(map(int, found.group(2, 3))), tuple(map(int, found.group(5, 6)))
    assert Path(fa).is_file() and Path(fb).is_file()
    assert Image.open(fa).size == size_a and Image.open(fb).size == size_b and size_a != size_b
    assert {size_a, size_b} == {(10, 10), (12, 8)} and Path(fb).name == "wide.jpg"


# --- 4. corrupt files ----------------------------------------------------------------------------
def write_good(root: Path, n: int = 4, size: int = 16) -> list[Path]:
    files = []
    for i in range(n):
        files.append(_save(_rgb(size, size, i), root / "a" / f"a{i}.png"))
        files.append(_save(_grey(size, size, i), root / "b" / f"b{i}.jpg"))
    return files


@pytest.mark.parametrize("kind", ["truncated", "text", "empty"])
def test_corrupt_file_is_named(tmp_path, kind):
    root = tmp_path / "data"
    write_good(root)
    bad = write_bad_files(tmp_path / "bad")[kind]
    target = root / "a" / bad.name
    bad.rename(target)
    with pytest.raises(DataError) as info:
        prepare_data(folder_config(tmp_path, root))
    message = str(info.value)
    assert str(target) in message and "skip_bad_samples" in message and one_line(message), message


def test_corrupt_file_recipe_exits_2_with_one_line(tmp_path):
    root = tmp_path / "data"
    write_good(root)
    bad = write_bad_files(root / "b")["truncated"]
    proc = run_python(["recipes/train_classification.py", str(folder_toml(tmp_path, root))], timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("error:") and str(bad) in lines[0] and "skip_bad_samples" in lines[0]


def write_corrupt_split_folder(root: Path) -> dict[str, list[Path]]:
    """root/train and root/test with good images plus 2 bad files in train and 1 in test."""
    good = write_good(root / "train") + write_good(root / "test", n=2)
    bad = write_bad_files(root / "train" / "a")
    moved = root / "test" / "b" / bad["empty"].name
    bad["empty"].rename(moved)
    return {"good": good, "train": [bad["truncated"], bad["text"]], "test": [moved]}


def test_skip_bad_samples_counts_and_lists(tmp_path):
    root = tmp_path / "data"
    files = write_corrupt_split_folder(root)
    data = prepare_data(folder_config(tmp_path, root, dataset={"skip_bad_samples": True}))
    assert data.report["skipped_samples"] == {"train": 2, "test": 1}
    listed = {k: {str(Path(p).resolve()) for p in v} for k, v in data.report["skipped_files"].items()}
    assert listed == {k: {str(p.resolve()) for p in files[k]} for k in ("train", "test")}
    assert sum(len(s) for s in data.splits.values()) == len(files["good"]) == 12
    assert check_batches(data, 3, (16, 16)) == 12


def test_skip_bad_samples_full_run_reports_skips(tmp_path):
    from neurotrain_hf.runner import run

    root = tmp_path / "data"
    files = write_corrupt_split_folder(root)
    cfg = folder_config(tmp_path, root, dataset={"skip_bad_samples": True}, augmentation={"resize": 16})
    report = run(cfg)
    saved = json.loads((Path(report["run_dir"]) / "report.json").read_text())
    assert saved["skipped_samples"] == {"train": 2, "test": 1}
    assert sorted(Path(p).name for p in saved["skipped_files"]["train"]) == sorted(
        p.name for p in files["train"]
    )
    assert saved["test"]["num_samples"] == 4


# --- 5. stray files and empty class folders ------------------------------------------------------
def test_stray_files_and_empty_class_folders_are_ignored(tmp_path):
    root = tmp_path / "data"
    files = write_good(root, n=3)
    write_strays(root / "a")
    write_strays(root / "b")
    (root / "c_empty").mkdir()
    (root / "d_only_ds_store").mkdir()
    (root / "d_only_ds_store" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    data = prepare_data(folder_config(tmp_path, root))
    assert data.info.label_names == ["a", "b"] and data.info.num_labels == 2
    seen = set()
    for split in data.splits.values():
        seen.update(raw_paths(split))
    assert seen == {str(p.resolve()) for p in files}
    assert check_batches(data, 3, (16, 16)) == 6


# --- 6. predictor on messy inputs ----------------------------------------------------------------
def write_messy(root: Path) -> list[Path]:
    files = write_zoo(root / "cat", 12, 12, seed=0) + write_zoo(root / "dog", 10, 14, seed=10)
    files.append(write_exif_jpeg(root / "dog" / "portrait.jpg"))
    files.append(_save(Image.fromarray(np.full((9, 20), 65535, np.uint16)), root / "cat" / "white16.png"))
    write_strays(root / "cat")
    (root / "empty").mkdir()
    return files


def pil_inputs() -> list[Image.Image]:
    rgb = _rgb(14, 9, 3)
    rgba = rgb.copy()
    rgba.putalpha(128)
    return [
        rgb,
        rgba,
        rgb.convert("L"),
        rgb.convert("LA"),
        rgb.convert("1"),
        rgb.quantize(16),
        rgb.convert("CMYK"),
        Image.fromarray(np.full((9, 14), 40000, np.uint16)),
        Image.fromarray(np.full((9, 14), 40000, np.int32)),
        Image.fromarray(np.full((9, 14), 0.5, np.float32)),
    ]


def test_predictor_and_cli_on_messy_folder(tmp_path, capsys):
    from neurotrain_hf import Predictor
    from neurotrain_hf.cli import main
    from neurotrain_hf.runner import run

    root = tmp_path / "messy"
    files = write_messy(root)
    report = run(folder_config(tmp_path, root, augmentation={"resize": 16}))
    run_dir = Path(report["run_dir"])
    assert report["dataset"]["channels"] == 3 and report["dataset"]["label_names"] == ["cat", "dog"]
    assert sum(report["dataset"]["samples"].values()) == len(files)

    predictor = Predictor.from_pretrained(run_dir)
    preds = predictor.predict([str(p) for p in files])
    assert len(preds) == len(files)
    assert all(p["label_name"] in ("cat", "dog") and np.isclose(sum(p["scores"]), 1.0) for p in preds)
    opened = [Image.open(p) for p in files]
    images = opened + pil_inputs()
    assert {im.mode for im in images} >= MODES_WANTED | {"I", "F", "CMYK"}
    preds = predictor.predict(images)
    assert len(preds) == len(images) and all(np.isfinite(p["scores"]).all() for p in preds)
    assert predictor(str(files[0]))["label"] in (0, 1)

    capsys.readouterr()
    assert main(["predict", str(run_dir), *map(str, files)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(files)
    records = [json.loads(line) for line in lines]
    assert [r["input"] for r in records] == [str(p) for p in files]
    assert all(r["label_name"] in ("cat", "dog") for r in records)

    missing = tmp_path / "nowhere" / "missing.png"
    assert main(["predict", str(run_dir), str(files[0]), str(missing)]) == 2
    captured = capsys.readouterr()
    assert one_error_line(captured.err) == f"error: {missing}: file not found"
    assert captured.out == ""

    unreadable = write_bad_files(tmp_path / "bad")["text"]
    assert main(["predict", str(run_dir), str(unreadable)]) == 2
    captured = capsys.readouterr()
    assert one_error_line(captured.err).startswith(f"error: {unreadable}: cannot read this image")
    assert captured.out == ""
