"""DataConfig: where the new and prior audio come from and how batches are composed."""

from __future__ import annotations

from dataclasses import dataclass, field

from sonar_ray.config import check_choices
from sonar_ray.data.pool import EmbedPool
from sonar_ray.data.strata import MAX_FIT_ROWS

POLICIES = ("uniform", "relevance")


@dataclass
class DataConfig:
    new_uri: str = field(default="", metadata={"help": "new-domain source: manifest, corpus root, or audio folder/prefix"})
    new_domain: str | None = field(default=None, metadata={"help": "keep only this domain (or assign it to a folder)"})
    prior_uri: str = field(default="", metadata={"help": "prior (replay) source, same forms as new_uri"})
    prior_domain: str | None = field(default="prior", metadata={"help": "domain of the prior rows"})
    replay_ratio: float = field(default=0.5, metadata={"help": "prior share of every batch (exact per batch)"})
    batch_size: int = field(default=32, metadata={"help": "clips per training batch (global, before sharding)"})
    num_batches: int = field(default=1000, metadata={"help": "length of the stream, in batches"})
    clip_seconds: float = field(default=10.0, metadata={"help": "crop / pad every clip to this length (BEATs: 10 s)"})
    min_seconds: float = field(default=0.1, metadata={"help": "shorter files are skipped as too_short"})
    max_seconds: float = field(default=4 * 3600.0, metadata={
        "help": "files whose header claims more are skipped as too_long (bounds a decode before it starts)"})
    policy: str = field(default="relevance", metadata={"help": "prior sampling across strata", "choices": POLICIES})
    num_strata: int = field(default=8, metadata={"help": "k-means strata of the prior set (when no stratum column)"})
    temperature: float = field(default=0.5, metadata={"help": "temperature T of exp(relevance / T) (relevance: a cosine in [-1, 1])"})
    max_oversample: float = field(default=4.0, metadata={"help": "cap on how much more often a prior clip is replayed than under uniform replay (>= 1)"})
    min_oversample: float = field(default=0.25, metadata={"help": "floor on a prior clip's replay rate relative to uniform replay (<= 1)"})
    new_modes: int = field(default=4, metadata={"help": "k-means modes of the new domain; relevance is the max cosine over them"})
    strata_fit_rows: int = field(default=MAX_FIT_ROWS, metadata={
        "help": "k-means fits its centroids on at most this many clips (a seeded sample), then assigns every clip"})
    model_uri: str | None = field(default=None, metadata={"help": "starting BEATs checkpoint for embeddings (else fbank means)"})
    cache_uri: str | None = field(default=None, metadata={"help": "inspection cache folder (default: <source>/.sonar_cache)"})
    read_retries: int = field(default=3, metadata={"help": "retries of a failing read before a file is skipped"})
    embed_pool: EmbedPool = field(default_factory=EmbedPool, metadata={"help": "actor pool of the inspection pass"})
    seed: int = field(default=0, metadata={"help": "seeds permutations, strata and crops"})

    def __post_init__(self):
        check_choices(self)
        if not 0.0 <= self.replay_ratio <= 1.0:
            raise ValueError(f"replay_ratio must lie in [0, 1], got {self.replay_ratio}")
        if not 0.0 <= self.min_oversample <= 1.0 <= self.max_oversample:
            raise ValueError(f"need 0 <= min_oversample <= 1 <= max_oversample, got {self.min_oversample}, {self.max_oversample}")
        if self.temperature <= 0 or self.new_modes < 1:
            raise ValueError(f"temperature must be > 0 and new_modes >= 1, got {self.temperature}, {self.new_modes}")
        for name, low in {"batch_size": 1, "num_batches": 1, "num_strata": 1, "read_retries": 0, "strata_fit_rows": 1}.items():
            if not getattr(self, name) >= low:
                raise ValueError(f"{name} must be >= {low}, got {getattr(self, name)}")
        if not self.clip_seconds > 0:
            raise ValueError(f"clip_seconds must be > 0, got {self.clip_seconds}")
        if not 0 <= self.min_seconds < self.max_seconds:
            raise ValueError(f"need 0 <= min_seconds < max_seconds, got {self.min_seconds} and {self.max_seconds}")
