"""The embedded VQA dataset: the CLIP task's rendered shapes, one to three per image, with closed (yes/no)
and open questions about shape, colour, position and count (offline default, no download).

Each image holds one to three shapes of one kind and one colour in distinct quadrants, so every question
has one answer. The image layouts (which shape of which colour where) of the valid and test splits never occur
in training: held-out scores measure answers about unseen scenes, not memorised ones.
"""

from __future__ import annotations

import itertools

import datasets
import numpy as np

from ...config.sections import DatasetConfig
from ...data.registry import DatasetSource, register_dataset
from ..clip.synthetic import COLOURS, POSITIONS, SHAPES, _mask

IMAGE_SIZE = 48
COUNT_WORDS = ("zero", "one", "two", "three")
DESCRIBE = "describe the image."
RADIUS = 0.2  # shape radius as a fraction of the image side (a quadrant holds one shape)
Scene = tuple[tuple[str, str, str], ...]  # ((shape, colour, position), ...) sorted by position


def render_scene(scene: Scene, size: int, rng: np.random.Generator) -> np.ndarray:
    """One HWC uint8 image of a scene, with jittered positions, sizes, hues and background noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    image = rng.uniform(20, 70) + rng.normal(0, 4, (size, size, 3))
    for shape, colour, position in scene:
        cy, cx = (np.array(POSITIONS[position]) + rng.uniform(-0.015, 0.015, 2)) * size
        mask = _mask(shape, yy, xx, cy, cx, RADIUS * size * rng.uniform(0.95, 1.05))
        rgb = np.clip(np.array(COLOURS[colour], dtype=np.float32) + rng.normal(0, 8, 3), 0, 255)
        image[mask] = rgb + rng.normal(0, 3, (int(mask.sum()), 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def random_scene(rng: np.random.Generator) -> Scene:
    """One to three shapes of one kind and one colour, in distinct quadrants."""
    count = int(rng.integers(1, 4))
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
    positions = list(POSITIONS)
    places = sorted(int(p) for p in rng.permutation(len(positions))[:count])
    return tuple((shape, colour, positions[p]) for p in places)


def caption(scene: Scene) -> str:
    """ "two red circles at the top left and bottom right"."""
    shape, colour = scene[0][0], scene[0][1]
    noun = shape if len(scene) == 1 else f"{shape}{'es' if shape.endswith('s') else 's'}"
    names = [o[2] for o in scene]
    places = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    return f"{COUNT_WORDS[len(scene)]} {colour} {noun} at the {places}"


def how_many(count: int) -> str:
    return "is there one shape?" if count == 1 else f"are there {COUNT_WORDS[count]} shapes?"


def questions(scene: Scene, rng: np.random.Generator) -> list[tuple[str, str, str]]:
    """(question, answer, answer_type) about a scene, one per attribute (shape, colour, count, position) in
    random order: two closed (one answered yes, one no) and two open, so no answer gives another away."""
    shape, colour = scene[0][0], scene[0][1]
    count = len(scene)
    places = [o[2] for o in scene]
    empty = [p for p in POSITIONS if p not in places]

    def pick(options: list) -> str:
        return options[int(rng.integers(len(options)))]

    closed = {
        "shape": (f"is there a {shape}?", f"is there a {pick([s for s in SHAPES if s != shape])}?"),
        "colour": (
            f"are the shapes {colour}?",
            f"are the shapes {pick([c for c in COLOURS if c != colour])}?",
        ),
        "count": (how_many(count), how_many(int(pick([n for n in (1, 2, 3) if n != count])))),
        "position": (f"is there a shape at the {pick(places)}?", f"is there a shape at the {pick(empty)}?"),
    }
    opened = {
        "shape": ("what shape is in the image?", shape),
        "colour": ("what colour are the shapes?", colour),
        "count": ("how many shapes are there?", COUNT_WORDS[count]),
        "position": ("where is the shape?", places[0]),
    }
    attributes = list(closed)
    while True:  # two attributes asked closed; "where is the shape?" only has one answer for one shape
        asked_closed = {attributes[int(i)] for i in rng.permutation(4)[:2]}
        if count == 1 or "position" in asked_closed:
            break
    yes_first = bool(rng.integers(2))
    out, answers = [], iter(("yes", "no") if yes_first else ("no", "yes"))
    for attribute in attributes:
        if attribute in asked_closed:
            answer = next(answers)
            out.append((closed[attribute][0 if answer == "yes" else 1], answer, "closed"))
        else:
            out.append((*opened[attribute], "open"))
    return [out[int(i)] for i in rng.permutation(len(out))]


def every_scene() -> list[Scene]:
    """Every scene (shape, colour, one to three quadrants), in a fixed order."""
    positions = list(POSITIONS)
    places = [c for n in (1, 2, 3) for c in itertools.combinations(positions, n)]
    return [tuple((s, c, p) for p in ps) for s in SHAPES for c in COLOURS for ps in places]


def vqa_split(scenes: list[Scene], size: int, seed: int, captions: bool = False) -> datasets.Dataset:
    """One row per question in the task's schema: ``image`` (a PNG of the HWC uint8 rendering), ``messages``
    (the question after an ``<image>`` marker, the answer), ``answer_type``, ``sample_id``. ``captions``: each image also gets a
    describe-the-image row naming all four attributes (LLaVA's caption data beside its instructions: every
    such answer needs the shape, which questions about colour or count alone never teach)."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {k: [] for k in ("image", "messages", "answer_type", "sample_id")}

    def add(image: np.ndarray, question: str, answer: str, kind: str, sample_id: str) -> None:
        rows["image"].append(image)
        rows["messages"].append(
            [{"role": "user", "content": f"<image>\n{question}"}, {"role": "assistant", "content": answer}]
        )
        rows["answer_type"].append(kind)
        rows["sample_id"].append(sample_id)

    for i, scene in enumerate(scenes):
        image = render_scene(scene, size, rng)
        for k, (question, answer, kind) in enumerate(questions(scene, rng)):
            add(image, question, answer, kind, f"{seed}-{i}-{k}")
        if captions:
            add(image, DESCRIBE, caption(scene), "open", f"{seed}-{i}-caption")
    features = datasets.Features(
        {
            "image": datasets.Image(),  # PNG: decoding one is 50x faster than listing an Array3D row
            "messages": [{"role": datasets.Value("string"), "content": datasets.Value("string")}],
            "answer_type": datasets.Value("string"),
            "sample_id": datasets.Value("string"),
        }
    )
    return datasets.Dataset.from_dict(rows, features=features)


def synthetic_vqa(
    train_images: int, held_out_images: int, seed: int, size: int = IMAGE_SIZE
) -> datasets.DatasetDict:
    """Train (four questions and a caption per image), valid and test (four questions per image) splits: held-out
    images show scenes never rendered for training (a scene's images differ by jitter only, so a memorised
    scene would inflate held-out scores)."""
    scenes = every_scene()
    order = np.random.default_rng(seed).permutation(len(scenes))
    held = max(2, len(scenes) // 10)  # scenes per held-out split
    valid, test = [scenes[i] for i in order[:held]], [scenes[i] for i in order[held : 2 * held]]
    train = [scenes[i] for i in order[2 * held :]]
    pick = np.random.default_rng(seed + 3)
    return datasets.DatasetDict(
        {
            "train": vqa_split(
                [train[i] for i in pick.integers(0, len(train), train_images)], size, seed, captions=True
            ),
            "valid": vqa_split([valid[i % held] for i in range(held_out_images)], size, seed + 1),
            "test": vqa_split([test[i % held] for i in range(held_out_images)], size, seed + 2),
        }
    )


@register_dataset("synthetic_vqa")
def synthetic_vqa_source(cfg: DatasetConfig) -> DatasetSource:
    """Embedded VQA over rendered shapes: ``num_images`` training images and ``held_out_images`` valid and
    test images each, four questions per image (two closed, two open)."""
    return DatasetSource(synthetic_vqa(cfg.num_images, cfg.held_out_images, cfg.sampling_seed))
