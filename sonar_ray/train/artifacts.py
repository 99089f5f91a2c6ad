"""The files a training run reads and writes, beside the official BEATs `model.pt`.

- `tokenizer.pt`: the label source. Either an official BEATs tokenizer checkpoint or, before any
  tokenizer was trained (BEATs iteration 1), a frozen random-projection tokenizer; both are
  `{'cfg', 'model'}` dicts and are told apart by their cfg; both are a `LabelTokenizer`.
- `predictor.pt`: the label predictor of the masked-prediction objective. Official checkpoints
  carry none, so adapting an official model starts a fresh one.
- `trainer_state.pt`: optimizer, scheduler, step, codebook usage, RNG — never mixed into model files.
"""

from __future__ import annotations

import io

import torch
from sonar_ray import storage
from sonar_ray.models import tokenizer as official_tokenizer
from sonar_ray.models.tokenizer import LabelTokenizer
from sonar_ray.objectives.predictor import LabelPredictor
from sonar_ray.objectives.random_projection import RandomProjectionConfig, RandomProjectionTokenizer

MODEL, TOKENIZER, PREDICTOR, TRAINER_STATE = "model.pt", "tokenizer.pt", "predictor.pt", "trainer_state.pt"


def save_torch(obj: dict, uri: str) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    storage.write_bytes_atomic(uri, buf.getvalue())


def load_torch(uri: str) -> dict:
    try:
        return torch.load(io.BytesIO(storage.read_bytes(uri)), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # truncated / not a torch file
        raise ValueError(f"{uri}: not a readable checkpoint ({type(e).__name__}: {e})") from None


def is_random_projection(ck: dict) -> bool:
    return "num_codes" in ck.get("cfg", {}) and "quant_n" not in ck.get("cfg", {})


def load_label_tokenizer(uri: str) -> LabelTokenizer:
    """Official tokenizer or random-projection tokenizer, whichever the file holds."""
    ck = load_torch(uri)
    if is_random_projection(ck):
        return RandomProjectionTokenizer.from_checkpoint(ck)
    return official_tokenizer.load_checkpoint(uri)


def new_random_projection(num_codes: int, seed: int) -> RandomProjectionTokenizer:
    return RandomProjectionTokenizer(RandomProjectionConfig(num_codes=num_codes, seed=seed))


PREDICTOR_DEFAULTS = {"dim": 256, "layers": 2, "heads": 4}


def new_predictor(in_dim: int, num_codes: int) -> LabelPredictor:
    return LabelPredictor(in_dim=in_dim, num_codes=num_codes, **PREDICTOR_DEFAULTS)


def save_predictor(pred: LabelPredictor, uri: str) -> None:
    cfg = {"in_dim": pred.in_proj.in_features, "num_codes": pred.num_codes, "dim": pred.in_proj.out_features,
           "layers": len(pred.layers), "heads": pred.layers[0].self_attn.num_heads}
    save_torch({"cfg": cfg, "model": pred.state_dict()}, uri)


def load_predictor(uri: str) -> LabelPredictor:
    ck = load_torch(uri)
    pred = LabelPredictor(**ck["cfg"])
    pred.load_state_dict(ck["model"])
    return pred
