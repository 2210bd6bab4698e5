"""Deterministic music-like signals for the demo catalogue and the tests (numpy only).

A seed picks a style (tempo, key, mode, timbre, drums or not, pad or plucked chords); the same
seed always gives the same samples, so the demo catalogue and its tags are reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["synth_music"]

_TABLE_SIZE = 4096  # wavetable length (power of two so phase wrap is a bit mask)
_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
# Scale-degree progressions (0-based); the chord is a triad stacked on the degree.
_PROGRESSIONS = ((0, 4, 5, 3), (0, 5, 3, 4), (5, 3, 0, 4), (0, 3, 0, 4), (1, 4, 0, 0), (0, 6, 5, 4))


@dataclass(frozen=True)
class _Style:
    tempo_bpm: float
    root_midi: int
    scale: tuple[int, ...]
    progression: tuple[int, ...]
    brightness: float  # harmonic roll-off exponent: ~0.8 bright/buzzy, ~2.5 soft
    drums: bool
    pad: bool  # sustained slow-attack chords (ambient) instead of plucked ones
    drive: float  # tanh saturation amount, 0 = clean
    melody_density: float  # probability that an eighth-note slot holds a melody note


def synth_music(seed: int, duration_s: float, sample_rate: int, channels: int) -> np.ndarray:
    """Music-like audio: (channels, n) float32 in [-1, 1], n = round(duration_s * sample_rate).

    Chords + bass + melody + (optionally) drums, each voice panned differently so channels differ.
    """
    rng = np.random.default_rng(seed)
    style = _pick_style(rng)
    n = int(round(duration_s * sample_rate))
    voices = _render_voices(rng, style, n, sample_rate)  # (voices, n) float32
    gains = _channel_gains(rng, voices.shape[0], channels)  # (channels, voices)
    mix = gains @ voices
    if style.drive > 0:
        mix = np.tanh(mix * (1.0 + style.drive)) / np.tanh(1.0 + style.drive)
    peak = float(np.max(np.abs(mix))) if mix.size else 0.0
    if peak > 0:
        mix *= 0.89 / peak
    return mix.astype(np.float32, copy=False)


def _pick_style(rng: np.random.Generator) -> _Style:
    pad = bool(rng.random() < 0.3)
    return _Style(
        tempo_bpm=float(rng.uniform(64, 96) if pad else rng.uniform(84, 172)),
        root_midi=int(rng.integers(45, 57)),
        scale=_MINOR if rng.random() < 0.5 else _MAJOR,
        progression=_PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))],
        brightness=float(rng.uniform(1.8, 2.8) if pad else rng.uniform(0.7, 2.2)),
        drums=bool(not pad and rng.random() < 0.85),
        pad=pad,
        drive=float(0.0 if pad else rng.choice([0.0, 0.0, 1.5, 4.0])),
        melody_density=float(rng.uniform(0.15, 0.35) if pad else rng.uniform(0.4, 0.85)),
    )


def _render_voices(rng: np.random.Generator, style: _Style, n: int, sr: int) -> np.ndarray:
    """(5, n) float32: chords, bass, melody, kick+snare, hi-hat."""
    voices = np.zeros((5, n), dtype=np.float32)
    beat = int(round(60.0 / style.tempo_bpm * sr))
    bar = 4 * beat
    chord_table = _wavetable(rng, style.brightness)
    bass_table = _wavetable(rng, style.brightness + 0.7)
    lead_table = _wavetable(rng, max(0.6, style.brightness - 0.4))
    chord_attack, chord_decay = (0.4, 4.0) if style.pad else (0.005, 0.6)
    for bar_index, start in enumerate(range(0, n, bar)):
        degree = style.progression[bar_index % len(style.progression)]
        triad = [_degree_midi(style, degree + k) for k in (0, 2, 4)]
        for midi in triad:
            _add_note(voices[0], chord_table, start, bar, midi, 0.22, chord_attack, chord_decay, sr)
        bass_midi = _degree_midi(style, degree) - 12
        for b in range(4):
            _add_note(voices[1], bass_table, start + b * beat, beat, bass_midi, 0.45, 0.004, 0.25, sr)
        for slot in range(8):
            if rng.random() < style.melody_density:
                midi = _degree_midi(style, degree + int(rng.integers(0, 8))) + 12
                _add_note(voices[2], lead_table, start + slot * beat // 2, beat // 2, midi, 0.25, 0.01, 0.2, sr)
    if style.drums:
        _add_drums(rng, voices[3], voices[4], beat, sr)
    return voices


def _degree_midi(style: _Style, degree: int) -> int:
    octave, step = divmod(degree, len(style.scale))
    return style.root_midi + 12 * octave + style.scale[step]


def _wavetable(rng: np.random.Generator, rolloff: float) -> np.ndarray:
    """One period of a harmonic tone: harmonic k has amplitude k**-rolloff and a seeded phase."""
    phase = np.arange(_TABLE_SIZE) / _TABLE_SIZE
    table = np.zeros(_TABLE_SIZE)
    for k in range(1, 13):
        table += k**-rolloff * np.sin(2 * np.pi * (k * phase + rng.random()))
    return (table / np.max(np.abs(table))).astype(np.float32)


def _add_note(
    out: np.ndarray, table: np.ndarray, start: int, length: int, midi: float,
    amp: float, attack_s: float, decay_s: float, sr: int,
) -> None:
    """Add one enveloped wavetable note into out[start:start+length] in place."""
    stop = min(start + length, out.shape[0])
    if stop <= start:
        return
    t = np.arange(stop - start, dtype=np.float64) / sr
    freq = 440.0 * 2.0 ** ((midi - 69) / 12.0)
    index = (t * (freq * _TABLE_SIZE)).astype(np.int64) & (_TABLE_SIZE - 1)
    envelope = np.minimum(1.0, t / attack_s) * np.exp(-t / decay_s)
    # Short release so notes do not click at their boundary.
    release = min(stop - start, int(0.01 * sr))
    if release > 0:
        envelope[-release:] *= np.linspace(1.0, 0.0, release)
    out[start:stop] += (amp * envelope * table[index]).astype(np.float32)


def _add_drums(rng: np.random.Generator, body: np.ndarray, hats: np.ndarray, beat: int, sr: int) -> None:
    """Kick on beats 1 and 3, snare on 2 and 4, hi-hat on eighths, into body/hats in place."""
    kick = _kick(sr)
    snare = _noise_burst(rng, sr, 0.18, smooth=3, decay_s=0.05, amp=0.5)
    hat = _noise_burst(rng, sr, 0.05, smooth=None, decay_s=0.012, amp=0.25)
    n = body.shape[0]
    for b, onset in enumerate(range(0, n, beat)):
        _add_at(body, kick if b % 2 == 0 else snare, onset)
        _add_at(hats, hat, onset)
        _add_at(hats, hat * 0.6, onset + beat // 2)


def _kick(sr: int) -> np.ndarray:
    """Decaying sine sweep 150 -> 45 Hz over ~0.35 s."""
    t = np.arange(int(0.35 * sr)) / sr
    freq = 45.0 + 105.0 * np.exp(-t / 0.04)
    phase = 2 * np.pi * np.cumsum(freq) / sr
    return (0.9 * np.sin(phase) * np.exp(-t / 0.12)).astype(np.float32)


def _noise_burst(
    rng: np.random.Generator, sr: int, length_s: float, smooth: int | None, decay_s: float, amp: float,
) -> np.ndarray:
    """Exponentially decaying noise: moving-average smoothed (snare) or first-differenced (hi-hat)."""
    noise = rng.standard_normal(int(length_s * sr))
    if smooth is None:
        noise = np.diff(noise, prepend=0.0)  # first difference tilts the spectrum up: hi-hat sizzle
    else:
        # A short moving average takes the fizz off so the snare keeps some body.
        noise = np.convolve(noise, np.ones(smooth) / smooth, mode="same")
    t = np.arange(noise.shape[0]) / sr
    burst = noise * np.exp(-t / decay_s)
    return (amp * burst / np.max(np.abs(burst))).astype(np.float32)


def _add_at(out: np.ndarray, sound: np.ndarray, onset: int) -> None:
    stop = min(onset + sound.shape[0], out.shape[0])
    if stop > onset:
        out[onset:stop] += sound[: stop - onset]


def _channel_gains(rng: np.random.Generator, n_voices: int, channels: int) -> np.ndarray:
    """(channels, n_voices) mixing gains: equal-power pan per voice for stereo, seeded spread otherwise."""
    if channels == 1:
        return np.ones((1, n_voices), dtype=np.float32)
    pan = rng.uniform(-0.7, 0.7, n_voices)  # -1 hard left .. +1 hard right
    angle = (pan + 1) * np.pi / 4
    if channels == 2:
        return np.stack([np.cos(angle), np.sin(angle)]).astype(np.float32)
    # Surround-ish: each voice peaks on one or two channels, with a floor everywhere.
    centre = rng.uniform(0, channels, n_voices)
    distance = np.abs(np.arange(channels)[:, None] - centre[None, :])
    return (0.25 + np.exp(-(distance**2))).astype(np.float32)
