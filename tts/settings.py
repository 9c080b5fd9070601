"""Settings of the speech and audio processors: one typed object, built once at the edge.

``TTSSettings(...)`` never reads the environment; ``TTSSettings.from_env()`` does:

========================  =========================  ===============================
variable                  field                      default
========================  =========================  ===============================
``QUEUE_DATA_DIR``        ``data_dir``               ``data`` (relative to the cwd)
``TTS_PIPER_VOICES_DIR``  ``piper_voices_dir``       none: only the bundled voice
``TTS_PIPER_NOISE_SCALE``    ``piper_noise_scale``    none: the voice's own
``TTS_PIPER_NOISE_W_SCALE``  ``piper_noise_w_scale``  none: the voice's own
``TTS_KOKORO_MODEL``      ``kokoro_model``           none: kokoro unavailable
``TTS_KOKORO_VOICES``     ``kokoro_voices``          none: kokoro unavailable
========================  =========================  ===============================

Outputs go to ``<data_dir>/outputs/<task id>/<item index>.<ext>``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from tts.engines.registry import EngineSettings

#: Every environment variable :meth:`TTSSettings.from_env` reads, by field.
VARIABLES = {
    "data_dir": "QUEUE_DATA_DIR",
    "piper_voices_dir": "TTS_PIPER_VOICES_DIR",
    "piper_noise_scale": "TTS_PIPER_NOISE_SCALE",
    "piper_noise_w_scale": "TTS_PIPER_NOISE_W_SCALE",
    "kokoro_model": "TTS_KOKORO_MODEL",
    "kokoro_voices": "TTS_KOKORO_VOICES",
}


def _env(field: str) -> AliasChoices:
    return AliasChoices(field, VARIABLES[field])


class TTSSettings(BaseSettings):
    """Where outputs go, and how to build each speech engine."""

    model_config = SettingsConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, case_sensitive=False
    )

    data_dir: Path = Field(Path("data"), validation_alias=_env("data_dir"))
    piper_voices_dir: Path | None = Field(None, validation_alias=_env("piper_voices_dir"))
    piper_noise_scale: float | None = Field(None, ge=0, validation_alias=_env("piper_noise_scale"))
    piper_noise_w_scale: float | None = Field(
        None, ge=0, validation_alias=_env("piper_noise_w_scale")
    )
    kokoro_model: Path | None = Field(None, validation_alias=_env("kokoro_model"))
    kokoro_voices: Path | None = Field(None, validation_alias=_env("kokoro_voices"))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Plain construction is pure: only the keyword arguments count.
        return (init_settings,)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TTSSettings:
        """Read the variables in :data:`VARIABLES` (from ``environ``, else the process's).

        An empty variable counts as unset.
        """
        if environ is None:
            environ = os.environ
        values = {
            field: environ[name]
            for field, name in VARIABLES.items()
            if environ.get(name, "").strip()
        }
        return cls.model_validate(values)

    @property
    def outputs_dir(self) -> Path:
        """``<data_dir>/outputs``: one directory per task below it."""
        return self.data_dir / "outputs"

    def engine_settings(self) -> EngineSettings:
        return EngineSettings(
            piper_voices_dir=self.piper_voices_dir,
            piper_noise_scale=self.piper_noise_scale,
            piper_noise_w_scale=self.piper_noise_w_scale,
            kokoro_model_path=self.kokoro_model,
            kokoro_voices_path=self.kokoro_voices,
        )
