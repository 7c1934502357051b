# Types of the compiled exposure encoder (gateway/_exposure.c; gateway/exposure_json.py uses it).
from collections.abc import Callable
from typing import Any

class Encoder:
    def __init__(
        self,
        record_type: type[tuple[Any, ...]],
        prefix: str,
        template: Callable[..., tuple[Any, ...]],
        dumps: Callable[[Any], bytes],
        fallback: Callable[..., Any],
        fallback_log: Callable[..., None],
        admit: Callable[[Any], object],
        counts: dict[Any, int],
        max_templates: int,
    ) -> None: ...
    def encode(
        self,
        route: Any,
        model: Any,
        phase: Any,
        unit_id: str,
        items: Any,
        source: str,
        request_id: str,
        bucket: int,
        attributes: Any,
    ) -> Any: ...

def logentry_line(
    head: bytes, middle: bytes, record: tuple[str, str, bytes]
) -> tuple[str, bytes]: ...
