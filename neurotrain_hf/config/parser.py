"""``HfArgumentParser`` that understands our ``min``/``max`` field metadata (shown in ``--help``)."""

from __future__ import annotations

import copy
import dataclasses
import types

from transformers import HfArgumentParser

BOUND_KEYS = ("min", "max")


class NeuroArgumentParser(HfArgumentParser):
    """Strips the bound keys argparse does not know and appends them to the help text."""

    @staticmethod
    def _parse_dataclass_field(parser, field: dataclasses.Field):
        if any(k in field.metadata for k in BOUND_KEYS):
            meta = dict(field.metadata)
            low, high = meta.pop("min", None), meta.pop("max", None)
            bounds = ", ".join(
                s
                for s in (f">= {low}" if low is not None else "", f"<= {high}" if high is not None else "")
                if s
            )
            meta["help"] = f"{meta.get('help', '')} ({bounds})".strip()
            field = copy.copy(field)
            field.metadata = types.MappingProxyType(meta)
        HfArgumentParser._parse_dataclass_field(parser, field)
