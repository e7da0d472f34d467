"""The delivery channels of the notification service: e-mail (SMTP), SMS (an HTTP gateway), Zalo
(ZNS template messages of the district's Official Account) and webhooks (a unit's own system). One interface, no knowledge of the database.

``send`` returns the provider's message id or raises :class:`TransientError` (retry later:
timeouts, connection errors, SMTP 4xx, HTTP 408/429/5xx) or :class:`PermanentError` (never retry:
SMTP 5xx, other HTTP 4xx, a refused recipient, a message that cannot be sent). Every send carries
the idempotency key so that a retry after a lost answer is recognisably the same message.

The errors never carry a recipient: their texts are built from the channel, the provider's host,
the status and a short answer passed through :func:`motcua.runtime.logs.mask_text`; the original
exception is not chained (its text may hold the address).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import smtplib
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import formataddr, format_datetime
from typing import Any, Callable, Mapping, Protocol, runtime_checkable
from urllib.parse import urlsplit

import requests

from motcua.runtime.logs import mask_text
from services.notify.zalo import zns_phone

__all__ = [
    "Outgoing", "TransientError", "PermanentError", "Channel",
    "EmailChannel", "SmsChannel", "ZaloChannel", "WebhookChannel", "build_channels", "message_id_for", "close_idle", "close_all",
]

USER_AGENT = "motcua-notify/1"
_SNIPPET_CHARS = 200
# RFC 5322 dot-atom text: what may stand left of the "@" of a Message-ID as it is.
_DOT_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_PHONE_CHARS = re.compile(r"^\+?[0-9][0-9 .-]{6,18}[0-9]$")


@dataclass(frozen=True)
class Outgoing:
    channel: str
    to: str                  # an e-mail address, a phone number or a webhook URL
    subject: str | None
    text: str
    idempotency_key: str
    metadata: dict = field(default_factory=dict)


class TransientError(Exception):
    """Retry later. ``retry_after``: seconds the provider asked to wait, if it said."""

    def __init__(self, message: str, *, retry_after: float | None = None, code: int | None = None):
        super().__init__(mask_text(message))
        self.retry_after = retry_after
        self.code = code


class PermanentError(Exception):
    """Never retry this message."""

    def __init__(self, message: str, *, code: int | None = None):
        super().__init__(mask_text(message))
        self.code = code


@runtime_checkable
class Channel(Protocol):
    name: str

    def send(self, message: Outgoing) -> str:
        """The provider's message id; :class:`TransientError` or :class:`PermanentError`."""
        ...


def _check(message: Outgoing, channel: str) -> None:
    if message.channel != channel:
        raise PermanentError(f"{channel}: a message for the {message.channel!r} channel")
    if not isinstance(message.idempotency_key, str) or not message.idempotency_key.strip():
        raise PermanentError(f"{channel}: a message needs an idempotency key")
    if not isinstance(message.text, str) or not message.text.strip():
        raise PermanentError(f"{channel}: the text is empty")
    if not isinstance(message.to, str) or not message.to.strip():
        raise PermanentError(f"{channel}: no recipient")


# --- e-mail ------------------------------------------------------------------------------------


def message_id_for(idempotency_key: str) -> str:
    """``<key@motcua>``: the same key gives the same Message-ID, so a resend is recognisably the
    same message. A key that is not a valid left part (spaces, ``:``, ``@``...) or is longer
    than 56 characters is hashed (SHA-256, 40 hex digits): still the same for the same key."""
    # At most 56 characters: "Message-ID: <...@motcua>" stays on one line (78).
    left = idempotency_key if _DOT_ATOM.match(idempotency_key) and len(idempotency_key) <= 56 \
        else hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:40]
    return f"<{left}@motcua>"


def _smtp_error(code: int, what: str) -> Exception:
    text = f"email: {what} (SMTP {code})"
    if 400 <= code < 500:
        return TransientError(text, code=code)
    if 500 <= code < 600:
        return PermanentError(text, code=code)
    return TransientError(text, code=code)


def _smtp_text(raw: Any) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return mask_text(" ".join(text.split()))[:_SNIPPET_CHARS]


# Header lines are folded to this length (RFC 5322's "SHOULD"); an encoded word is at most 75.
_LINE = 78


def _word_bytes(room: int) -> int:
    """UTF-8 bytes an encoded word fitting ``room`` characters carries: ``=?utf-8?b?`` and ``?=``
    around base64 (4 characters per 3 bytes); at most 75 characters a word (RFC 2047)."""
    return max((min(room, 75) - 12) // 4 * 3, 3)


def _encoded_words(value: str, first_room: int) -> str:
    """``value`` as RFC 2047 encoded words (UTF-8, base64), one per folded line, never splitting a
    character: what a reader decodes back to ``value`` exactly (the line breaks between adjacent
    encoded words are not part of the text). ``first_room``: what the first line has left."""
    data = value.encode("utf-8")
    words, start, room = [], 0, first_room
    while start < len(data):
        end = min(start + _word_bytes(room), len(data))
        while end < len(data) and 0x80 <= data[end] < 0xC0:   # a continuation byte: back off
            end -= 1
        words.append("=?utf-8?b?" + base64.b64encode(data[start:end]).decode("ascii") + "?=")
        start, room = end, _LINE - 1                          # the next lines start with a space
    return "\r\n ".join(words)


def _header(name: str, value: str) -> str:
    """``Name: value``: as it is when it is ASCII text that fits a line, otherwise encoded words
    (a long ASCII value too: folding it at its spaces would be the only other way)."""
    if value.isascii() and "=?" not in value and len(name) + 2 + len(value) <= _LINE:
        return f"{name}: {value}"
    return f"{name}: {_encoded_words(value, _LINE - len(name) - 2)}" if value else f"{name}: "


def _address_header(sender: str) -> tuple[str, str]:
    """(the envelope's address, the ``From`` header's value) of ``Name <address>`` or an address.
    The name is quoted when it needs it (a comma), made encoded words when it is Vietnamese."""
    text = sender.strip()
    if not (text.endswith(">") and "<" in text):
        return text, text
    name, _, address = text[:-1].rpartition("<")
    name, address = name.strip().strip('"').strip(), address.strip()
    if not name:
        return address, address
    if name.isascii():
        return address, formataddr((name, address))
    words = _encoded_words(name, _LINE - len("From: "))
    last = words.rsplit("\r\n", 1)[-1]
    fold = " " if len(last) + len(address) + 3 <= _LINE - len("From: ") else "\r\n "
    return address, f"{words}{fold}<{address}>"


class EmailChannel:
    """SMTP without authentication or TLS: the relay of the district's network.

    Connections are kept open between e-mails and reused, one per sender at a time (a sender takes
    the most recently used idle one, or opens one): a connection the relay closed meanwhile is
    noticed at ``MAIL FROM``, before anything of the message went out, and replaced. One that
    failed otherwise is closed; one left unused ``idle_seconds`` is closed by :meth:`close_idle`
    (the dispatcher calls it after each round) or when next taken.

    The message is built as text (:meth:`build`), not with ``email.message.EmailMessage``, whose
    policy objects (header parsing and folding) cost far more than sending it: the same headers,
    RFC 2047 encoded words for a Vietnamese subject or sender name, a UTF-8 body in
    quoted-printable (7-bit safe), read back the same by any parser.
    """

    name = "email"

    def __init__(self, host: str, port: int, sender: str, timeout: float = 10, idle_seconds: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        self.host = host
        self.port = int(port)
        self.sender = sender
        self.timeout = timeout
        self.idle_seconds = idle_seconds
        self.clock = clock
        self.envelope_from, self._from = _address_header(sender)
        self._idle: list[tuple[smtplib.SMTP, float]] = []   # (connection, unused since), latest last

    def build(self, message: Outgoing) -> bytes:
        """The message as SMTP's DATA sends it: CRLF line ends, 7-bit (an address outside ASCII
        aside, which needs SMTPUTF8: :meth:`send` checks the relay offers it)."""
        _check(message, self.name)
        to = message.to.strip()
        if "@" not in to or any(c.isspace() or c in "<>,;\"" for c in to):
            raise PermanentError("email: the recipient is not an e-mail address")
        key = message.idempotency_key
        head = "\r\n".join((
            f"From: {self._from}",
            f"To: {to}",
            _header("Subject", " ".join((message.subject or "").split())),
            f"Date: {format_datetime(datetime.now(timezone.utc))}",
            f"Message-ID: {message_id_for(key)}",
            _header("X-Idempotency-Key", " ".join(key.split())),
            "Auto-Submitted: auto-generated",            # RFC 3834: no out-of-office answers
            'Content-Type: text/plain; charset="utf-8"',
            "Content-Transfer-Encoding: quoted-printable",
            "MIME-Version: 1.0",
        ))
        try:
            text = message.text.encode("utf-8")
        except UnicodeEncodeError:                       # a lone surrogate
            raise PermanentError("email: the message cannot be built: UnicodeEncodeError") from None
        # As EmailMessage.set_content: lines split at CR, LF or CRLF, a line end after the last one.
        body = binascii.b2a_qp(b"\n".join(text.splitlines()) + b"\n", istext=True).replace(b"\n", b"\r\n")
        return head.encode("utf-8") + b"\r\n\r\n" + body

    # --- kept-open connections ----------------------------------------------------------------

    def _take(self) -> tuple[smtplib.SMTP, bool]:
        """An idle connection (True: reused) or a new one (False)."""
        now = self.clock()
        while self._idle:
            smtp, since = self._idle.pop()
            if now - since < self.idle_seconds:
                return smtp, True
            _close(smtp)
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        return smtp, False

    def close_idle(self) -> None:
        """Close the connections unused for ``idle_seconds`` or more."""
        now = self.clock()
        keep = [(smtp, since) for smtp, since in self._idle if now - since < self.idle_seconds]
        old = [smtp for smtp, since in self._idle if now - since >= self.idle_seconds]
        self._idle = keep
        for smtp in old:
            _close(smtp)

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for smtp, _ in idle:
            _close(smtp)

    def _transaction(self, smtp: smtplib.SMTP, to: str, data: bytes, smtputf8: bool, reused: bool) -> bool:
        """MAIL, RCPT, DATA on ``smtp``. False: a reused connection turned out closed at MAIL FROM
        (nothing of the message was sent; try a new one). Refusals raise as ``sendmail`` would."""
        try:
            smtp.ehlo_or_helo_if_needed()
            options = []
            if smtputf8:
                if not smtp.has_extn("smtputf8"):
                    raise smtplib.SMTPNotSupportedError("SMTPUTF8 not offered")
                options = ["SMTPUTF8", "BODY=8BITMIME"]
            code, answer = smtp.mail(self.envelope_from, options)
        except (smtplib.SMTPServerDisconnected, OSError):
            if reused:
                return False
            raise
        if code == 421 and reused:                   # "closing the connection": it timed out
            return False
        if code != 250:
            raise smtplib.SMTPSenderRefused(code, answer, self.envelope_from)
        code, answer = smtp.rcpt(to)
        if code not in (250, 251):
            raise smtplib.SMTPRecipientsRefused({to: (code, answer)})
        code, answer = smtp.data(data)
        if code != 250:
            raise smtplib.SMTPDataError(code, answer)
        return True

    def send(self, message: Outgoing) -> str:
        data = self.build(message)
        to = message.to.strip()
        smtputf8 = not (to.isascii() and self.envelope_from.isascii())
        where = f"{self.host}:{self.port}"
        smtp, done = None, False
        try:
            smtp, reused = self._take()
            if not self._transaction(smtp, to, data, smtputf8, reused):
                _close(smtp)                         # the relay closed it while it was idle
                smtp = None
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
                self._transaction(smtp, to, data, smtputf8, False)
            done = True
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()] or [550]
            transient = all(400 <= code < 500 for code in codes)
            code = codes[0]
            detail = _smtp_text(next(iter(exc.recipients.values()))[1]) if exc.recipients else ""
            text = f"email: {where} refused the recipient (SMTP {code}): {detail}"
            raise (TransientError(text, code=code) if transient else PermanentError(text, code=code)) from None
        except smtplib.SMTPResponseException as exc:   # sender refused, data refused, connect, helo
            raise _smtp_error(exc.smtp_code, f"{where} answered {_smtp_text(exc.smtp_error)}") from None
        except smtplib.SMTPServerDisconnected:
            raise TransientError(f"email: {where} closed the connection") from None
        except smtplib.SMTPNotSupportedError:
            raise PermanentError(f"email: {where} does not support what the message needs (SMTPUTF8?)") from None
        except smtplib.SMTPException as exc:
            raise PermanentError(f"email: {where}: {type(exc).__name__}") from None
        except TimeoutError:
            raise TransientError(f"email: {where} timed out after {self.timeout} s") from None
        except ConnectionRefusedError:
            raise TransientError(f"email: {where} refused the connection") from None
        except OSError as exc:
            raise TransientError(f"email: cannot reach {where}: {type(exc).__name__}") from None
        finally:
            if smtp is not None:
                if done:
                    self._idle.append((smtp, self.clock()))   # kept open for the next e-mail
                else:
                    _close(smtp)                     # a failed connection is never reused
        return message_id_for(message.idempotency_key)


def _close(smtp: smtplib.SMTP) -> None:
    """QUIT (briefly waited for), then close; whatever state the connection is in."""
    try:
        if smtp.sock is not None:
            smtp.sock.settimeout(1.0)
            smtp.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        smtp.close()


# --- HTTP (SMS gateway and webhooks) -----------------------------------------------------------


def _origin(url: str) -> str:
    """``scheme://host:port`` only: no credentials, path or query (tokens) in an error."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{parts.hostname or '?'}{port}"
    except ValueError:
        return "<bad url>"


def _connection_reason(exc: Exception) -> str:
    text = str(exc).lower()
    if "refused" in text:
        return "connection refused"
    if "name or service not known" in text or "nameresolution" in text or "getaddrinfo" in text:
        return "host name not resolved"
    if "reset" in text:
        return "connection reset"
    if "remote end closed" in text or "remotedisconnected" in text:
        return "connection closed"
    return type(exc).__name__


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None   # an HTTP date: left to the caller's own back-off


def _snippet(response: requests.Response) -> str:
    try:
        text = response.text
    except Exception:  # noqa: BLE001 - undecodable body
        return ""
    return mask_text(" ".join(text.split()))[:_SNIPPET_CHARS]


def _post(session: requests.Session, channel: str, url: str, payload: Mapping[str, Any],
          headers: Mapping[str, str], timeout: float) -> requests.Response:
    target = _origin(url)
    try:
        response = session.post(url, json=payload, headers=dict(headers), timeout=timeout, allow_redirects=False)
    except requests.Timeout:
        raise TransientError(f"{channel}: {target} timed out after {timeout} s") from None
    except requests.ConnectionError as exc:
        raise TransientError(f"{channel}: cannot reach {target}: {_connection_reason(exc)}") from None
    except (requests.RequestException, ValueError) as exc:   # bad URL, bad payload
        raise PermanentError(f"{channel}: cannot post to {target}: {type(exc).__name__}") from None
    status = response.status_code
    if 200 <= status < 300:
        return response
    answer = f"{channel}: {target} answered {status}: {_snippet(response)}".rstrip(": ")
    if status in (408, 429) or status >= 500:
        raise TransientError(answer, retry_after=_retry_after(response), code=status)
    if 300 <= status < 400:
        raise PermanentError(f"{channel}: {target} answered {status} (a redirect: configure the final URL)",
                             code=status)
    raise PermanentError(answer, code=status)


def _headers(message: Outgoing) -> dict[str, str]:
    return {"Idempotency-Key": message.idempotency_key, "User-Agent": USER_AGENT,
            "Accept": "application/json"}


def _session_for(url: str) -> requests.Session:
    """Kept-alive connections to one gateway, with the environment's proxy and CA settings read
    once: requests would otherwise walk the whole environment again for every message."""
    session = requests.Session()
    session.trust_env = False
    session.proxies.update(requests.utils.get_environ_proxies(url))
    session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    return session


class SmsChannel:
    """An SMS gateway (brandname SMS of the district): ``POST {to, text, idempotency_key}``."""

    name = "sms"

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 10):
        self.url = url
        self.api_key = api_key
        self.timeout = timeout
        self.session = _session_for(url)

    def send(self, message: Outgoing) -> str:
        _check(message, self.name)
        if not _PHONE_CHARS.match(message.to.strip()):
            raise PermanentError("sms: the recipient is not a phone number")
        headers = _headers(message)
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        payload = {"to": message.to.strip(), "text": message.text, "idempotency_key": message.idempotency_key}
        response = _post(self.session, self.name, self.url, payload, headers, self.timeout)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        provider_id = answer.get("id") if isinstance(answer, dict) else None
        if provider_id is None or isinstance(provider_id, bool) or str(provider_id) == "":
            raise PermanentError(f"sms: {_origin(self.url)} answered {response.status_code} without a message id")
        return str(provider_id)


class WebhookChannel:
    """``POST {text, subject, idempotency_key, **metadata}`` to the recipient URL (Zalo, a unit's
    own system). The message fields win over metadata keys of the same name."""

    name = "webhook"

    def __init__(self, timeout: float = 10):
        self.timeout = timeout
        self.session = requests.Session()     # kept-alive connections, per host

    def send(self, message: Outgoing) -> str:
        _check(message, self.name)
        url = message.to.strip()
        try:
            parts = urlsplit(url)
            valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            valid = False
        if not valid:
            raise PermanentError("webhook: the recipient is not an http(s) URL")
        payload = {**(message.metadata or {}), "text": message.text, "subject": message.subject,
                   "idempotency_key": message.idempotency_key}
        response = _post(self.session, self.name, url, payload, _headers(message), self.timeout)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        provider_id = answer.get("id") if isinstance(answer, dict) else None
        # A receiver that answers 2xx without an id (204 No Content) is fine: the key names the message.
        return str(provider_id) if provider_id not in (None, "") else message.idempotency_key


# --- Zalo ZNS --------------------------------------------------------------------------------------

# ZNS answers HTTP 200 with {"error": <code>, "message": <text>, "data": {...}}; 0 is success.
# Codes 0 to -112 as Zalo's table of error codes lists them (zalo.cloud/zns/guidelines/handle-error-code):
# -100 "unknown error, try again later" is the one it tells to retry; -101 to -112 are the
# application's, the template's or the recipient's and do not change by waiting.
ZALO_PERMANENT = {
    -101: "application invalid", -102: "application not existed", -103: "application not activated",
    -104: "app secret key invalid", -105: "application not linked to an OA", -106: "method unsupported",
    -107: "message id invalid", -108: "phone number invalid", -109: "template id invalid",
    -110: "the recipient's Zalo version is unsupported", -111: "template data empty",
    -112: "template data invalid",
    # [verify] the numbers: Zalo's table names these, the numbers are as remembered, not read.
    -114: "the user is inactive or refused ZNS", -117: "the OA or app may not use this template",
    -118: "no Zalo account for this number", -119: "the account cannot receive ZNS",
}
# Retried with the back-off: "try again later" (-100), and [verify] the codes of conditions that pass:
# the OA's quota (-115 out of quota, -144 daily quota), an expired access token (-124: an operator
# renews it; the messages wait rather than fail) and a time of day ZNS refuses to send at (-133).
# A code in neither table is retried too (at most NOTIFY_MAX_ATTEMPTS), and its text kept in the reason.
ZALO_TRANSIENT = {
    -100: "unknown error, try again later",
    -115: "out of quota", -124: "access token invalid or expired", -133: "outside the hours ZNS sends",
    -144: "the OA's daily quota is used up",
}


class ZaloChannel:
    """ZNS template messages: ``POST {phone, template_id, template_data, tracking_id}`` with the OA's
    access token in a header (``ZALO_API_URL``, ``ZALO_ACCESS_TOKEN``, ``ZALO_TOKEN_HEADER``).

    The message's text is what notify built when it queued it (``services.notify.zalo``): the
    template id and the template data as JSON. ``tracking_id`` is notify's message id (the same on
    every attempt; ZNS keeps it for reconciliation, whether it also refuses a repeated one is
    [verify]): a message is sent once because notify records it as sent before its sender sends
    the next one. The phone goes as ``84…``; never into an error text."""

    name = "zalo"

    def __init__(self, url: str, access_token: str, token_header: str = "access_token", timeout: float = 10):
        self.url = url
        self.access_token = access_token
        self.token_header = token_header
        self.timeout = timeout
        self.session = _session_for(url)

    def request(self, message: Outgoing) -> tuple[dict, dict]:
        """(headers, JSON body) of the request that sends ``message``; -> :class:`PermanentError`."""
        _check(message, self.name)
        phone = zns_phone(message.to)
        if phone is None:
            raise PermanentError("zalo: the recipient is not a Vietnamese phone number")
        try:
            content = json.loads(message.text)
            template_id, data = content["template_id"], content["template_data"]
        except (ValueError, KeyError, TypeError):
            raise PermanentError("zalo: the message is not a ZNS template message (template_id, template_data)") from None
        if not isinstance(template_id, str) or not isinstance(data, dict):
            raise PermanentError("zalo: the message is not a ZNS template message (template_id, template_data)")
        tracking_id = str((message.metadata or {}).get("message_id") or message.idempotency_key)
        headers = {self.token_header: self.access_token, "User-Agent": USER_AGENT, "Accept": "application/json"}
        return headers, {"phone": phone, "template_id": template_id, "template_data": data,
                         "tracking_id": tracking_id[:48]}

    def send(self, message: Outgoing) -> str:
        headers, payload = self.request(message)
        response = _post(self.session, self.name, self.url, payload, headers, self.timeout)
        target = _origin(self.url)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or isinstance(answer.get("error"), bool) \
                or not isinstance(answer.get("error"), int):
            # as the SMS gateway's answer without an id: it may have sent it, so never again
            raise PermanentError(f"zalo: {target} answered {response.status_code} without an error code")
        code = answer["error"]
        if code != 0:
            said = mask_text(" ".join(str(answer.get("message") or "").split()))[:_SNIPPET_CHARS]
            if code in ZALO_PERMANENT:
                raise PermanentError(f"zalo: {target} answered error {code} ({ZALO_PERMANENT[code]}): {said}",
                                     code=code)
            meaning = ZALO_TRANSIENT.get(code, "not a known code")
            raise TransientError(f"zalo: {target} answered error {code} ({meaning}): {said}", code=code)
        data = answer.get("data")
        provider_id = data.get("msg_id") if isinstance(data, dict) else None
        if provider_id in (None, "") or isinstance(provider_id, bool):
            raise PermanentError(f"zalo: {target} answered success without a msg_id")
        return str(provider_id)


# --- configuration -----------------------------------------------------------------------------


def _setting(config: Mapping[str, Any], name: str) -> str | None:
    value = config.get(name)
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def build_channels(config: Mapping[str, Any]) -> dict[str, Channel]:
    """The configured channels: ``email`` from ``SMTP_HOST``, ``SMTP_PORT`` (25) and
    ``SMTP_SENDER``; ``sms`` from ``SMS_GATEWAY_URL`` and ``SMS_GATEWAY_KEY``; ``zalo`` from
    ``ZALO_API_URL``, ``ZALO_ACCESS_TOKEN`` and ``ZALO_TOKEN_HEADER`` (access_token); ``webhook`` always
    (its URL is the recipient). A channel with no configuration is absent; a half-configured one
    is a ``ValueError``."""
    channels: dict[str, Channel] = {"webhook": WebhookChannel()}
    host, sender = _setting(config, "SMTP_HOST"), _setting(config, "SMTP_SENDER")
    if host:
        if not sender:
            raise ValueError("SMTP_SENDER is required with SMTP_HOST")
        port = _setting(config, "SMTP_PORT") or "25"
        try:
            port_number = int(port)
        except ValueError:
            raise ValueError(f"SMTP_PORT is a port number, not {port!r}") from None
        if not 0 < port_number < 65536:
            raise ValueError(f"SMTP_PORT is a port number, not {port!r}")
        idle = float(_setting(config, "SMTP_IDLE_SECONDS") or 5)
        channels["email"] = EmailChannel(host, port_number, sender, idle_seconds=idle)
    url = _setting(config, "SMS_GATEWAY_URL")
    if url:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("SMS_GATEWAY_URL is an http(s) URL")
        channels["sms"] = SmsChannel(url, _setting(config, "SMS_GATEWAY_KEY"))
    url = _setting(config, "ZALO_API_URL")
    if url:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("ZALO_API_URL is an http(s) URL")
        token = _setting(config, "ZALO_ACCESS_TOKEN")
        if not token:
            raise ValueError("ZALO_ACCESS_TOKEN is required with ZALO_API_URL")
        channels["zalo"] = ZaloChannel(url, token, _setting(config, "ZALO_TOKEN_HEADER") or "access_token")
    return channels


def close_idle(channels: Mapping[str, Channel]) -> None:
    """Kept-open connections unused for a while are closed (the e-mail channel's)."""
    for channel in channels.values():
        if hasattr(channel, "close_idle"):
            channel.close_idle()


def close_all(channels: Mapping[str, Channel]) -> None:
    for channel in channels.values():
        if hasattr(channel, "close"):
            channel.close()
