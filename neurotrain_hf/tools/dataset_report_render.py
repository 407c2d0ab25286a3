"""What ``neurotrain analyze dataset`` makes of its accumulators: the JSON statistics per column and
split, the markdown report and the PNG plots (intensity histograms, mask, box and text-length
distributions, matplotlib's Agg backend)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

LISTED = 30  # duplicate pairs and unreadable samples listed in the markdown (the JSON keeps more)
CHANNEL_NAMES = {
    1: ["grey"],
    2: ["grey", "alpha"],
    3: ["red", "green", "blue"],
    4: ["red", "green", "blue", "alpha"],
}


def slug(name: str) -> str:
    """A column name as a file-name part."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name)


def _stats(values: list) -> dict[str, float]:
    """Count, mean, median, min and max of a list (only the count when it is empty)."""
    if not values:
        return {"n": 0}
    a = np.asarray(values, np.float64)
    return {
        "n": len(a),
        "mean": float(a.mean()),
        "median": float(np.median(a)),
        "min": float(a.min()),
        "max": float(a.max()),
    }


def finish(kind: str, acc: dict) -> dict[str, Any]:
    """An accumulator -> its JSON statistics."""
    if kind == "image":
        channels = {}
        for c, (n, total, squares) in acc["sums"].items():
            mean = total / max(n, 1)
            channels[str(c)] = {
                "mean": mean.tolist(),
                "std": np.sqrt(np.maximum(squares / max(n, 1) - mean**2, 0)).tolist(),
            }
        return {
            "count": acc["count"],
            "volumes": acc["volumes"],
            "blank": acc["blank"],
            "shapes": dict(acc["shapes"].most_common(20)),
            "distinct_shapes": len(acc["shapes"]),
            "modes": dict(acc["modes"]),
            "dtypes": dict(acc["dtypes"]),
            "bits_used": {str(k): v for k, v in sorted(acc["bits"].items())},
            "value_range": acc["range"],
            "channels": channels,
        }
    if kind == "mask":
        return {
            "count": len(acc["fg"]),
            "empty": acc["empty"],
            "foreground_fraction": _stats(acc["fg"]),
            "components_per_image": _stats(acc["components"]),
            "component_size": _stats(acc["sizes"]),
            "values": dict(sorted(acc["values"].items(), key=lambda kv: float(kv[0]))),
        }
    if kind == "boxes":
        per = acc["per_image"]
        return {
            "images": len(per),
            "boxes": int(sum(per)),
            "images_without_boxes": sum(n == 0 for n in per),
            "boxes_per_image": _stats(per),
            "width": _stats(acc["w"]),
            "height": _stats(acc["h"]),
            "invalid": acc["invalid"],
        }
    roles = {
        r: {"words": _stats(t["words"]), "chars": _stats(t["chars"]), "empty": t["empty"]}
        for r, t in acc["texts"].items()
    }
    return {"per_sample": _stats(acc["per_sample"]), "by_role": roles}


def _fmt(stats: dict, digits: int = 1) -> str:
    """Statistics as one table cell."""
    if not stats.get("n"):
        return "-"
    spread = f"{stats['min']:.3g}-{stats['max']:.3g}"
    return f"{stats['mean']:.{digits}f} (median {stats['median']:.{digits}f}, {spread})"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    """A markdown table's lines."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(v) for v in row) + " |" for row in rows] + [""]


def _top(counter: dict, n: int = 4) -> str:
    """The most frequent entries of a count, for a table cell."""
    items = sorted(counter.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{k} ({v})" for k, v in items[:n]) + (
        f", +{len(items) - n} more" if len(items) > n else ""
    )


def _ref(s: dict) -> str:
    """A sample as split[index] `id`."""
    ref = f"{s['split']}[{s['index']}]" + (f" `{s['id']}`" if s.get("id") is not None else "")
    return ref + (f" (+{s['copies'] - 1} rows with this picture)" if s.get("copies", 1) > 1 else "")


def markdown(report: dict[str, Any], summary: str) -> str:
    """The human-readable report: one section per kind of column, duplicates and bad samples last."""
    splits = list(report["splits"])
    md = [f"# Dataset report: {report['dataset']} ({report['task']})", "", summary, ""]
    md += _table(
        ["split", "rows", "decoded"], [[s, report["splits"][s], report["scanned"][s]] for s in splits]
    )
    for col, info in report["classes"].items():
        names = info["names"] or sorted({k for c in info["counts"].values() for k in c}, key=str)
        md += [f"## Classes: `{col}`", ""]
        rows = [[n, *(info["counts"][s].get(n, 0) for s in splits)] for n in names]
        md += _table(["class", *splits], rows)
    for col, per in report["images"].items():
        md += [f"## Images: `{col}`", ""]
        head = [
            "split",
            "decoded",
            "shapes (H x W [x C]; volumes)",
            "modes",
            "dtypes",
            "bits used",
            "range",
            "blank",
        ]
        rows = [
            [
                s,
                i["count"],
                _top(i["shapes"]),
                _top(i["modes"]),
                _top(i["dtypes"]),
                _top(i["bits_used"]) or "-",
                i["value_range"],
                i["blank"],
            ]
            for s, i in per.items()
        ]
        md += _table(head, rows) + [f"![intensities](intensity_{slug(col)}.png)", ""]
    for col, per in report["masks"].items():
        md += [f"## Masks: `{col}` (foreground: value > 0; components: face-connected)", ""]
        head = [
            "split",
            "masks",
            "empty",
            "foreground fraction",
            "components / image",
            "component size (px)",
            "values (px)",
        ]
        rows = [
            [
                s,
                m["count"],
                m["empty"],
                _fmt(m["foreground_fraction"], 3),
                _fmt(m["components_per_image"]),
                _fmt(m["component_size"]),
                _top(m["values"]),
            ]
            for s, m in per.items()
        ]
        md += _table(head, rows) + [f"![masks](mask_{slug(col)}.png)", ""]
    for col, per in report["boxes"].items():
        md += [f"## Boxes: `{col}` (read as x0, y0, x1, y1)", ""]
        head = ["split", "images", "boxes", "without boxes", "boxes / image", "width", "height", "invalid"]
        rows = [
            [
                s,
                b["images"],
                b["boxes"],
                b["images_without_boxes"],
                _fmt(b["boxes_per_image"]),
                _fmt(b["width"]),
                _fmt(b["height"]),
                b["invalid"],
            ]
            for s, b in per.items()
        ]
        md += _table(head, rows) + [f"![boxes](boxes_{slug(col)}.png)", ""]
    for col, per in report["texts"].items():
        md += [f"## Texts: `{col}`", ""]
        rows = [
            [s, _fmt(t["per_sample"]), role, _fmt(r["words"]), _fmt(r["chars"]), r["empty"]]
            for s, t in per.items()
            for role, r in t["by_role"].items()
        ]
        md += _table(["split", "texts / sample", "role", "words", "characters", "empty"], rows) + [
            f"![texts](text_{slug(col)}.png)",
            "",
        ]
    dup = report["duplicates"]
    md += [
        "## Duplicates across splits",
        "",
        f"Pictures of `{dup['column']}`. Exact: {dup['exact_hash']}. Near: {dup['near_hash']}, Hamming "
        f"distance <= {dup['near_threshold']} of 64 bits; blank (constant) images are left out of near "
        "matching.",
        "",
    ]
    md += _table(
        ["splits", "exact pairs", "near pairs"],
        [[k, v["exact"], v["near"]] for k, v in dup["by_pair"].items()],
    )
    within = {k: v for k, v in dup["within_split"].items() if v}
    md += [f"Exact copies within a split (extra rows): {_top(within, 10) or 'none'}.", ""]
    for key, title in (("exact_pairs", "Exact"), ("near_pairs", "Near")):
        listed = dup[key][:LISTED]
        md += [
            f"- {title}: {_ref(p['a'])} = {_ref(p['b'])}"
            + (f" (distance {p['distance']})" if "distance" in p else "")
            for p in listed
        ]
        if len(dup[key]) > LISTED:
            md.append(f"- ... {len(dup[key]) - LISTED} more {title.lower()} pairs in dataset_report.json")
    md += ["", "## Unreadable samples", ""]
    bad = report["bad_samples"]
    md += [f"- {_ref(b)} `{b['column']}`: {b['error']}" for b in bad[:LISTED]] or [
        "none found while decoding"
    ]
    md += [f"- ... {len(bad) - LISTED} more in dataset_report.json"] if len(bad) > LISTED else []
    if report["loader_skipped"]:
        skipped = json.dumps(report["loader_skipped"], default=str)[:2000]
        md += ["", f"Skipped by the loader before analysis: `{skipped}`"]
    return "\n".join(md) + "\n"


def write_plots(out: Path, report: dict[str, Any], accs: dict[str, dict[str, dict]]) -> list[str]:
    """One PNG per reported column from the raw accumulators (split -> column -> values); returns names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=80)
        plt.close(fig)
        written.append(name)

    splits = list(report["splits"])
    for col in report["images"]:
        fig, axes = plt.subplots(len(splits), 1, figsize=(7, 2.2 * len(splits)), squeeze=False)
        for ax, split in zip(axes[:, 0], splits):
            for c, chunks in accs[split][col]["pixels"].items():
                values = np.concatenate(chunks) if chunks else np.zeros((0, c))
                lo, hi = (
                    (0, 255)
                    if values.size and values.min() >= 0 and values.max() <= 255 and values.max() > 1
                    else (None, None)
                )
                for k in range(c):
                    name = CHANNEL_NAMES.get(c, [f"channel {i}" for i in range(c)])[k]
                    ax.hist(
                        values[:, k],
                        bins=64,
                        range=(lo, hi) if lo is not None else None,
                        histtype="step",
                        label=name,
                        density=True,
                        color={"red": "r", "green": "g", "blue": "b", "grey": "k"}.get(name, "0.6"),
                    )
            ax.set_title(f"{split}: pixel values (sampled)", fontsize=9)
            ax.legend(fontsize=7) if ax.patches else ax.text(0.5, 0.5, "no images", ha="center")
        save(fig, f"intensity_{slug(col)}.png")
    for section, prefix, panels in (
        ("masks", "mask", (("fg", "foreground fraction"), ("components", "components per image"))),
        (
            "boxes",
            "boxes",
            (("per_image", "boxes per image"), ("w", "box width (px)"), ("h", "box height (px)")),
        ),
    ):
        for col in report[section]:
            fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3), squeeze=False)
            for ax, (key, title) in zip(axes[0], panels):
                for split in splits:
                    if accs[split][col][key]:
                        ax.hist(accs[split][col][key], bins=30, histtype="step", label=split)
                ax.set_title(title, fontsize=9)
                ax.legend(fontsize=7) if ax.patches else None
            save(fig, f"{prefix}_{slug(col)}.png")
    for col in report["texts"]:
        fig, ax = plt.subplots(figsize=(6, 3))
        for split in splits:
            for role, texts in accs[split][col]["texts"].items():
                ax.hist(texts["words"], bins=30, histtype="step", label=f"{split} ({role})")
        ax.set_title("words per text", fontsize=9)
        ax.legend(fontsize=7) if ax.patches else None
        save(fig, f"text_{slug(col)}.png")
    return written
