"""Settings of the speech and audio processors: one typed object, built once at the edge.

``TTSSettings(...)`` never reads the environment; ``TTSSettings.from_env()`` does:

===========================  ========================  ==================================
variable                     field                     default
===========================  ========================  ==================================
``TTS_PIPER_VOICES_DIR``     ``piper_voices_dir``      none: only the bundled voice
``TTS_PIPER_NOISE_SCALE``    ``piper_noise_scale``     none: the voice's own
``TTS_PIPER_NOISE_W_SCALE``  ``piper_noise_w_scale``   none: the voice's own
``TTS_PIPER_THREADS``        ``piper_threads``         none: ``QUEUE_TASK_THREADS``
``TTS_KOKORO_MODEL``         ``kokoro_model``          none: kokoro unavailable
``TTS_KOKORO_VOICES``        ``kokoro_voices``         none: kokoro unavailable
``TTS_KOKORO_LANGUAGE``      ``kokoro_language``       none: by the voice's first letter
===========================  ========================  ==================================

Where outputs go is the queue's setting, not these: ``QueueConfig.data_dir``
(``QUEUE_DATA_DIR``), see :mod:`tts.outputs`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from tts.engines.registry import EngineSettings
from tts.errors import InvalidSettings

#: Every environment variable :meth:`TTSSettings.from_env` reads, by field.
VARIABLES = {
    "piper_voices_dir": "TTS_PIPER_VOICES_DIR",
    "piper_noise_scale": "TTS_PIPER_NOISE_SCALE",
    "piper_noise_w_scale": "TTS_PIPER_NOISE_W_SCALE",
    "piper_threads": "TTS_PIPER_THREADS",
    "kokoro_model": "TTS_KOKORO_MODEL",
    "kokoro_voices": "TTS_KOKORO_VOICES",
    "kokoro_language": "TTS_KOKORO_LANGUAGE",
}


def _env(field: str) -> AliasChoices:
    return AliasChoices(field, VARIABLES[field])


class TTSSettings(BaseSettings):
    """How to build each speech engine."""

    model_config = SettingsConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, case_sensitive=False
    )

    piper_voices_dir: Path | None = Field(None, validation_alias=_env("piper_voices_dir"))
    piper_noise_scale: float | None = Field(None, ge=0, validation_alias=_env("piper_noise_scale"))
    piper_noise_w_scale: float | None = Field(
        None, ge=0, validation_alias=_env("piper_noise_w_scale")
    )
    # Threads a piper voice computes on; 1 in each process of a worker pool.
    piper_threads: int | None = Field(None, ge=1, le=256, validation_alias=_env("piper_threads"))
    kokoro_model: Path | None = Field(None, validation_alias=_env("kokoro_model"))
    kokoro_voices: Path | None = Field(None, validation_alias=_env("kokoro_voices"))
    # The eSpeak language kokoro reads text in (en-us, fr-fr, ...); none: the voice's own.
    kokoro_language: str | None = Field(
        None, pattern=r"^[a-z]{2,3}(-[a-z0-9]+)*$", validation_alias=_env("kokoro_language")
    )

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

        :raises InvalidSettings: a variable's value is refused (one line per variable).
        """
        if environ is None:
            environ = os.environ
        values = {
            field: environ[name]
            for field, name in VARIABLES.items()
            if environ.get(name, "").strip()
        }
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            lines = [
                f"{VARIABLES.get(str(error['loc'][0]), str(error['loc'][0]))}="
                f"{values.get(str(error['loc'][0]), '')!r}: {error['msg']}"
                for error in exc.errors()
            ]
            raise InvalidSettings("invalid TTS settings: " + "\n".join(lines)) from None

    def engine_settings(self) -> EngineSettings:
        return EngineSettings(
            piper_voices_dir=self.piper_voices_dir,
            piper_noise_scale=self.piper_noise_scale,
            piper_noise_w_scale=self.piper_noise_w_scale,
            piper_threads=self.piper_threads,
            kokoro_model_path=self.kokoro_model,
            kokoro_voices_path=self.kokoro_voices,
            kokoro_language=self.kokoro_language,
        )
