"""A log sink that sends exposures and outcomes to Cloud Logging's ``entries:write`` API.

On Cloud Run the local disk is memory and disappears with the instance, so the archive sink
loses what it wrote; this sink sends the same ``LogEntry`` lines to Cloud Logging. A log sink
routes them on: to BigQuery, which ``abgate report --bigquery`` reads, or to Cloud Storage in
the export layout of DESIGN.md ("The archive"), which ``abgate report --archive`` reads once
copied down (it does not read ``gs://`` itself). The request body is assembled from the already encoded lines (no re-encoding)
and posted from a worker thread through google-auth's ``AuthorizedSession`` (Application
Default Credentials, scope ``logging.write``), so the event loop never waits on the network.

``partialSuccess`` is set: one entry the API refuses does not hold back the batch. A refused
request (4xx other than 408/429) is logged and dropped, since resending it would fail the
same way; a 408, 429, 5xx or network failure raises, so the batch is kept and retried.

google-auth is imported on first use only (the ``gcp`` extra): the gateway's import path stays
light.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from gateway.sinks import Line, LogEntryEncoder

log = logging.getLogger("abgate.gateway")

DEFAULT_ENDPOINT = "https://logging.googleapis.com"
SCOPES = ("https://www.googleapis.com/auth/logging.write",)
RETRIED = {408, 429}


class CloudLoggingError(Exception):
    """Cloud Logging did not take a batch; it is kept and sent again."""


class CloudLoggingSink(LogEntryEncoder):
    """Sends batches of LogEntry lines to ``{endpoint}/v2/entries:write``."""

    def __init__(
        self,
        *,
        project: str,
        log_id: str,
        endpoint: str = DEFAULT_ENDPOINT,
        credentials: Any = None,
        timeout: float = 30.0,
    ) -> None:
        super().__init__(project=project, log_id=log_id)
        self.url = endpoint.rstrip("/") + "/v2/entries:write"
        self.credentials = credentials  # None: Application Default Credentials, at first use
        self.timeout = timeout
        self.dropped = 0  # entries of requests the API refused
        self._session: Any = None

    async def write(self, lines: Sequence[Line]) -> None:
        """Send the batch; raise CloudLoggingError to have it retried."""
        body = b'{"partialSuccess":true,"entries":[' + b",".join(x for _, x in lines) + b"]}"
        await asyncio.to_thread(self._post, body, len(lines))

    def _post(self, body: bytes, count: int) -> None:
        try:
            response = self._authorized().post(
                self.url,
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=self.timeout,
            )
        except Exception as exc:  # network, DNS, credentials refresh
            raise CloudLoggingError(f"cloud logging: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if status < 300:
            return
        detail = response.text[:300]
        if status >= 500 or status in RETRIED:
            raise CloudLoggingError(f"cloud logging: HTTP {status}: {detail}")
        self.dropped += count
        log.error(
            "cloud logging refused a batch; dropped",
            extra={"status": status, "entries": count, "detail": detail},
        )

    def _authorized(self) -> Any:
        if self._session is None:
            try:
                import google.auth
                from google.auth.transport.requests import AuthorizedSession
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise CloudLoggingError(
                    "ABGATE_LOG_SINK=cloud-logging needs google-auth: pip install 'abgate[gcp]'"
                ) from exc
            credentials = self.credentials
            if credentials is None:
                credentials, _ = google.auth.default(scopes=list(SCOPES))
            self._session = AuthorizedSession(credentials)  # type: ignore[no-untyped-call]
        return self._session
