"""A tiny General MIDI SoundFont (SF2 2.01) written from scratch, for fixture fonts: one looped
440 Hz sine, and one instrument per preset (program) with its own key range, velocity range and
attenuation, so a test can make a note quiet or truly silent."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

RATE, LENGTH = 44000, 22000  # 0.5 s of a 440 Hz sine: exactly 220 periods, so it loops cleanly
KEY_RANGE, VEL_RANGE, ATTENUATION, SAMPLE_ID, SAMPLE_MODES, INSTRUMENT = 43, 44, 48, 53, 54, 41


@dataclass
class Voice:
    keys: tuple[int, int] = (0, 127)
    velocities: tuple[int, int] = (0, 127)
    attenuation_cb: int = 0  # centibels


def _chunk(tag: bytes, data: bytes) -> bytes:
    data += b"\0" * (len(data) % 2)  # SF2 counts a string's pad byte in its size
    return tag + struct.pack("<I", len(data)) + data


def _list(kind: bytes, *chunks: bytes) -> bytes:
    return _chunk(b"LIST", kind + b"".join(chunks))


def soundfont(voices: list[Voice]) -> bytes:
    """An .sf2 whose preset (program) i, bank 0, plays voices[i]."""
    sine = [round(16000 * math.sin(2 * math.pi * 440 * t / RATE)) for t in range(LENGTH)]
    smpl = struct.pack(f"<{LENGTH + 46}h", *sine, *[0] * 46)  # 46 zero points after each sample
    n = len(voices)
    phdr = b"".join(struct.pack("<20sHHHIII", f"p{i}".encode(), i, 0, i, 0, 0, 0) for i in range(n))
    phdr += struct.pack("<20sHHHIII", b"EOP", 0, 0, n, 0, 0, 0)
    pbag = b"".join(struct.pack("<HH", i, 0) for i in range(n + 1))
    pgen = b"".join(struct.pack("<HH", INSTRUMENT, i) for i in range(n)) + struct.pack("<HH", 0, 0)
    inst = b"".join(struct.pack("<20sH", f"i{i}".encode(), i) for i in range(n)) + struct.pack("<20sH", b"EOI", n)
    ibag = b"".join(struct.pack("<HH", 5 * i, 0) for i in range(n + 1))
    igen = b"".join(struct.pack("<HBB", KEY_RANGE, *v.keys) + struct.pack("<HBB", VEL_RANGE, *v.velocities)
                    + struct.pack("<Hh", ATTENUATION, v.attenuation_cb) + struct.pack("<HH", SAMPLE_MODES, 1)
                    + struct.pack("<HH", SAMPLE_ID, 0) for v in voices) + struct.pack("<HH", 0, 0)
    shdr = struct.pack("<20sIIIIIBbHH", b"sine", 0, LENGTH, 0, LENGTH, RATE, 69, 0, 0, 1)
    shdr += struct.pack("<20sIIIIIBbHH", b"EOS", 0, 0, 0, 0, 0, 0, 0, 0, 0)
    terminal_mod = struct.pack("<HHhHH", 0, 0, 0, 0, 0)
    info = _list(b"INFO", _chunk(b"ifil", struct.pack("<HH", 2, 1)), _chunk(b"isng", b"EMU8000\0"),
                 _chunk(b"INAM", b"marl fixture\0"))
    pdta = _list(b"pdta", _chunk(b"phdr", phdr), _chunk(b"pbag", pbag), _chunk(b"pmod", terminal_mod),
                 _chunk(b"pgen", pgen), _chunk(b"inst", inst), _chunk(b"ibag", ibag),
                 _chunk(b"imod", terminal_mod), _chunk(b"igen", igen), _chunk(b"shdr", shdr))
    return _chunk(b"RIFF", b"sfbk" + info + _list(b"sdta", _chunk(b"smpl", smpl)) + pdta)
