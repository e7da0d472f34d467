"""The national portal over HTTP: send one status change, ask what it holds for a period.

An answer that is not a success raises ``PortalError`` with the reason the metrics count
(``domain.REASONS``) and, for a 429, the portal's Retry-After. Never called inside a transaction.
"""
from __future__ import annotations

from datetime import date
from typing import Any

import requests

from motcua.runtime.logs import mask_text
from services.portal.domain import PortalFields

USER_AGENT = "motcua-portal-sync/1"


class PortalError(Exception):
    def __init__(self, reason: str, detail: str, retry_after: float | None = None):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail, self.retry_after = reason, detail, retry_after


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None          # an HTTP date: our own backoff applies


class PortalClient:
    def __init__(self, base_url: str, fields: PortalFields, token: str | None = None, timeout: float = 10.0):
        self.base_url, self.fields, self.timeout = base_url.rstrip("/"), fields, timeout
        self.session = requests.Session()
        self.session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"     # [verify] the portal's auth

    def _call(self, method: str, path: str, **kwargs) -> requests.Response:
        url = self.base_url + path
        try:
            response = self.session.request(method, url, timeout=self.timeout, allow_redirects=False, **kwargs)
        except requests.Timeout:
            raise PortalError("unreachable", f"timed out after {self.timeout} s") from None
        except requests.RequestException as error:
            raise PortalError("unreachable", type(error).__name__) from None
        status = response.status_code
        if 200 <= status < 300:
            return response
        detail = f"{status} {mask_text(' '.join(response.text.split()))[:200]}".strip()
        if status == 429:
            raise PortalError("throttled", detail, _retry_after(response))
        if status == 408 or status >= 500:
            raise PortalError("unavailable", detail, _retry_after(response) if status == 503 else None)
        raise PortalError("rejected", detail)

    def send(self, message: dict, key: str) -> None:
        """POST one status change; its key in the configured header (the portal drops a repeat)."""
        self._call("POST", self.fields.send_path, json=message, headers={self.fields.idempotency_header: key})

    def held(self, first: date, last: date) -> list[dict[str, Any]]:
        """The records the portal holds for status changes in these days."""
        params = {self.fields.from_param: first.strftime(self.fields.date_format),
                  self.fields.to_param: last.strftime(self.fields.date_format)}
        answer = self._call("GET", self.fields.query_path, params=params)
        try:
            records = answer.json()[self.fields.query_list]
        except (ValueError, KeyError, TypeError):
            raise PortalError("rejected", f"the answer has no list {self.fields.query_list!r}") from None
        if not isinstance(records, list):
            raise PortalError("rejected", f"{self.fields.query_list!r} is not a list")
        return [record for record in records if isinstance(record, dict)]

    def close(self) -> None:
        self.session.close()
