"""Summarise a py-spy ``--format raw`` profile (collapsed stacks) by where time goes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

# Frame file fragments -> the layer a sample's innermost frame belongs to, first match wins.
LAYERS = (
    ("redis", ("redis/",)),
    ("asyncpg", ("asyncpg/",)),
    ("uvicorn (HTTP parsing, responses)", ("uvicorn/", "httptools/")),
    ("starlette (routing, Request, Response)", ("starlette/",)),
    ("prometheus metrics", ("prometheus_client/",)),
    ("gateway code", ("gateway/",)),
    ("experiments (routing, records)", ("experiments/",)),
    ("logging sink", ("sinks.py",)),
    ("asyncio / uvloop event loop", ("asyncio/", "uvloop", "runners.py")),
    ("stdlib (uuid, hashlib, datetime ...)", ("uuid.py", "hashlib", "datetime", "json/")),
)


_REPO = str(Path(__file__).resolve().parents[2]) + "/"  # this checkout, wherever it is

_OUTER = {
    "other",
    "asyncio / uvloop event loop",
    "uvicorn (HTTP parsing, responses)",
    "starlette (routing, Request, Response)",
}


def load(path: Path) -> list[tuple[list[str], int]]:
    """Stacks (outermost first) and their sample counts."""
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            stacks.append((stack.split(";"), int(n)))
    return stacks


def layer_of(frame: str) -> str:
    """The layer of one ``function (file:line)`` frame."""
    for name, parts in LAYERS:
        if any(p in frame for p in parts):
            return name
    return "other"


def _function(frame: str) -> str:
    """``function (file)`` without the line number."""
    head, _, rest = frame.partition(" (")
    file = rest.rsplit(":", 1)[0]
    for marker in ("site-packages/", _REPO, "python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{head} ({file})"


def summarise(path: Path, top: int = 20) -> dict[str, list[tuple[str, float]]]:
    """Shares of samples: by layer (self time), by function (self), by function (inclusive)."""
    stacks = load(path)
    total = sum(n for _, n in stacks) or 1
    by_layer: Counter[str] = Counter()
    self_fn: Counter[str] = Counter()
    incl_fn: Counter[str] = Counter()
    in_app = 0
    for frames, n in stacks:
        leaf = frames[-1] if frames else ""
        in_app += n if any("Starlette.__call__" in f for f in frames) else 0
        by_layer[layer_of(leaf)] += n
        self_fn[_function(leaf)] += n
        # Inclusive time only for frames of the request path, not the loop and CLI around it.
        for fn in {_function(f) for f in frames if layer_of(f) not in _OUTER}:
            incl_fn[fn] += n
    share = lambda c: [(k, v / total) for k, v in c.most_common(top)]  # noqa: E731
    inclusive = [("whole ASGI app (Starlette.__call__ and below)", in_app / total)]
    return {
        "layer": share(by_layer),
        "self": share(self_fn),
        "inclusive": inclusive + share(incl_fn),
    }


def to_markdown(summary: dict[str, list[tuple[str, float]]], title: str) -> str:
    """Three markdown tables."""
    lines = [f"### {title}", ""]
    for key, head in (
        ("layer", "Self time by layer"),
        ("self", "Self time by function"),
        ("inclusive", "Inclusive time by function"),
    ):
        lines += [f"| {head} | share |", "|---|---:|"]
        lines += [f"| `{k}` | {v:.1%} |" for k, v in summary[key]]
        lines.append("")
    return "\n".join(lines)
