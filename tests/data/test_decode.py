"""Decode: formats, downmix, resampling, crop/pad, and every reason a file is rejected."""

import io

import numpy as np
import pytest
import soundfile as sf

from sonar_ray.data.decode import SAMPLE_RATE, BadAudio, decode, fit_length


def encode(x, rate, fmt="WAV", subtype="PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def sine(freq, rate, seconds, amp=0.5):
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate)).astype(np.float32)


@pytest.mark.parametrize("fmt,subtype", [("WAV", "PCM_16"), ("FLAC", "PCM_24"), ("OGG", "VORBIS"),
                                         ("MP3", "MPEG_LAYER_III")])
def test_formats_resample_to_16k_and_keep_the_tone(fmt, subtype):
    d = decode(encode(sine(1000, 44_100, 1.0), 44_100, fmt, subtype))
    assert d.source_rate == 44_100 and abs(d.duration - 1.0) < 0.06
    assert abs(len(d.wave) - SAMPLE_RATE * d.duration) <= 2
    spectrum = np.abs(np.fft.rfft(d.wave))
    assert abs(np.argmax(spectrum) * SAMPLE_RATE / len(d.wave) - 1000) < 5


def test_band_limited_resampling_removes_content_above_8k():
    x = sine(1000, 44_100, 1.0) + sine(12_000, 44_100, 1.0)  # 12 kHz must not alias to 4 kHz
    d = decode(encode(x, 44_100, "WAV", "FLOAT"))
    spectrum = np.abs(np.fft.rfft(d.wave))
    freqs = np.fft.rfftfreq(len(d.wave), 1 / SAMPLE_RATE)
    assert spectrum[np.abs(freqs - 4000) < 50].max() < 1e-3 * spectrum.max()


def test_stereo_is_downmixed_and_segments_are_seekable():
    left, right = sine(440, 22_050, 2.0, 0.4), np.zeros(44_100, np.float32)
    d = decode(encode(np.stack([left, right], 1), 22_050), start=0.5, seconds=1.0)
    assert d.channels == 2 and len(d.wave) == SAMPLE_RATE
    assert abs(np.abs(d.wave).max() - 0.2) < 0.01


def test_fit_length_crops_and_pads():
    clip, n = fit_length(np.ones(10, np.float32), 16)
    assert n == 10 and clip[:10].sum() == 10 and clip[10:].sum() == 0
    clip, n = fit_length(np.ones(20, np.float32), 16)
    assert n == 16 and len(clip) == 16


def bad_inputs():
    good = encode(sine(440, 16_000, 1.0), 16_000)
    nan = sine(440, 16_000, 1.0)
    nan[100] = np.nan
    return {
        "empty": b"",
        "not_audio": b"just some text, not a RIFF header\n" * 20,
        "truncated": good[: len(good) // 2],
        "nan_inf": encode(nan, 16_000, "WAV", "FLOAT"),
        "silent": encode(np.zeros(16_000, np.float32), 16_000),
        "too_short": encode(sine(440, 16_000, 0.05), 16_000),
    }


@pytest.mark.parametrize("reason", list(bad_inputs()))
def test_bad_inputs_raise_their_reason(reason):
    with pytest.raises(BadAudio) as e:
        decode(bad_inputs()[reason], min_seconds=0.1)
    assert e.value.reason == reason


def test_truncated_flac_is_reported_as_truncated():
    data = encode(np.random.default_rng(0).standard_normal(32_000).astype(np.float32) * 0.1, 16_000, "FLAC")
    with pytest.raises(BadAudio) as e:
        decode(data[: len(data) * 2 // 3])
    assert e.value.reason == "truncated"
