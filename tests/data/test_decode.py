"""Decode: formats, downmix, resampling, crop/pad, and every reason a file is rejected."""

import io
import struct

import numpy as np
import pytest
import soundfile as sf

from sonar_ray.data.decode import SAMPLE_RATE, BadAudio, decode, fit_length, scan


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


def flac_claiming_49_days() -> bytes:
    """A real 1 s FLAC whose STREAMINFO says 2^36-1 samples (49.7 days at 16 kHz, 256 GiB as float32)."""
    data = bytearray(encode(sine(440, 16_000, 1.0), 16_000, "FLAC"))
    word = int.from_bytes(data[18:26], "big") | (2 ** 36 - 1)  # rate(20) ch(3) bps(5) total samples(36)
    data[18:26] = word.to_bytes(8, "big")
    return bytes(data)


def wav_at_1_hz() -> bytes:
    data = bytearray(encode(sine(440, 16_000, 1.0), 16_000))
    data[24:32] = struct.pack("<II", 1, 2)  # fmt chunk: sample rate, byte rate
    return bytes(data)


def streaming_wav(x) -> bytes:
    """A WAV as a streaming writer leaves it: RIFF and data sizes 0xFFFFFFFF (length unknown)."""
    data = bytearray(encode(x, 16_000))
    data[4:8] = struct.pack("<I", 0xFFFFFFFF)
    pos = data.find(b"data")
    data[pos + 4:pos + 8] = struct.pack("<I", 0xFFFFFFFF)
    return bytes(data)


def bad_inputs():
    good = encode(sine(440, 16_000, 1.0), 16_000)
    nan = sine(440, 16_000, 1.0)
    nan[100] = np.nan
    return {
        "bad_rate": wav_at_1_hz(),
        "too_long": flac_claiming_49_days(),
        "too_loud": encode(sine(440, 16_000, 1.0, amp=1e30), 16_000, "WAV", "FLOAT"),
        "empty": b"",
        "not_audio": b"just some text, not a RIFF header\n" * 20,
        "truncated": good[: len(good) // 2],
        "nan_inf": encode(nan, 16_000, "WAV", "FLOAT"),
        "silent": encode(np.zeros(16_000, np.float32), 16_000),
        "too_short": encode(sine(440, 16_000, 0.05), 16_000),
    }


@pytest.mark.parametrize("reason", list(bad_inputs()))
@pytest.mark.parametrize("read", [decode, scan])
def test_bad_inputs_raise_their_reason(reason, read):
    with pytest.raises(BadAudio) as e:
        read(bad_inputs()[reason], min_seconds=0.1, max_seconds=3600.0)
    assert e.value.reason == reason


def test_streaming_wav_with_unknown_size_is_accepted():
    x = sine(440, 16_000, 1.0)
    for read in (decode, scan):
        d = read(streaming_wav(x), keep_seconds=1.0) if read is scan else read(streaming_wav(x))
        assert abs(d.duration - 1.0) < 1e-3 and np.allclose(d.wave, x, atol=1e-4)


class CountingFile(io.BytesIO):
    """A seekable file that counts the bytes read from it."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.bytes_read = 0

    def read(self, n=-1):
        out = super().read(n)
        self.bytes_read += len(out)
        return out


def test_a_crop_reads_only_its_frames_and_a_scan_keeps_only_the_head():
    data = encode(np.random.default_rng(0).uniform(-0.5, 0.5, (60 * 16_000, 2)).astype(np.float32), 16_000)
    f = CountingFile(data)
    d = decode(f, start=30.0, seconds=1.0)
    assert len(d.wave) == SAMPLE_RATE and d.duration == 60.0
    assert f.bytes_read < len(data) / 20  # one second of sixty, plus headers
    head = scan(CountingFile(data), keep_seconds=2.0)
    assert len(head.wave) == 2 * SAMPLE_RATE and head.duration == 60.0


def test_truncated_flac_is_reported_as_truncated():
    data = encode(np.random.default_rng(0).standard_normal(32_000).astype(np.float32) * 0.1, 16_000, "FLAC")
    with pytest.raises(BadAudio) as e:
        decode(data[: len(data) * 2 // 3])
    assert e.value.reason == "truncated"
