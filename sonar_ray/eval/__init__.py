"""Evaluation: frozen embeddings -> linear probes -> adaptability / forgetting, HEAR API, reports.

Modules: embeddings (pooling, local + Ray Data paths), cache (by checkpoint content), tasks (probe
manifest), probes (the protocol), metrics (accuracy matrix, forgetting, backward transfer), suite
(evaluate_models, compare), report (tables, plots), hear (HEAR 2021 API).
"""

from sonar_ray.eval.suite import compare, evaluate_models

__all__ = ["compare", "evaluate_models"]
