"""``GET /v1/experiments``: what this replica serves right now, so operators can verify a rollout."""

from __future__ import annotations

from experiments import ModelRef
from gateway.service import ServingState


def describe(state: ServingState) -> dict[str, object]:
    """Surfaces, experiments, their config versions and the model versions they resolve to now."""
    router, directory = state.router, state.directory
    snapshot = router.snapshot

    def resolved(ref: str) -> str:
        return str(directory.resolve(ModelRef.parse(ref)) or "unresolved")

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
            "variants": [
                {"key": v.key, "weight": v.weight, "model": v.model, "resolved": resolved(v.model)}
                for v in e.variants
            ],
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
