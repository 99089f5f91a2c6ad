"""The inspection pass over real files, local and on S3: bad inputs skipped, counted and reported;
nothing good lost; the Parquet cache reused. Each hostile file used to end the whole pass (a header
claiming 49 days, a 1 Hz rate, a symlink loop) or to pass it and poison training (a +600 dB float WAV).

Tests that use Ray ask for `s3_server` first: Ray workers inherit the environment the cluster was
started with, so the AWS_* variables must be set before `ray_local` starts it.
"""

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from sonar_ray import storage
from sonar_ray.data import load_source, write_bad_input_report
from sonar_ray.data.inspect import inspect_files
from sonar_ray.data.pool import EmbedPool
from test_decode import flac_claiming_49_days, streaming_wav, wav_at_1_hz

BAD = {"corrupt.flac": "not_audio", "empty.wav": "empty", "nan.wav": "nan_inf", "truncated.wav": "truncated",
       "silent.flac": "silent", "notes.wav": "not_audio", "days.flac": "too_long", "rate1hz.wav": "bad_rate",
       "loud.wav": "too_loud", "phone.m4a": "unsupported_format"}
LINKS = {"loop.wav": "unreadable", "dangling.wav": "unreadable"}  # local folders only
EXTRA_GOOD = ("rate8k.wav", "stereo48k.flac", "streaming.wav", "voice.opus")


def wav(x, rate, subtype="PCM_16", fmt="WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


@pytest.fixture(scope="module")
def dirty_folder(tiny_corpus, tmp_path_factory) -> Path:
    """The tiny corpus's speech files plus every kind of bad file and two odd-but-good ones."""
    root = tmp_path_factory.mktemp("dirty") / "speech"
    shutil.copytree(Path(tiny_corpus) / "audio/speech/train", root)
    tone = (0.3 * np.sin(np.arange(16_000) / 3)).astype(np.float32)
    nan = tone.copy()
    nan[500] = np.inf
    (root / "corrupt.flac").write_bytes(np.random.default_rng(0).bytes(5000))
    (root / "empty.wav").write_bytes(b"")
    (root / "nan.wav").write_bytes(wav(nan, 16_000, "FLOAT"))
    (root / "truncated.wav").write_bytes(wav(tone, 16_000)[:12_000])
    (root / "silent.flac").write_bytes(wav(np.zeros(16_000, np.float32), 16_000, fmt="FLAC"))
    (root / "notes.wav").write_text("this is a text file with a .wav name\n")
    (root / "rate8k.wav").write_bytes(wav(tone[:8000], 8000))
    (root / "stereo48k.flac").write_bytes(wav(np.stack([tone, tone[::-1]], 1), 48_000, fmt="FLAC"))
    (root / "streaming.wav").write_bytes(streaming_wav(tone))
    (root / "voice.opus").write_bytes(wav(tone, 48_000, "OPUS", "OGG"))
    (root / "days.flac").write_bytes(flac_claiming_49_days())
    (root / "rate1hz.wav").write_bytes(wav_at_1_hz())
    (root / "loud.wav").write_bytes(wav(tone * 1e30, 16_000, "FLOAT"))
    (root / "phone.m4a").write_bytes(b"\x00\x00\x00\x18ftypM4A " + bytes(200))
    (root / "loop.wav").symlink_to("loop.wav")
    (root / "dangling.wav").symlink_to("gone.wav")
    return root


def check(found, root_uri: str, expected_bad: dict) -> None:
    bad = found[found["reason"] != ""]
    good = found[found["reason"] == ""]
    assert dict(zip(bad["uri"].str.rsplit("/", n=1).str[-1], bad["reason"])) == expected_bad
    names = set(good["uri"].str.rsplit("/", n=1).str[-1])
    assert len(good) == 6 + len(EXTRA_GOOD) and set(EXTRA_GOOD) <= names
    assert good["duration"].gt(0).all() and set(good.loc[good["uri"].str.endswith("stereo48k.flac"), "channels"]) == {2}
    assert all(u.startswith(root_uri) for u in found["uri"])


def test_local_folder_yields_exactly_the_good_clips_and_a_full_report(s3_server, ray_local, dirty_folder, tmp_path):
    df = load_source(str(dirty_folder), "speech")
    found = inspect_files(df, str(tmp_path / "cache"), clip_seconds=1.0, min_seconds=0.1, max_seconds=3600.0,
                          embed=True)
    check(found, str(dirty_folder), BAD | LINKS)
    good = found[found["reason"] == ""]
    assert np.isfinite(np.stack(good["embedding"])).all() and np.stack(good["embedding"]).shape[1] == 128
    report = write_bad_input_report(str(tmp_path / "out"), found[found["reason"] != ""])
    on_disk = json.loads((tmp_path / "out/bad_inputs.json").read_text())
    assert on_disk == report and report["total"] == len(BAD | LINKS)
    assert report["counts"] == {"bad_rate": 1, "empty": 1, "nan_inf": 1, "not_audio": 2, "silent": 1, "too_long": 1,
                                "too_loud": 1, "truncated": 1, "unreadable": 2, "unsupported_format": 1}
    assert {Path(f["path"]).name for f in report["files"]} == set(BAD | LINKS)

    cache = list((tmp_path / "cache").glob("inspect-*.parquet"))
    assert len(cache) == 1
    stamp = cache[0].stat().st_mtime_ns
    again = inspect_files(df, str(tmp_path / "cache"), clip_seconds=1.0, min_seconds=0.1, max_seconds=3600.0,
                          embed=True)
    assert cache[0].stat().st_mtime_ns == stamp  # reused, not recomputed
    pd.testing.assert_frame_equal(again.drop(columns="embedding"), found.drop(columns="embedding"))


def test_s3_prefix_yields_the_same(s3_bucket, ray_local, dirty_folder):
    fs, _ = storage.filesystem(s3_bucket)
    for p in dirty_folder.iterdir():
        if not p.is_symlink():
            fs.pipe_file(f"{s3_bucket[5:]}/data/speech/{p.name}", p.read_bytes())
    df = load_source(f"{s3_bucket}/data/speech", "speech")
    found = inspect_files(df, f"{s3_bucket}/data/.sonar_cache", clip_seconds=1.0, min_seconds=0.1, max_seconds=3600.0)
    check(found, f"{s3_bucket}/data/speech", BAD)
    assert storage.exists(f"{s3_bucket}/data/.sonar_cache") and "embedding" not in found


def test_the_pool_size_and_batch_size_change_nothing_but_the_speed(s3_server, ray_local, dirty_folder, tmp_path):
    df = load_source(str(dirty_folder), "speech")
    runs = [inspect_files(df, str(tmp_path / f"cache{i}"), clip_seconds=1.0, min_seconds=0.1, max_seconds=3600.0,
                          embed=True, pool=pool)
            for i, pool in enumerate([EmbedPool(actors=1, batch_size=3), EmbedPool(actors=2, batch_size=16)])]
    for found in runs:
        assert found["uri"].tolist() == df["uri"].tolist()  # the manifest's order
    pd.testing.assert_frame_equal(runs[0].drop(columns="embedding"), runs[1].drop(columns="embedding"))
    good = runs[0]["reason"] == ""
    np.testing.assert_array_equal(np.stack(runs[0]["embedding"][good]), np.stack(runs[1]["embedding"][good]))


def test_gpus_the_cluster_lacks_fail_at_once(s3_server, ray_local, dirty_folder, tmp_path):
    df = load_source(str(dirty_folder), "speech")
    with pytest.raises(ValueError, match="inspect: --embed-pool-actors 2 x --embed-pool-gpus-per-actor 1 needs 2 GPUs"):
        inspect_files(df, str(tmp_path / "cache"), clip_seconds=1.0, min_seconds=0.1, max_seconds=3600.0,
                      pool=EmbedPool(gpus_per_actor=1))
    assert not (tmp_path / "cache").exists()
