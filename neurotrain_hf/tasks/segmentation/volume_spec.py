"""``VolumeSpec``: what a volumetric (NIfTI) dataset source declares besides its rows.

Volume sources (BTCV, BraTS, MSD, the synthetic generator) return splits whose rows hold file paths,
``image`` (one path per channel, or one 4-D file), ``mask`` (the label map, or None), ``id`` and
``source``; the spec says how to read and check them: raw label values allowed, the mapping to
contiguous training labels, class names, evaluation regions and the imaging modality (which picks the
default intensity normalisation, as nnU-Net does).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import datasets

from ...data.registry import DatasetSource

VOLUME_FEATURES = datasets.Features(
    {
        "image": datasets.Sequence(datasets.Value("string")),
        "mask": datasets.Value("string"),
        "id": datasets.Value("string"),
        "source": datasets.Value("string"),
    }
)


@dataclass
class VolumeSpec:
    """Label set, names, regions and modality of a volumetric dataset."""

    label_names: list[str]  # training label i -> name; index 0 is the background
    modality: str = "CT"  # "CT" (Hounsfield units) or "MR": picks the default normalisation
    channel_names: list[str] = field(default_factory=lambda: ["image"])
    label_map: dict[int, int] = field(default_factory=dict)  # raw file value -> training label (else same)
    regions: dict[str, list[int]] | None = None  # evaluation regions (BraTS: ET/TC/WT) in training labels

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def raw_values(self) -> set[int]:
        """Values a label file may hold: the mapped raw values plus unmapped training labels."""
        mapped = set(self.label_map.values())
        return set(self.label_map) | {i for i in range(self.num_labels) if i not in mapped}

    def lookup(self) -> Sequence[int]:
        """A table ``t`` with ``t[raw] = training label`` for raw values up to the largest allowed one."""
        top = max(self.raw_values())
        table = list(range(top + 1))
        for raw, label in self.label_map.items():
            table[raw] = label
        return table


def volume_rows(rows: Sequence[dict]) -> datasets.Dataset:
    """Rows ``{"image": [paths], "mask": path | None, "id", "source"}`` as a ``datasets`` split, sorted by id."""
    rows = sorted(rows, key=lambda r: r["id"])
    columns = {k: [r[k] for r in rows] for k in VOLUME_FEATURES}
    return datasets.Dataset.from_dict(columns, features=VOLUME_FEATURES)


@dataclass
class VolumeSource(DatasetSource):
    """A volume source's splits (rows of file paths) and its ``VolumeSpec``."""

    volume: VolumeSpec | None = None
