"""Experiment configuration: sections, loading, validation and format conversion."""

from .experiment import (
    ExperimentConfig,
    build_config,
    get_config,
    get_config_value,
    load_config,
    parse_overrides,
    set_config,
)
from .io import dumps_config, read_config_file, write_config_file
from .sections import AugmentationConfig, BasicConfig, DatasetConfig, ModelConfig, TestingConfig

__all__ = [
    "AugmentationConfig",
    "BasicConfig",
    "DatasetConfig",
    "ExperimentConfig",
    "ModelConfig",
    "TestingConfig",
    "build_config",
    "dumps_config",
    "get_config",
    "get_config_value",
    "load_config",
    "parse_overrides",
    "read_config_file",
    "set_config",
    "write_config_file",
]
