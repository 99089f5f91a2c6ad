"""Once per run: load both sources, inspect every file (cached), split good from bad, and give the
prior clips strata and replay shares per the policy (with the diagnostics every run reports)."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sonar_ray import storage
from sonar_ray.data.config import DataConfig
from sonar_ray.data.inspect import inspect_files
from sonar_ray.data.manifest import MANIFEST_SUFFIXES, load_source
from sonar_ray.data.strata import finite_rows, kmeans, oversampling_shares, replay_diagnostics, stratum_relevance

CACHE_FOLDER = ".sonar_cache"


@dataclass
class PreparedData:
    new: pd.DataFrame      # good new-domain clips: uri, duration, ...
    prior: pd.DataFrame    # good prior clips: uri, duration, stratum (0..S-1), ...
    shares: np.ndarray     # (S,) replay share per stratum, sums to 1
    bad: pd.DataFrame      # skipped files: uri, reason

    @property
    def replay(self) -> dict:
        """Effective number of strata, largest per-clip oversampling factor, share per stratum ({}: no prior set)."""
        if self.prior.empty:
            return {}
        return replay_diagnostics(self.shares, np.bincount(self.prior["stratum"], minlength=len(self.shares)))


def cache_dir_for(source_uri: str) -> str:
    """Beside the data: the manifest's folder, or the audio folder itself."""
    uri = str(source_uri).rstrip("/")
    if uri.endswith(MANIFEST_SUFFIXES):
        uri = uri.rsplit("/", 1)[0] if storage.is_remote(uri) else posixpath.dirname(uri)
    return storage.join(uri, CACHE_FOLDER)


def _inspect(cfg: DataConfig, uri: str, domain: str | None, embed: bool) -> pd.DataFrame:
    cache_dir = cfg.cache_uri or cache_dir_for(uri)
    df = load_source(uri, domain, cache_dir=cache_dir)
    return inspect_files(df, cache_dir, clip_seconds=cfg.clip_seconds,
                         min_seconds=cfg.min_seconds, max_seconds=cfg.max_seconds, embed=embed, model_uri=cfg.model_uri,
                         pool=cfg.embed_pool)


def prepare_data(cfg: DataConfig) -> PreparedData:
    relevance = cfg.policy == "relevance"
    new = _inspect(cfg, cfg.new_uri, cfg.new_domain, embed=relevance)
    # No prior set: a run without replay (DCPT) given none.
    prior = _inspect(cfg, cfg.prior_uri, cfg.prior_domain, embed=relevance) if cfg.prior_uri else new.iloc[:0]
    if relevance:  # e.g. an absurdly loud float WAV: its embedding overflows, and one NaN spoils every centroid
        for df in (new, prior):
            df.loc[(df["reason"] == "") & ~finite_rows(np.stack(df["embedding"])), "reason"] = "non_finite_embedding"
    bad = pd.concat([new, prior])
    # Pre-training streams one source as both: each bad file is reported once.
    bad = bad[bad["reason"] != ""][["uri", "reason"]].drop_duplicates("uri").reset_index(drop=True)
    new = new[new["reason"] == ""].reset_index(drop=True)
    prior = prior[prior["reason"] == ""].reset_index(drop=True)
    if new.empty or (prior.empty and cfg.replay_ratio > 0):
        raise ValueError(f"no usable clips left (new: {len(new)}, prior: {len(prior)}); see the bad-input report")
    if not relevance:
        prior["stratum"] = 0
        return PreparedData(new, prior, np.ones(1) if len(prior) else np.zeros(0), bad)  # no prior: no stratum
    prior_emb, new_emb = np.stack(prior["embedding"]), np.stack(new["embedding"])
    if "stratum" in prior.columns:
        prior["stratum"] = pd.factorize(prior["stratum"], sort=True)[0]
    else:
        prior["stratum"] = kmeans(prior_emb, cfg.num_strata, cfg.seed, centre=prior_emb.mean(0),  # centred, as relevance
                                  max_fit_rows=cfg.strata_fit_rows)
    strata = prior["stratum"].to_numpy()
    relevance_s = stratum_relevance(prior_emb, strata, new_emb, cfg.new_modes, cfg.seed, max_fit_rows=cfg.strata_fit_rows)
    shares = oversampling_shares(np.bincount(strata), relevance_s, cfg.temperature, cfg.min_oversample,
                                 cfg.max_oversample)
    return PreparedData(new, prior, shares, bad)
