"""citydc.yaml: typed models, loading with every error at once, and the generated sample."""

from citydc.config.loader import ConfigError, ConfigInvalid, LoadedConfig, load, load_text
from citydc.config.models import Config

__all__ = ["Config", "ConfigError", "ConfigInvalid", "LoadedConfig", "load", "load_text"]
