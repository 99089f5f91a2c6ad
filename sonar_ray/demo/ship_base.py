"""Ship a demo base model: a jobs/pretrain.py output, copied into sonar_ray/demo/base/ with its card.

    python jobs/pretrain.py --output /tmp/base                 # the default recipe on the demo corpus
    python -m sonar_ray.demo.ship_base /tmp/base --wall-seconds 700

`make demo` then adapts this model instead of pre-training one (`sonar_ray.demo.inputs.shipped_base_model`
uses it only while the corpus version and the recipe match the card). The card, recipe.json, records the
corpus version, the recipe, the command, the wall time, each stage's health on the held-out prior clips,
and frozen-probe scores on the prior tasks against a random-init model of the same size.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from sonar_ray.train import artifacts



def measure(run: Path, corpus: str) -> dict:
    """Held-out health of every stage and prior-task probes (base vs random init) of a pretrain output."""
    import torch

    from sonar_ray.data import prepare_data
    from sonar_ray.eval.suite import evaluate_models, task_scores
    from sonar_ray.eval.tasks import load_tasks
    from sonar_ray.models import beats
    from sonar_ray.train.config import TrainConfig
    from sonar_ray.train.health import split_holdout
    from sonar_ray.train.inputs import data_config
    from sonar_ray.train.pretrain import PretrainConfig

    recipe = PretrainConfig()
    train = TrainConfig(domain="prior", method="scratch", data=corpus, prior=corpus, replay_ratio=0.0,
                        batch_size=recipe.batch_size, clip_seconds=recipe.clip_seconds, replay_policy="uniform")
    _, holdout = split_holdout(prepare_data(data_config(train, new_domain="prior")), recipe.clip_seconds)
    health = {"tokenizer": holdout.tokenizer_health(str(run / "tokenizer" / artifacts.TOKENIZER))}
    for stage in ("iter1", "iter2"):
        files = {k: str(run / stage / f"{k}.pt") for k in ("model", "tokenizer", "predictor")}
        health[stage] = holdout.measure(files, TrainConfig().mask_ratio)
    with tempfile.TemporaryDirectory() as d:
        torch.manual_seed(recipe.seed)
        random_init = str(Path(d) / "random.pt")
        beats.save_checkpoint(beats.BEATs(beats.BEATsConfig.preset(recipe.preset)), random_init)
        table = evaluate_models({"random_init": random_init, "base": str(run / artifacts.MODEL)},
                                load_tasks(corpus, ["prior"]), cache_dir=str(Path(d) / "cache"))
        probes = {name: task_scores(table, name)[0] for name in ("random_init", "base")}
    return {"health": health, "probes": probes}


def main(argv: list[str] | None = None) -> dict:
    from sonar_ray.demo import CORPUS_VERSION
    from sonar_ray.demo.inputs import SHIPPED_BASE, demo_base_recipe, demo_corpus
    from sonar_ray.train.pretrain import recipe_key

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="output folder of jobs/pretrain.py run with the default recipe")
    parser.add_argument("--wall-seconds", type=float, required=True, help="the pre-training's wall time")
    parser.add_argument("--machine", default="2 CPU cores, idle", help="where it ran")
    parser.add_argument("--command", default=None, help="the pretrain command as run (default: the plain one)")
    args = parser.parse_args(argv)
    corpus = demo_corpus()
    card = {"corpus_version": CORPUS_VERSION, "recipe": recipe_key(demo_base_recipe(corpus)),
            "command": args.command or f"python jobs/pretrain.py --output {args.run}",
            "wall_seconds": args.wall_seconds, "machine": args.machine, **measure(args.run, corpus)}
    SHIPPED_BASE.mkdir(parents=True, exist_ok=True)
    for name in (artifacts.MODEL, artifacts.TOKENIZER, artifacts.PREDICTOR):
        shutil.copyfile(args.run / name, SHIPPED_BASE / name)
    (SHIPPED_BASE / "recipe.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card, indent=2))
    return card


if __name__ == "__main__":
    main()
