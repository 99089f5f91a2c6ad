"""Data layer: manifests, decode, inspection pass, strata + relevance, joint sampler, Ray Data stream.

Roles kept apart (lhotse's lesson): `manifest` says what exists, `inspect` what is usable,
`strata`/`sampler` what goes into each batch, `stream` does the I/O and features.
"""

from sonar_ray.data.config import POLICIES, DataConfig
from sonar_ray.data.decode import REASONS, SAMPLE_RATE, BadAudio, decode, fit_length
from sonar_ray.data.manifest import PROBE_MANIFEST, TRAIN_MANIFEST, load_source, read_manifest
from sonar_ray.data.prepare import PreparedData, prepare_data
from sonar_ray.data.report import bad_input_report, write_bad_input_report
from sonar_ray.data.sampler import BatchPlan, JointSampler
from sonar_ray.data.stream import build_train_dataset, iter_train_batches, make_sampler

__all__ = [
    "POLICIES", "DataConfig", "REASONS", "SAMPLE_RATE", "BadAudio", "decode", "fit_length", "PROBE_MANIFEST",
    "TRAIN_MANIFEST", "load_source", "read_manifest", "PreparedData", "prepare_data", "bad_input_report", "write_bad_input_report",
    "BatchPlan", "JointSampler", "build_train_dataset", "iter_train_batches", "make_sampler",
]
