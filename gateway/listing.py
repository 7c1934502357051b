"""``GET /v1/experiments``: what this replica serves right now, so operators can verify a rollout."""

from __future__ import annotations

from experiments import ModelRef, Variant
from gateway.serving import ServingState


def describe(state: ServingState) -> dict[str, object]:
    """Surfaces, experiments, their config versions and the model versions they resolve to now."""
    router, directory = state.router, state.directory
    snapshot = router.snapshot

    def resolved(ref: str) -> str:
        return str(directory.resolve(ModelRef.parse(ref)) or "unresolved")

    def arm(key: str, v: Variant) -> dict[str, object]:
        out: dict[str, object] = {"key": v.key, "weight": v.weight, "model": v.model}
        if key in state.phases:  # running: what the arm serves, pinned or not
            mv = directory.resolve_arm(v.model_ref, key, v.key)
            out["resolved"] = str(mv or "unresolved")
            out["pinned"] = directory.pins.get((key, v.key))
        else:
            out["resolved"] = resolved(v.model)
        return out

    running = router.running()
    experiments = [
        {
            "key": key,
            "surface": e.surface,
            "status": e.status,
            "running": key in running.get(e.surface, []),
            "config_version": snapshot.version_of(key),
            "layer": e.layer,
            "traffic": e.traffic,
            "winner": e.winner,
            "phase": state.phases[key].id if key in state.phases else None,
            "variants": [arm(key, v) for v in e.variants],
        }
        for key, e in sorted(snapshot.config.experiments.items())
    ]
    surfaces = [
        {
            "name": s.name,
            "default_model": s.default_model,
            "resolved": resolved(s.default_model),
            "running": running.get(s.name, []),
        }
        for s in snapshot.config.surfaces.values()
    ]
    return {
        "origin": snapshot.origin,
        "revision": snapshot.revision,
        "from_disk_cache": snapshot.from_disk_cache,
        "surfaces": surfaces,
        "experiments": experiments,
    }


def running_arms(state: ServingState) -> dict[str, dict[str, object]]:
    """Each running experiment's phase and the version each arm serves (for ``/readyz``)."""
    out: dict[str, dict[str, object]] = {}
    for key, phase in state.phases.items():
        e = state.router.allocations[key].experiment
        arms = {}
        for v in e.variants:
            mv = state.directory.resolve_arm(v.model_ref, key, v.key)
            pinned = (key, v.key) in state.directory.pins
            arms[v.key] = f"{mv or 'unresolved'}{' (pinned)' if pinned else ''}"
        out[key] = {"phase": phase.id, "arms": arms}
    return out
