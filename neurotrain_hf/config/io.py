"""Read and write experiment files as TOML, YAML or JSON (one nested mapping of sections)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import tomllib

from ..errors import ConfigError

FORMATS = ("toml", "yaml", "json")


def format_of(path: str | Path) -> str:
    suffix = Path(path).suffix.lower().lstrip(".")
    fmt = {"yml": "yaml"}.get(suffix, suffix)
    if fmt not in FORMATS:
        raise ConfigError(
            f"{path}: unsupported config format {suffix!r}; expected .toml, .yaml/.yml or .json"
        )
    return fmt


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a config file into a dict of sections; one-line errors for missing or malformed files."""
    path = Path(path)
    fmt = format_of(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        if fmt == "toml":
            data = tomllib.loads(text)
        elif fmt == "yaml":
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: invalid {fmt.upper()}: {exc}") from None
    except Exception as exc:  # yaml.YAMLError and friends
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{path}: invalid {fmt.upper()}: {first}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    for section, values in data.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: [{section}] must be a table of keys, got {type(values).__name__}")
    return data


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_drop_none(v) for v in value]
    if isinstance(value, float) and math.isinf(value):
        return str(value)
    return value


def dumps_config(data: dict[str, Any], fmt: str) -> str:
    """Serialise sections in ``fmt``; None values are omitted (TOML has no null, defaults restore them)."""
    clean = _drop_none(data)
    if fmt == "toml":
        import tomli_w

        return tomli_w.dumps(clean)
    if fmt == "yaml":
        import yaml

        return yaml.safe_dump(clean, sort_keys=False)
    if fmt == "json":
        return json.dumps(clean, indent=2) + "\n"
    raise ConfigError(f"unsupported format {fmt!r}; expected one of {', '.join(FORMATS)}")


def write_config_file(data: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dumps_config(data, format_of(path)), encoding="utf-8")
    tmp.replace(path)
    return path
