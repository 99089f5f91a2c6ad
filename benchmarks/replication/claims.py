"""The replication's decision rules and their verdicts, computed from per-clip test outcomes.

Every effect is a paired difference on the same test clips (`sonar_ray.eval.metrics.paired_bootstrap`:
test clips and seeds resampled), and every claim is a statistic that is > 0 when the claim is true.
Its verdict is `holds` when the 95 % interval lies above 0, `fails` when it lies at or below 0 and
`undecided` when it straddles 0. Claims that presuppose an effect (SONAR keeping a share of DCPT's gain
needs DCPT to gain) are `not testable` when that effect's own interval is not above 0. The rules are
fixed here and stated on the results page before any result of the round that introduced them.
"""

from __future__ import annotations

import numpy as np

from sonar_ray.eval.metrics import paired_bootstrap, verdict

NON_INFERIORITY = 0.02  # SONAR "matches" scratch when SONAR - scratch > -0.02 (absolute probe accuracy)
COST_SHARE = 0.10        # ... with at most this share of scratch's samples seen

RULES = [
    "C1. SONAR's new-domain gain over the base: the interval of (SONAR − base) on the new domain's test "
    "clips lies above 0.",
    "C2. SONAR keeps ≥ 2/3 of DCPT's new-domain gain: (SONAR − base) − 2/3 (DCPT − base) > 0; testable when "
    "DCPT's own gain holds.",
    "C3. SONAR's forgetting is ≤ 1/3 of DCPT's, forgetting = reference − model on the prior tasks' test clips: "
    "1/3 F(DCPT) − F(SONAR) > 0, with the base as reference (C3a) and with the DCPT-on-prior control as "
    "reference (C3b, forgetting beyond what the same steps at the same LR cost on prior data); each testable "
    "when DCPT's own forgetting against that reference holds.",
    "C4. SONAR moves further from the base than replay-only: mean over layers of (1 − linear CKA to the base) "
    "on held-out new-domain clips, SONAR − replay-only > 0 (seeds resampled).",
    f"C5. SONAR matches retraining from scratch on the new domain (SONAR − scratch > −{NON_INFERIORITY}) with "
    f"≤ {COST_SHARE:.0%} of its samples seen; fails when SONAR − scratch ≤ −{NON_INFERIORITY} or the share "
    f"is larger.",
]


class Outcomes:
    """Per test clip outcomes of every evaluated model: `correct(run_id, task)` (1 = right)."""

    def __init__(self, per_task: list[dict]):
        self._by = {(r["model"], f"{r['domain']}/{r['task']}"): np.asarray(r["test_correct"], dtype=np.float64)
                    for r in per_task if r.get("test_correct") is not None}
        self.task_domain = {f"{r['domain']}/{r['task']}": r["domain"] for r in per_task}

    def per_clip(self, task: str) -> bool:
        """Whether the task has per-clip outcomes (single-label; multi-label mAP has none)."""
        return ("base", task) in self._by

    def tasks(self, domain: str) -> list[str]:
        """The domain's tasks with per-clip outcomes."""
        return sorted(t for t, d in self.task_domain.items() if d == domain and self.per_clip(t))

    def has(self, run_id: str) -> bool:
        return any(m == run_id for m, _ in self._by)

    def correct(self, run_id: str, task: str) -> np.ndarray:
        return self._by[(run_id, task)]


def _ids(method: str, domain: str, seeds: list[int]) -> list[str]:
    return [f"{method}/{domain}-s{s}" for s in seeds]


def seeds_of(out: Outcomes, method: str, domain: str, seeds: list[int]) -> list[int]:
    return [s for s in seeds if out.has(f"{method}/{domain}-s{s}")]


def effect(out: Outcomes, terms: dict[str, float], tasks: list[str], domain: str, seeds: list[int],
           draws: int) -> tuple[float, float, float]:
    """Interval of sum(coef * outcome) over {method or "base": coef}, paired per seed on the same clips."""
    def run(method: str, seed: int) -> str:
        return "base" if method == "base" else f"{method}/{domain}-s{seed}"

    per_clip = [[sum(c * out.correct(run(m, s), t) for m, c in terms.items()) for t in tasks] for s in seeds]
    return paired_bootstrap(per_clip, draws=draws)


def _fmt(iv: tuple[float, float, float]) -> str:
    return f"{iv[0]:+.3f} [{iv[1]:+.3f}, {iv[2]:+.3f}]"


def intervals(out: Outcomes, runs: dict, domain: str, methods: list[str], seeds: list[int], draws: int) -> dict:
    """Per method: gain vs base, forgetting vs base and vs the DCPT-on-prior control (95 % intervals), and
    the measures beyond probes (distance from the base, held-out masked-prediction information gain)."""
    new, prior = out.tasks(domain), out.tasks("prior")
    control = seeds_of(out, "dcpt_prior", domain, seeds)
    table = {}
    for m in methods:
        ss = seeds_of(out, m, domain, seeds)
        if not ss or not new or not prior:
            continue
        row = {"seeds": ss, "gain": effect(out, {m: 1, "base": -1}, new, domain, ss, draws),
               "forgetting": effect(out, {"base": 1, m: -1}, prior, domain, ss, draws)}
        both = [s for s in ss if s in control]
        if both and m != "dcpt_prior":
            row["forgetting_vs_control"] = effect(out, {"dcpt_prior": 1, m: -1}, prior, domain, both, draws)
        drift = [runs[i]["drift"] for i in _ids(m, domain, ss) if "drift" in runs.get(i, {})]
        if drift:
            row["cka_distance_new"] = float(np.mean([np.mean(1 - np.asarray(d[f"cka_{domain}"])) for d in drift]))
            row["cka_distance_prior"] = float(np.mean([np.mean(1 - np.asarray(d["cka_prior"])) for d in drift]))
            row["weight_change"] = float(np.mean([d["total"] for d in drift]))
        health = [runs[i]["health"] for i in _ids(m, domain, ss) if (runs.get(i) or {}).get("health")]
        for src in ("new", "prior"):
            pairs = [(h["before"][src]["info_gain"], h["after"][src]["info_gain"]) for h in health
                     if src in h.get("before", {}) and src in h.get("after", {})]
            if pairs:
                row[f"info_gain_{src}"] = (float(np.mean([b for b, _ in pairs])), float(np.mean([a for _, a in pairs])))
        table[m] = row
    return table


def stream_intervals(out: Outcomes, streams: dict[int, list[str]], tasks: list[str], draws: int) -> dict:
    """Paired 95 % intervals of one stream method over its seeds ({seed: run id of each stage}), each
    resampling the test clips (the same for every seed) and the seeds:
    `R`[i][j]: accuracy on task j after stage i; `change`[i][j]: that minus the base's on the same clips;
    `prior_change`[i]: the same on the prior tasks; `backward_transfer`: mean over j < T of the final
    model minus the model just after stage j, on task j. None where a task has no per-clip outcome."""
    seeds = sorted(streams)
    stages = len(streams[seeds[0]])
    prior = out.tasks("prior")

    def iv(per_seed) -> tuple[float, float, float] | None:
        per_clip = [per_seed(s) for s in seeds]
        return paired_bootstrap(per_clip, draws=draws) if per_clip and per_clip[0] else None

    def cell(i: int, t: str, minus_base: bool):
        if not out.per_clip(t):
            return None
        return iv(lambda s: [out.correct(streams[s][i], t) - (out.correct("base", t) if minus_base else 0)])

    result = {"R": [[cell(i, t, False) for t in tasks] for i in range(stages)],
              "change": [[cell(i, t, True) for t in tasks] for i in range(stages)],
              "prior_change": [iv(lambda s, i=i: [out.correct(streams[s][i], t) - out.correct("base", t) for t in prior])
                               for i in range(stages)]}
    earlier = [(j, t) for j, t in enumerate(tasks[:stages - 1]) if out.per_clip(t)]
    if earlier:
        result["backward_transfer"] = iv(lambda s: [out.correct(streams[s][-1], t) - out.correct(streams[s][j], t)
                                                    for j, t in earlier])
    return result


def decide(out: Outcomes, runs: dict, domain: str, seeds: list[int], draws: int) -> list[dict]:
    """Every rule of RULES that the finished runs allow, with its statistic, interval and verdict."""
    new, prior = out.tasks(domain), out.tasks("prior")
    found = []

    def claim(name: str, iv, evidence: str, precondition: tuple[str, tuple] | None = None) -> None:
        v = verdict(iv)
        if precondition is not None and verdict(precondition[1]) != "holds":
            v = f"not testable ({precondition[0]} {_fmt(precondition[1])})"
        found.append({"claim": name, "statistic": list(iv), "verdict": v, "evidence": evidence})

    def common(*methods: str) -> list[int]:
        return [s for s in seeds if all(out.has(f"{m}/{domain}-s{s}") for m in methods)]

    if new and (ss := common("sonar")):
        iv = effect(out, {"sonar": 1, "base": -1}, new, domain, ss, draws)
        claim("C1 SONAR gains on the new domain", iv, f"SONAR − base {_fmt(iv)}, seeds {ss}")
    if new and (ss := common("sonar", "dcpt")):
        g_d = effect(out, {"dcpt": 1, "base": -1}, new, domain, ss, draws)
        iv = effect(out, {"sonar": 1, "dcpt": -2 / 3, "base": -1 / 3}, new, domain, ss, draws)
        claim("C2 SONAR keeps ≥ 2/3 of DCPT's gain", iv, f"DCPT − base {_fmt(g_d)}; statistic {_fmt(iv)}",
              ("DCPT's gain", g_d))
    if prior and (ss := common("sonar", "dcpt")):
        f_d = effect(out, {"base": 1, "dcpt": -1}, prior, domain, ss, draws)
        iv = effect(out, {"base": 1 / 3 - 1, "dcpt": -1 / 3, "sonar": 1}, prior, domain, ss, draws)
        claim("C3a SONAR forgets ≤ 1/3 of DCPT (vs base)", iv, f"F(DCPT) {_fmt(f_d)}; statistic {_fmt(iv)}",
              ("DCPT's forgetting", f_d))
    if prior and (ss := common("sonar", "dcpt", "dcpt_prior")):
        f_d = effect(out, {"dcpt_prior": 1, "dcpt": -1}, prior, domain, ss, draws)
        iv = effect(out, {"dcpt_prior": 1 / 3 - 1, "dcpt": -1 / 3, "sonar": 1}, prior, domain, ss, draws)
        claim("C3b SONAR forgets ≤ 1/3 of DCPT (vs DCPT-on-prior)", iv,
              f"F(DCPT) vs control {_fmt(f_d)}; statistic {_fmt(iv)}", ("DCPT's forgetting beyond the control", f_d))
    ss = [s for s in common("sonar", "replay_only")
          if all("drift" in runs.get(f"{m}/{domain}-s{s}", {}) for m in ("sonar", "replay_only"))]
    if ss:
        def distance(m: str, s: int) -> float:
            return float(np.mean(1 - np.asarray(runs[f"{m}/{domain}-s{s}"]["drift"][f"cka_{domain}"])))

        iv = paired_bootstrap([[np.array([distance("sonar", s) - distance("replay_only", s)])] for s in ss], draws=draws)
        claim("C4 SONAR moves further from the base than replay-only", iv, f"1 − CKA, SONAR − replay-only {_fmt(iv)}")
    if new and (ss := common("sonar", "scratch")):
        iv = effect(out, {"sonar": 1, "scratch": -1}, new, domain, ss, draws)
        share = (np.mean([runs[f"sonar/{domain}-s{s}"]["samples_seen"] for s in ss])
                 / np.mean([runs[f"scratch/{domain}-s{s}"]["samples_seen"] for s in ss]))
        v = ("fails" if iv[2] <= -NON_INFERIORITY or share > COST_SHARE
             else "holds" if iv[1] > -NON_INFERIORITY else "undecided")
        found.append({"claim": "C5 SONAR matches scratch at a fraction of its cost", "statistic": list(iv),
                      "verdict": v, "evidence": f"SONAR − scratch {_fmt(iv)}; samples seen {share:.1%} of scratch's"})
    return found
