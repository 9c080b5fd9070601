"""eSpeak NG (https://github.com/espeak-ng/espeak-ng): formant synthesis, ~100 languages, tiny.

The library and its data come from the ``espeakng-loader`` wheel and are driven through
:mod:`ctypes` (the ``speak_lib.h`` API); no ``espeak-ng`` program is needed. Install with
``pip install 'worker-queue[espeak]'``. Voice names are eSpeak language codes: ``espeak.en-us``,
``espeak.fr-fr``, ``espeak.de``.

libespeak-ng keeps process-wide state and is not thread-safe, so every call holds one lock.
Its wave generator also carries state from one utterance to the next: within one process, the
same text can come out a few samples longer or shorter the second time. A fresh process gives
the same bytes every time.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import threading
from pathlib import Path

import espeakng_loader
import numpy as np

from tts.engines.base import check_speed
from tts.errors import EngineUnavailable, UnknownVoice
from tts.waveform import Audio

# speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2  # the callback runs inside espeak_Synth, on the calling thread
_INITIALIZE_DONT_EXIT = 0x8000  # report errors instead of calling exit()
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_RATE = 1  # espeakRATE, words per minute
_DEFAULT_RATE, _MIN_RATE, _MAX_RATE = 175, 80, 450
_EE_OK = 0

_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class _Voice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),  # (priority byte, NUL-terminated code)*, then a 0 byte
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


class _Library:
    """The one libespeak-ng of this process; use it only while holding :data:`_LOCK`."""

    def __init__(self) -> None:
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]  # fmt: skip
        home = str(Path(espeakng_loader.get_data_path()).parent).encode()
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, home, _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise EngineUnavailable(f"libespeak-ng failed to initialize with data in {home!r}")
        self.lib = lib
        self.sample_rate = rate
        self.chunks: list[np.ndarray] = []
        self._callback = _SynthCallback(self._receive)  # kept alive as long as the library
        lib.espeak_SetSynthCallback(self._callback)

    def _receive(self, wav: ctypes._Pointer[ctypes.c_short], count: int, events: int) -> int:
        if wav and count > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0  # 0: go on

    def voices(self) -> dict[str, bytes]:
        """Language code -> voice identifier, for the voices whose dictionary is installed."""
        data = Path(espeakng_loader.get_data_path())
        found: dict[str, bytes] = {}
        table = self.lib.espeak_ListVoices(None)
        i = 0
        while table[i]:
            voice = table[i].contents
            i += 1
            address = voice.languages
            if not address or not ctypes.c_ubyte.from_address(address).value:
                continue
            code = ctypes.string_at(address + 1).decode("ascii", "replace")
            identifier = voice.identifier or b""
            if (
                code not in found
                and (data / f"{_dictionary(data, identifier, code)}_dict").is_file()
            ):
                found[code] = identifier
        return found

    def speak(self, text: str, identifier: bytes, rate: int) -> np.ndarray:
        if self.lib.espeak_SetVoiceByName(identifier) != _EE_OK:
            raise RuntimeError(f"espeak-ng could not load voice {identifier!r}")
        self.lib.espeak_SetParameter(_RATE, rate, 0)
        data = text.encode("utf-8")
        buffer = ctypes.create_string_buffer(data)
        self.chunks = []
        status = self.lib.espeak_Synth(
            buffer, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, None, None
        )
        self.lib.espeak_Synchronize()
        if status != _EE_OK:
            raise RuntimeError(f"espeak_Synth failed with status {status}")
        chunks, self.chunks = self.chunks, []
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


def _dictionary(data: Path, identifier: bytes, code: str) -> str:
    """The dictionary a voice reads: its file's ``dictionary`` line, else its language."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        for line in (data / "lang" / identifier.decode()).read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "dictionary" and value.strip():
                return value.strip()
    return code.partition("-")[0]


_LOCK = threading.Lock()


@functools.cache
def _shared_library() -> _Library:
    """The library, initialized on first use (a failure is not cached). Call with _LOCK held."""
    return _Library()


class EspeakEngine:
    """eSpeak NG voices by language code."""

    def __init__(self) -> None:
        self._voices: dict[str, bytes] | None = None

    @property
    def name(self) -> str:
        return "espeak"

    def load(self) -> None:
        with _LOCK:
            if self._voices is None:
                self._voices = _shared_library().voices()

    def voices(self) -> list[str]:
        self.load()
        assert self._voices is not None
        return sorted(self._voices)

    def synthesize(self, text: str, voice: str, speed: float) -> Audio:
        low, high = _MIN_RATE / _DEFAULT_RATE, _MAX_RATE / _DEFAULT_RATE
        check_speed(self.name, speed, round(low, 2), round(high, 2))
        names = self.voices()
        if voice not in names:
            raise UnknownVoice(f"espeak.{voice}", [f"espeak.{v}" for v in names])
        assert self._voices is not None
        rate = min(_MAX_RATE, max(_MIN_RATE, round(_DEFAULT_RATE * speed)))
        with _LOCK:
            library = _shared_library()
            pcm = library.speak(text, self._voices[voice], rate)
            sample_rate = library.sample_rate
        return Audio((pcm.astype(np.float32) / 32768.0).astype(np.float32), sample_rate)
