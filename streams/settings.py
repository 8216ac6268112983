"""The one settings object of the service and the CLI, built once at start-up.

Precedence, lowest to highest: defaults, a TOML file (`--config` or
`CLVSTREAM_CONFIG_FILE`), `CLVSTREAM_*` environment variables (nested with `__`,
e.g. `CLVSTREAM_SCORING__CHURN_WINDOW_DAYS=60`), command-line options. Nested
values merge across sources. Nothing is read at import time.

>>> s = load_settings()
>>> s.scoring.churn_window_days, s.topic_prefix
(90, 'clv.')
>>> load_settings(scoring={"churn_window_days": 30}).scoring.churn_window_days
30
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from models.config import ScoringConfig
from models.errors import ConfigError


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CLVSTREAM_", env_nested_delimiter="__", frozen=True, extra="forbid"
    )

    scoring: ScoringConfig = ScoringConfig()
    kafka_url: str | None = None
    redis_url: SecretStr | None = None
    topic_prefix: str = "clv."

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Build the settings once: TOML file < environment < explicit overrides."""
    config_file = config_file or os.environ.get("CLVSTREAM_CONFIG_FILE")
    settings_class = Settings
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")

        class FileSettings(Settings):
            model_config = SettingsConfigDict(toml_file=path)

        settings_class = FileSettings
    try:
        return settings_class(**overrides)
    except ValidationError as error:
        raise ConfigError(f"invalid settings: {error}") from error
