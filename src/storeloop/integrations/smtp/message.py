"""What Storeloop sends by e-mail (``EmailMessageSpec``) and its MIME form (``build_mime``).

Choices and why:

- Bodies are UTF-8 and quoted-printable, so the wire form is 7-bit clean: no dependence on the
  relay offering 8BITMIME or SMTPUTF8. Addresses must therefore be ASCII; an internationalised
  domain is converted to its IDNA (``xn--``) form, a non-ASCII local part is refused.
- ``Message-ID`` is ``<{message_id_local}@{domain}>``, derived from *our* id and nothing else. A
  resend of the same message (a retry after a crash or an ambiguous disconnect) carries the same
  Message-ID, so a receiver, a relay or our bounce handling can recognise it as the same mail.
- Marketing mail carries RFC 2369/8058 one-click unsubscribe. RFC 8058 needs an https URI (mail
  clients ignore ``List-Unsubscribe-Post`` when only ``mailto:`` is offered), so marketing mail
  without one is refused here rather than sent non-compliant. Transactional mail never carries
  these headers (an unsubscribe link on a receipt would be wrong), even if the spec has links.
- ``List-Unsubscribe`` is written on one line. Python's folding would turn a long URL into RFC 2047
  encoded-words (which breaks it), and re-folding after DKIM signing breaks the signature.
- Every header value is checked for CR/LF/NUL: header injection is refused with ``ValueError``.
"""

from __future__ import annotations

import binascii
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy as email_policy
from email import utils as email_utils
from email.headerregistry import Address, BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import EmailPolicy
from typing import Any, cast
from urllib.parse import urlsplit

__all__ = ["EmailMessageSpec", "build_mime", "envelope_sender", "message_id_for", "render", "serialize"]

_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*"
_ADDRESS_RE = re.compile(rf"({_LOCAL})@({_DOMAIN})")
_DOMAIN_RE = re.compile(_DOMAIN)
_LOCAL_RE = re.compile(_LOCAL)
_HEADER_NAME_RE = re.compile(r"[!-9;-~]+")  # printable ASCII except ':' (RFC 5322 ftext)
_FORBIDDEN_CHARS = ("\r", "\n", "\x00")
_MAX_HEADER_LINE = 998  # RFC 5322 2.1.1

# Headers build_mime owns; an "extra" header must not replace or duplicate them.
_RESERVED = frozenset(
    {
        "bcc",
        "cc",
        "content-transfer-encoding",
        "content-type",
        "date",
        "from",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "message-id",
        "mime-version",
        "reply-to",
        "return-path",
        "sender",
        "subject",
        "to",
    }
)


class _OneLineHeader(UnstructuredHeader):
    """A header written exactly as given, on one line (never folded, never RFC 2047-encoded)."""

    max_count = 1

    @classmethod
    def parse(cls, value: str, kwds: dict[str, Any]) -> None:
        # The value is our own ASCII; do not decode "=?...?=" sequences a URL might contain.
        kwds["parse_tree"] = cls.value_parser(value)
        kwds["decoded"] = value

    def fold(self, *, policy: Any) -> str:
        # ``name`` comes from BaseHeader, which the registry mixes in when it builds the class.
        return f"{self.name}: {self}{policy.linesep}"  # type: ignore[attr-defined]


def _make_policy() -> EmailPolicy[EmailMessage]:
    registry = HeaderRegistry()
    one_line = cast("type[BaseHeader]", _OneLineHeader)  # the registry mixes BaseHeader in itself
    registry.map_to_type("list-unsubscribe", one_line)
    registry.map_to_type("list-unsubscribe-post", one_line)
    return email_policy.SMTP.clone(header_factory=registry)


# SMTP policy: CRLF line endings, 78-column folding with RFC 2047 for non-ASCII text.
POLICY = _make_policy()


def _check_header_value(name: str, value: str) -> None:
    if any(c in value for c in _FORBIDDEN_CHARS):
        raise ValueError(f"{name} must not contain CR, LF or NUL characters (header injection)")


def normalize_address(value: str, *, field_name: str) -> str:
    """An ASCII addr-spec (``local@domain``): IDNA-encodes a non-ASCII domain, refuses the rest.

    The error names the field but never repeats the address (personal data ends up in logs).
    """
    _check_header_value(field_name, value)
    value = value.strip()
    local, sep, domain = value.rpartition("@")
    if not sep or not local or not domain:
        raise ValueError(f"{field_name} is not an e-mail address (expected local@domain)")
    if not local.isascii():
        raise ValueError(f"{field_name} has a non-ASCII local part, which needs SMTPUTF8 (not used)")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValueError(f"{field_name} has a domain that cannot be IDNA-encoded") from exc
    addr = f"{local}@{domain.lower()}"
    if len(addr) > 254 or not _ADDRESS_RE.fullmatch(addr):
        raise ValueError(f"{field_name} is not a valid e-mail address")
    return addr


# What may not appear in a link between <...>: \s is exactly str.isspace(), one search instead of a
# Python loop over every character of every marketing e-mail's link.
_SPACE_OR_BRACKET = re.compile(r"[\s<>]")


def _check_https_url(url: str) -> None:
    _check_header_value("unsubscribe_url", url)
    parts = urlsplit(url)
    if parts.scheme.lower() != "https" or not parts.hostname:
        raise ValueError("unsubscribe_url must be an absolute https:// URL (RFC 8058)")
    if _SPACE_OR_BRACKET.search(url) or not url.isascii():
        raise ValueError("unsubscribe_url must be ASCII without spaces or angle brackets (percent-encode them)")


def _mailto_uri(value: str) -> str:
    _check_header_value("unsubscribe_mailto", value)
    uri = value if value.lower().startswith("mailto:") else f"mailto:{value}"
    if _SPACE_OR_BRACKET.search(uri) or not uri.isascii():
        raise ValueError("unsubscribe_mailto must be ASCII without spaces or angle brackets")
    address = uri[len("mailto:") :].partition("?")[0]
    normalize_address(address, field_name="unsubscribe_mailto")
    return uri


@dataclass(frozen=True, kw_only=True)
class EmailMessageSpec:
    """One e-mail to one recipient. Validated on construction (``ValueError`` says what is wrong).

    ``message_id_local`` is our message id (the idempotency key); it must be a dot-atom (letters,
    digits, ``-``, ``_``, ``.`` …) because it becomes the left part of ``Message-ID``.
    ``return_path`` is the envelope sender (``MAIL FROM``, later ``Return-Path``): a bounce mailbox
    you control, optionally VERP-encoded; it defaults to ``from_addr``.
    """

    from_addr: str
    to_addr: str
    subject: str
    text: str
    message_id_local: str
    from_name: str | None = None
    to_name: str | None = None
    html: str | None = None
    reply_to: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict, hash=False)  # keeps specs hashable
    marketing: bool = False
    unsubscribe_url: str | None = None
    unsubscribe_mailto: str | None = None
    return_path: str | None = None
    # Worked out once, when the spec is checked, for the writer and the SMTP envelope to reuse.
    _from: str = field(init=False, repr=False, compare=False, default="")
    _to: str = field(init=False, repr=False, compare=False, default="")
    _list_unsubscribe_value: str = field(init=False, repr=False, compare=False, default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "_from", normalize_address(self.from_addr, field_name="from_addr"))
        object.__setattr__(self, "_to", normalize_address(self.to_addr, field_name="to_addr"))
        if self.reply_to is not None:
            normalize_address(self.reply_to, field_name="reply_to")
        if self.return_path is not None:
            normalize_address(self.return_path, field_name="return_path")
        for name in ("subject", "from_name", "to_name"):
            value = getattr(self, name)
            if value is not None:
                _check_header_value(name, value)
        if not self.message_id_local or len(self.message_id_local) > 200:
            raise ValueError("message_id_local must be 1-200 characters")
        if not _LOCAL_RE.fullmatch(self.message_id_local):
            raise ValueError("message_id_local must be a dot-atom (letters, digits, -_.+= …; no spaces or @)")
        for key, value in self.headers.items():
            if not _HEADER_NAME_RE.fullmatch(key):
                raise ValueError("extra header names must be printable ASCII without ':' or spaces")
            if key.lower() in _RESERVED:
                raise ValueError(f"extra header {key!r} is set by build_mime and cannot be overridden")
            _check_header_value(f"header {key!r}", value)
        if self.marketing:
            if not self.unsubscribe_url:
                raise ValueError("marketing mail needs an https unsubscribe_url (RFC 8058 one-click)")
            object.__setattr__(self, "_list_unsubscribe_value", self._list_unsubscribe())  # validates both links

    @property
    def to_normalized(self) -> str:
        """``to_addr`` as the envelope and the ``To`` header carry it (``normalize_address``)."""
        return self._to

    def _list_unsubscribe(self) -> str:
        if self._list_unsubscribe_value:
            return self._list_unsubscribe_value
        assert self.unsubscribe_url is not None
        _check_https_url(self.unsubscribe_url)
        links = [f"<{self.unsubscribe_url}>"]
        if self.unsubscribe_mailto:
            links.append(f"<{_mailto_uri(self.unsubscribe_mailto)}>")
        value = ", ".join(links)
        if len("List-Unsubscribe: ") + len(value) > _MAX_HEADER_LINE:
            raise ValueError("unsubscribe links are too long for one header line (998 characters)")
        return value


def message_id_for(message_id_local: str, domain: str) -> str:
    """``<local@domain>``: the same inputs always give the same Message-ID (resends are recognisable)."""
    domain = domain.strip().lower()
    if not domain.isascii():
        domain = domain.encode("idna").decode("ascii")
    if not _DOMAIN_RE.fullmatch(domain):
        raise ValueError("Message-ID domain must be a host name such as mail.example.com")
    if not _LOCAL_RE.fullmatch(message_id_local):
        raise ValueError("message_id_local must be a dot-atom")
    return f"<{message_id_local}@{domain}>"


def _address(display_name: str | None, addr: str, field_name: str) -> Address:
    return Address(display_name=display_name or "", addr_spec=normalize_address(addr, field_name=field_name))


def build_mime(spec: EmailMessageSpec, domain: str, *, date: datetime | None = None) -> EmailMessage:
    """The MIME message for ``spec``; ``domain`` is the right part of its Message-ID.

    text only -> ``text/plain``; text + html -> ``multipart/alternative`` (plain first, so clients
    that prefer the last alternative they understand show the HTML). ``date`` defaults to now (UTC).
    """
    msg = EmailMessage(policy=POLICY)
    msg["From"] = _address(spec.from_name, spec.from_addr, "from_addr")
    msg["To"] = _address(spec.to_name, spec.to_addr, "to_addr")
    if spec.reply_to:
        msg["Reply-To"] = _address(None, spec.reply_to, "reply_to")
    msg["Subject"] = spec.subject
    msg["Date"] = (date or datetime.now(UTC)).astimezone(UTC)  # written as "…, 01 May 2025 12:00:00 +0000"
    msg["Message-ID"] = message_id_for(spec.message_id_local, domain)
    for key, value in spec.headers.items():
        msg[key] = value
    if spec.marketing:
        msg["List-Unsubscribe"] = spec._list_unsubscribe()
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    # Explicit quoted-printable: the default would pick 8bit for non-ASCII text.
    msg.set_content(spec.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    if spec.html is not None:
        msg.add_alternative(spec.html, subtype="html", charset="utf-8", cte="quoted-printable")
        for part in msg.iter_parts():
            del part["MIME-Version"]  # add_alternative stamps it on the new part; it belongs on top only
    return msg


def serialize(msg: EmailMessage) -> bytes:
    """The message as sent on the wire (CRLF line endings, 7-bit), before SMTP dot-stuffing."""
    return msg.as_bytes(policy=POLICY)


def envelope_sender(spec: EmailMessageSpec) -> str:
    """``MAIL FROM`` for ``spec``: ``return_path`` when set, else ``from_addr``."""
    if spec.return_path is None:
        return spec._from
    return normalize_address(spec.return_path, field_name="return_path")


def render(spec: EmailMessageSpec, domain: str, *, date: datetime | None = None) -> bytes:
    """``serialize(build_mime(spec, domain))``, written directly for the common case.

    The ``email`` package parses every header it is given back into a tree and folds it again;
    for a campaign that was half the dispatcher's CPU. When every header is short printable ASCII
    (the usual case: our addresses are ASCII by construction) the same message is written here
    with string formatting and the C quoted-printable codec; anything else (a non-ASCII subject
    or display name, long or extra headers) takes the ``email`` package's path. A property test
    checks that both read back the same.
    """
    fast = _render_simple(spec, domain, date)
    return fast if fast is not None else serialize(build_mime(spec, domain, date=date))


_SIMPLE_HEADER = re.compile(r"[ -~]{0,900}")  # printable ASCII, room left under the 998 limit
_NEEDS_QUOTES = re.compile(r'[()<>\[\]:;@\\,."]')


def _simple_name(name: str | None) -> str | None:
    """A display name written as-is (or quoted) without encoding, or None when it needs RFC 2047."""
    if not name:
        return ""
    if not _SIMPLE_HEADER.fullmatch(name) or name != name.strip() or "  " in name or "=?" in name:
        return None
    if _NEEDS_QUOTES.search(name):
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return name


def _qp(text: str) -> bytes:
    """UTF-8 quoted-printable with CRLF line ends, as the ``email`` package writes a body."""
    lines = text.encode("utf-8").splitlines()
    encoded = binascii.b2a_qp(b"\n".join(lines), quotetabs=False, istext=True, header=False)
    body = encoded.replace(b"\n", b"\r\n")
    return body + b"\r\n"


_now_header: tuple[int, str] = (0, "")


def _date_header(date: datetime | None) -> str:
    """The ``Date`` value; for "now", formatted once per second (it has one-second resolution)."""
    global _now_header
    if date is not None:
        return email_utils.format_datetime(date.astimezone(UTC))
    now = time.time()
    second = int(now)
    cached = _now_header
    if cached[0] != second:
        cached = _now_header = (second, email_utils.format_datetime(datetime.fromtimestamp(second, UTC)))
    return cached[1]


def _render_simple(spec: EmailMessageSpec, domain: str, date: datetime | None) -> bytes | None:
    from_name, to_name = _simple_name(spec.from_name), _simple_name(spec.to_name)
    if from_name is None or to_name is None or spec.headers:
        return None
    subject = spec.subject
    if len(subject) > 70 or not _SIMPLE_HEADER.fullmatch(subject) or subject != subject.strip() or "=?" in subject:
        return None  # would be folded or encoded
    from_addr, to_addr = spec._from, spec._to
    lines = [
        f"From: {from_name} <{from_addr}>" if from_name else f"From: {from_addr}",
        f"To: {to_name} <{to_addr}>" if to_name else f"To: {to_addr}",
    ]
    if spec.reply_to:
        lines.append(f"Reply-To: {normalize_address(spec.reply_to, field_name='reply_to')}")
    lines += [
        f"Subject: {subject}",
        f"Date: {_date_header(date)}",
        f"Message-ID: {message_id_for(spec.message_id_local, domain)}",
    ]
    if spec.marketing:
        lines += [f"List-Unsubscribe: {spec._list_unsubscribe()}", "List-Unsubscribe-Post: List-Unsubscribe=One-Click"]
    lines.append("MIME-Version: 1.0")
    text_part = b'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
    if spec.html is None:
        return ("\r\n".join(lines) + "\r\n").encode("ascii") + text_part + _qp(spec.text)
    boundary = f"==============={secrets.randbits(63):019d}=="
    lines.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
    header_block = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
    html_part = b'Content-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
    mark = f"--{boundary}\r\n".encode("ascii")
    return (
        # The CRLF before each delimiter belongs to the delimiter, not to the part's last line.
        header_block + mark + text_part + _qp(spec.text) + b"\r\n" + mark + html_part + _qp(spec.html) + b"\r\n"
        + f"--{boundary}--\r\n".encode("ascii")
    )  # fmt: skip
