"""Getting an alert out of the process: masking, the message every channel sends, and the plain transports.

One message per batch of alerts (``Message``, built by ``pipelines.ops.alerts.compose``): the e-mail is its
HTML, a webhook gets it in the shape its connection asks for (plain JSON, or the markdown JSON of a WeCom or
DingTalk group robot), so e-mail and chat say the same thing. Inside Airflow the SMTP and HTTP providers carry
it (``pipelines.ops.notifier``); outside, ``unitfusion run`` uses the standard-library transports below,
configured from the environment. Light on purpose: the CLI sends alerts without Airflow installed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import smtplib
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

SMTP_ENV = "UNITFUSION_ALERT_SMTP"  # smtp://user:password@host:port?from=a@x&to=b@y,c@z&starttls=1
WEBHOOK_ENV = "UNITFUSION_ALERT_WEBHOOK"
WEBHOOK_SHAPE_ENV = "UNITFUSION_ALERT_WEBHOOK_SHAPE"  # json (default), wecom or dingtalk
WEBHOOK_SECRET_ENV = "UNITFUSION_ALERT_WEBHOOK_SECRET"  # a DingTalk robot's signing secret (加签)
SHAPES = ("json", "wecom", "dingtalk")
# WeCom refuses markdown over 4096 bytes; DingTalk's limit is higher. The e-mail and the ledger keep it all.
CHAT_LIMIT_BYTES = 4000
# Anything that looks like an ID number or a mobile phone is masked before an alert leaves the process.
_PERSONAL_RE = re.compile(r"(?<!\d)(?:[1-9]\d{16}[\dXx]|(?:\+?86[- ]?)?1[3-9]\d(?:[- ]?\d{4}){2})(?!\d)")


def mask_personal(text: str) -> str:
    return _PERSONAL_RE.sub("***", text)


def check_shape(shape: str) -> str:
    """A webhook shape, or a ValueError naming the ones there are (a typo must not post JSON to a robot)."""
    if shape not in SHAPES:
        raise ValueError(f"unknown webhook shape {shape!r}: one of {', '.join(SHAPES)}")
    return shape


def _cut(text: str, limit: int) -> str:
    data = text.encode()
    if len(data) <= limit:
        return text
    note = "\n\n… (cut; the e-mail and the alerts ledger have every alert)"
    return data[: limit - len(note.encode())].decode(errors="ignore") + note


@dataclass(frozen=True)
class Message:
    """One batch of alerts as people read it, built once and sent by every channel."""

    title: str  # short: the e-mail subject, the DingTalk card title
    markdown: str  # the chat robots' text
    html: str  # the e-mail, the same facts as ``markdown``
    data: dict[str, Any]  # the plain JSON body: the run key and every alert as structured data

    def webhook_body(self, shape: str = "json") -> dict[str, Any]:
        """The POST body a webhook of ``shape`` expects."""
        if check_shape(shape) == "wecom":
            return {"msgtype": "markdown", "markdown": {"content": _cut(self.markdown, CHAT_LIMIT_BYTES)}}
        if shape == "dingtalk":
            text = _cut(self.markdown, CHAT_LIMIT_BYTES)
            return {"msgtype": "markdown", "markdown": {"title": self.title, "text": text}}
        return self.data


def dingtalk_signature(secret: str, now_ms: int | None = None) -> dict[str, str]:
    """The query parameters a DingTalk robot secured by signing (加签) wants: the time in milliseconds and
    the base64 HMAC-SHA256 of ``"<timestamp>\\n<secret>"`` keyed by the secret."""
    timestamp = str(int(time.time() * 1000) if now_ms is None else now_ms)
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    return {"timestamp": timestamp, "sign": base64.b64encode(digest).decode()}


def signed_url(url: str, query: dict[str, str]) -> str:
    """``url`` with ``query`` added to the query it has (a robot's key or access token)."""
    return url + ("&" if urllib.parse.urlsplit(url).query else "?") + urllib.parse.urlencode(query)


def check_reply(text: str) -> None:
    """Chat robots answer HTTP 200 with ``{"errcode": <not 0>, "errmsg": ...}`` when they refuse a message
    (bad key, too long, keyword missing): that is a failed delivery, not a sent one."""
    try:
        reply = json.loads(text)
    except ValueError:
        return
    if isinstance(reply, dict) and reply.get("errcode") not in (None, 0):
        raise RuntimeError(f"webhook refused the message: errcode {reply['errcode']}: {reply.get('errmsg')}")


# -- the plain transports (outside Airflow) ------------------------------------------------------------------


def post_json(url: str, payload: Any) -> int:
    """POST ``payload`` as UTF-8 JSON; the HTTP status (a robot's refusal raises, see ``check_reply``)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload, ensure_ascii=False).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        check_reply(response.read().decode(errors="replace"))
        return response.status


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    login: str | None = None
    password: str | None = None
    starttls: bool = False
    ssl: bool = False

    @classmethod
    def from_url(cls, url: str) -> SmtpTarget:
        parts = urllib.parse.urlsplit(url)
        query = dict(urllib.parse.parse_qsl(parts.query))
        return cls(
            host=parts.hostname or "localhost",
            port=parts.port or (465 if parts.scheme == "smtps" else 25),
            sender=query.get("from", "unitfusion@localhost"),
            recipients=tuple(r for r in query.get("to", "").split(",") if r),
            login=urllib.parse.unquote(parts.username) if parts.username else None,
            password=urllib.parse.unquote(parts.password) if parts.password else None,
            starttls=query.get("starttls", "0") in ("1", "true", "yes"),
            ssl=parts.scheme == "smtps",
        )


def send_email(target: SmtpTarget, message: Message) -> None:
    """The message by SMTP: its HTML, and the markdown as the plain-text part for text-only readers."""
    mail = EmailMessage()
    mail["Subject"] = message.title
    mail["From"], mail["To"] = target.sender, ", ".join(target.recipients)
    mail.set_content(message.markdown)
    mail.add_alternative(message.html, subtype="html")
    client = smtplib.SMTP_SSL if target.ssl else smtplib.SMTP
    with client(target.host, target.port, timeout=15) as smtp:
        if target.starttls:
            smtp.starttls()
        if target.login:
            smtp.login(target.login, target.password or "")
        smtp.send_message(mail)
