"""``smtp://`` / ``smtps://``: email over SMTP with aiosmtplib (text + optional HTML).

URL form: ``smtp://[user:pass@]host[:port]?from=ADDR[&reply_to=ADDR][&starttls=true]
[&timeout=SECONDS][&verify=false]``; ``smtps://`` connects with implicit TLS (port 465).
Without ``starttls`` the connection upgrades when the server offers STARTTLS
(aiosmtplib's opportunistic default); ``starttls=true`` requires it, ``false`` forbids it.
Query values are percent-decoded only: ``+`` is a plus sign (``from=alerts+ops@example.com``).
"""

from __future__ import annotations

import asyncio
import encodings.idna
import hashlib
import ipaddress
import re
import ssl
import threading
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, parseaddr
from typing import Any
from urllib.parse import unquote

from ..._deps import require
from ..._errors import ConfigurationError, NotificationError, RecipientError
from ..._redact import redact_url
from ..._seconds import check_seconds
from .._models import Notification, one_line
from .._urls import query_options, split_url
from .base import Channel

__all__ = ["EmailChannel"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class EmailChannel(Channel):
    """Sends each notification as one email through an SMTP server.

    ``starttls``: ``None`` upgrades when offered, ``True`` requires STARTTLS, ``False``
    never upgrades. ``tls=True`` is implicit TLS from the first byte (``smtps``).
    ``tls_context`` customises certificate checks (e.g. a private CA); ``validate_certs``
    False disables them (only for test servers). One connection is opened per message:
    notification traffic is bursty and rare enough that pooling buys little and stale
    pooled SMTP sessions cost a failed try.

    A non-ASCII domain (of the recipient, the sender or reply_to) is sent IDNA-encoded, which
    every server takes; a non-ASCII local part needs a server offering SMTPUTF8, and one
    that does not is a permanent failure (:class:`RecipientError` for the recipient,
    :class:`ConfigurationError` for the sender), found before anything is written.
    A server lacking STARTTLS (``starttls=True``) or AUTH (with a username) is a
    permanent :class:`ConfigurationError` naming the server and what it lacks; so is a
    server certificate that fails verification (STARTTLS or ``tls``): every try would
    fail the same way, so it is not retried.

    ``sender`` and ``reply_to`` are configuration, written into every message's headers,
    so one that is not exactly one address (``user@domain`` or ``Name <user@domain>``,
    a name with commas quoted), or that contains a line break or other control
    character, is a :class:`ConfigurationError` here rather than a broken header block
    or envelope later. Subjects are flattened to one line, without control characters;
    a NUL in the text or HTML body (which no message may carry) is dropped.
    :meth:`close` cuts off the messages being sent at that moment (on every event loop);
    the channel stays usable.
    """

    kind = "email"
    paces_writes = True

    def __init__(
        self,
        host: str = "localhost",
        port: int | None = None,
        *,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        reply_to: str | None = None,
        starttls: bool | None = None,
        tls: bool = False,
        timeout: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
        validate_certs: bool = True,
    ) -> None:
        # checked here as the URL form checks them: a str "true" for starttls (read
        # from a config file) was neither True nor None to aiosmtplib, so it turned
        # STARTTLS off, even the upgrade a server offers; a bad port or a host with a
        # port in it failed every try, retried
        _check_server(host, port)
        for flag, value in (
            ("starttls", starttls),
            ("tls", tls),
            ("validate_certs", validate_certs),
        ):
            if not isinstance(value, bool) and not (flag == "starttls" and value is None):
                allowed = "True, False or None" if flag == "starttls" else "True or False"
                raise TypeError(f"EmailChannel {flag} must be {allowed}, got {value!r}")
        if tls_context is not None and not isinstance(tls_context, ssl.SSLContext):
            raise TypeError(
                f"EmailChannel tls_context must be an ssl.SSLContext, got {tls_context!r}"
            )
        for name, text in (("username", username), ("password", password)):
            if text is not None and not isinstance(text, str):
                raise TypeError(
                    f"EmailChannel {name} must be a str or None, got {type(text).__name__}"
                )
        if not sender or not isinstance(sender, str):
            raise ConfigurationError("EmailChannel needs a sender address (from=)")
        _check_header_address(sender, "sender (from=)")
        _one_configured(sender, "sender (from=)")
        _ascii_address(
            sender, "sender (from=)"
        )  # a domain that cannot be IDNA-encoded is refused here
        if reply_to is not None:
            _check_header_address(reply_to, "reply_to")
            _one_configured(reply_to, "reply_to")
            _ascii_address(reply_to, "reply_to")  # as for the sender
        if tls and starttls:
            raise ConfigurationError("choose implicit TLS (tls/smtps) or STARTTLS, not both")
        timeout = check_seconds(timeout, "timeout")
        # a channel that could never send is refused now, not at its first message
        require("aiosmtplib", extra="email", feature="the email channel")
        self.host = host
        self.port = port
        self.sender = sender
        self.username = username
        self.password = password
        self.reply_to = reply_to
        self.starttls = starttls
        self.tls = tls
        self.timeout = timeout
        self.tls_context = tls_context
        self.validate_certs = validate_certs
        self._sending: set[_Sending] = set()
        self._sending_lock = threading.Lock()  # loops in other threads send too

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> EmailChannel:
        """Build a channel from an ``smtp://`` or ``smtps://`` URL (keywords override it)."""
        parts = split_url(url, "SMTP URL", redact_url(url))
        if parts.scheme not in ("smtp", "smtps"):
            raise ConfigurationError(f"not an smtp:// or smtps:// URL: {redact_url(url)!r}")
        port = parts.port
        query = query_options(parts.query)
        options: dict[str, Any] = {
            "host": parts.hostname or "localhost",
            "port": port,
            "username": unquote(parts.username) if parts.username else None,
            "password": unquote(parts.password) if parts.password else None,
            "tls": parts.scheme == "smtps",
        }
        sender = query.pop("from", None) or query.pop("sender", None)
        if sender is None and options["username"] and "@" in options["username"]:
            sender = options["username"]
        options["sender"] = sender
        if "reply_to" in query or "reply-to" in query:
            options["reply_to"] = query.pop("reply_to", None) or query.pop("reply-to")
        if "starttls" in query:
            options["starttls"] = _flag(query.pop("starttls"), "starttls")
        if "verify" in query:
            options["validate_certs"] = _flag(query.pop("verify"), "verify")
        if "timeout" in query:
            raw = query.pop("timeout")
            try:
                options["timeout"] = float(raw)
            except ValueError as exc:
                raise ConfigurationError(f"timeout must be a number, got {raw!r}") from exc
        if query:
            raise ConfigurationError(f"unknown smtp URL option(s): {sorted(query)}")
        options.update(overrides)
        return cls(**options)

    def build_message(self, notification: Notification) -> EmailMessage:
        """The MIME message for ``notification`` (text, plus an HTML alternative)."""
        to = _single_address(notification.recipient)
        _check_header_address(self.sender, "sender (from=)")
        if self.reply_to:
            _check_header_address(self.reply_to, "reply_to")
        message = EmailMessage()
        try:
            message["From"] = _ascii_address(self.sender, "sender (from=)")
            message["To"] = to
            if self.reply_to:
                message["Reply-To"] = _ascii_address(self.reply_to, "reply_to")
            message["Subject"] = _CONTROL.sub("", one_line(notification.subject or ""))
        except (ValueError, TypeError) as exc:
            raise RecipientError(f"email channel: bad header value: {exc}") from exc
        message["Date"] = format_datetime(notification.created_at)
        message["Message-ID"] = _message_id(
            notification, _domain(_ascii_address(self.sender, "sender (from=)"))
        )
        message["X-Notification-Id"] = notification.id
        # no message may carry a NUL (RFC 5322 3.5: a body's text is %d1-127 less CR and
        # LF; RFC 2045 2.7/2.8: nor 7bit or 8bit data); it shows as nothing: dropped
        message.set_content(notification.body.replace("\x00", ""))
        if notification.html is not None:
            message.add_alternative(notification.html.replace("\x00", ""), subtype="html")
        return message

    async def send(self, notification: Notification) -> None:
        aiosmtplib = require("aiosmtplib", extra="email", feature="the email channel")
        message = self.build_message(notification)
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            start_tls=self.starttls,
            use_tls=self.tls,
            timeout=self.timeout,
            tls_context=self.tls_context,
            validate_certs=self.validate_certs,
        )
        sending = _Sending(asyncio.get_running_loop(), client)
        with self._sending_lock:
            self._sending.add(sending)
        sock = None
        try:
            try:
                await self._connect(client, aiosmtplib)
                sock = client.get_transport_info("socket")
                await _greet(client, aiosmtplib)
                refusal = self._needs_smtputf8(message, client)
                if refusal is not None:
                    await _quit(client, aiosmtplib)
                    raise refusal
                await self.ready_to_write()  # the rate limit's slot, once the session is ready
                if sending.cut:
                    raise aiosmtplib.SMTPServerDisconnected("the channel was closed")
                await client.send_message(message)
                # the server answered 250 to the message: it is delivered, whatever
                # happens during QUIT (a cut-off, a dropped connection)
                self.mark_accepted()
            except aiosmtplib.SMTPResponseException:
                await _quit(client, aiosmtplib)  # the server said no: end the session politely
                raise
            except BaseException:
                client.close()  # cut off, cancelled or broken: drop the connection, no QUIT
                raise
            await _quit(client, aiosmtplib)
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise NotificationError(
                f"email to {notification.recipient} via {self.host}:{self.port or 'default'} "
                f"failed: {exc}"
            ) from exc
        finally:
            with self._sending_lock:
                self._sending.discard(sending)
            if sock is not None:
                await _socket_closed(sock)

    async def _connect(self, client: Any, aiosmtplib: Any) -> None:
        """Connect (STARTTLS and login included); a server lacking the STARTTLS or AUTH
        extension this channel needs is a permanent ConfigurationError naming both."""
        try:
            await client.connect()
        except (ssl.SSLCertVerificationError, aiosmtplib.SMTPConnectError) as exc:
            # STARTTLS raises the ssl error itself; implicit TLS wraps it
            untrusted = _cert_error(exc)
            if untrusted is None:
                raise
            raise self._untrusted(untrusted) from exc
        except aiosmtplib.SMTPResponseException:
            raise
        except aiosmtplib.SMTPException as exc:
            text = str(exc)
            if "not supported" not in text:
                raise
            if "STARTTLS" in text and self.starttls:
                lacking = "STARTTLS, which starttls=true requires"
            elif "AUTH" in text and self.username is not None:
                lacking = "AUTH, which logging in with the configured username needs"
            else:
                raise
            raise ConfigurationError(
                f"EmailChannel: the server {self.host}:{self.port or 'default'} does not "
                f"offer {lacking} ({text})"
            ) from exc

    def _untrusted(self, exc: ssl.SSLCertVerificationError) -> ConfigurationError:
        """The permanent failure of a server whose certificate this channel does not
        trust: every try would fail the same way, so it is not retried."""
        how = "STARTTLS" if not self.tls else "the TLS connection (smtps)"
        reason = exc.verify_message or exc.reason or str(exc)
        return ConfigurationError(
            f"EmailChannel: the certificate of the server {self.host}:{self.port or 'default'} "
            f"failed verification during {how} ({reason}); retrying will not help. Make "
            "it trusted: give the server a certificate from a CA this machine trusts, for "
            "its name, or pass tls_context=ssl.create_default_context(cafile=...) with "
            "the CA that signed it (validate_certs=False or ?verify=false turns checks "
            "off: test servers only)"
        )

    def _needs_smtputf8(self, message: EmailMessage, client: Any) -> Exception | None:
        """The permanent failure of a message whose envelope has a non-ASCII address
        (a local part: domains are sent IDNA-encoded) when the server does not offer
        SMTPUTF8, which such an address needs; None when it can be sent."""
        senders, recipients = (
            "".join(address.addr_spec for address in message[header].addresses)
            for header in ("From", "To")
        )
        if (senders + recipients).isascii() or client.supports_extension("smtputf8"):
            return None
        server = f"{self.host}:{self.port or 'default'}"
        if not recipients.isascii():
            return RecipientError(
                f"email channel: {recipients!r} has non-ASCII characters before the @, which "
                f"need the SMTPUTF8 extension, and the server {server} does not offer it"
            )
        return ConfigurationError(
            f"EmailChannel sender {senders!r} has non-ASCII characters before the @, which "
            f"need the SMTPUTF8 extension, and the server {server} does not offer it"
        )

    def is_retryable(self, error: Exception) -> bool:
        """Transient failures (network, 4xx replies) are retried; 5xx replies are not."""
        if not super().is_retryable(error):
            return False
        cause = error.__cause__
        code = getattr(cause, "code", None)
        if isinstance(code, int) and 500 <= code < 600:
            return False
        recipients = getattr(cause, "recipients", None)
        if recipients:  # SMTPRecipientsRefused: retry only if some refusal was temporary
            return any(400 <= getattr(r, "code", 0) < 500 for r in recipients)
        return True

    async def close(self) -> None:
        """Cut off the messages being sent right now: their connections are dropped, so
        their tries fail. Messages sent later open new connections as usual."""
        here = asyncio.get_running_loop()
        with self._sending_lock:
            sending = list(self._sending)
        for each in sending:
            each.cut = True
            if each.loop is here:
                each.client.close()
            else:
                try:
                    each.loop.call_soon_threadsafe(each.client.close)
                except RuntimeError:  # that loop is closed: nothing runs there any more
                    pass

    def __repr__(self) -> str:
        scheme = "smtps" if self.tls else "smtp"
        return f"EmailChannel({scheme}://{self.host}:{self.port or 'default'}, from={self.sender})"


class _Sending:
    """A message being sent on ``loop`` through ``client``; ``cut`` once :meth:`close` ran."""

    __slots__ = ("client", "cut", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, client: Any) -> None:
        self.loop = loop
        self.client = client
        self.cut = False


def _cert_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure ``exc`` is, or was caused by, if any."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        current = current.__cause__ or current.__context__
        seen += 1
    return None


async def _greet(client: Any, aiosmtplib: Any) -> None:
    """EHLO (or HELO) now, unless connecting did (STARTTLS, login), so the session is ready."""
    if client.is_ehlo_or_helo_needed:
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            if not client.is_connected:
                raise
            await client.helo()


async def _quit(client: Any, aiosmtplib: Any) -> None:
    """End the session with QUIT, then close the connection whatever the answer."""
    try:
        await client.quit()
    except (
        aiosmtplib.SMTPServerDisconnected,
        aiosmtplib.SMTPResponseException,
        aiosmtplib.SMTPTimeoutError,
    ):
        pass
    finally:
        client.close()


async def _socket_closed(sock: Any, limit: float = 1.0) -> None:
    """Wait (briefly) until the connection's socket is really closed.

    Closing a TLS transport finishes asynchronously (the TLS shutdown exchange); a
    caller that stops its event loop right after ``send`` would otherwise leak the
    socket. Plain connections are closed by the time we look.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    spins = 0
    while sock.fileno() != -1 and loop.time() < deadline:  # noqa: ASYNC110 - no close hook
        # a plain socket closes within a loop iteration or two; TLS needs a round trip
        await asyncio.sleep(0 if spins < 4 else 0.002)
        spins += 1


def _check_header_address(value: str, what: str) -> None:
    """Refuse a configured address that would break (or add to) the header block."""
    if not isinstance(value, str) or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ConfigurationError(
            f"EmailChannel {what} must be one line without control characters, got {value!r}"
        )


def _one_configured(value: str, what: str) -> None:
    """Refuse a configured address (``what``: the sender, reply_to) that is not exactly
    one ``user@domain`` (``Name <user@domain>``), as a recipient would be: ``Acme, Inc.
    <a@b.com>`` went out as two From addresses and ``MAIL FROM:<Acme>``, ``alerts`` or
    ``a@`` failed at every send."""
    try:
        _single_address(value)
    except RecipientError as exc:
        problem = str(exc).removeprefix("email channel: ")
        raise ConfigurationError(f"EmailChannel {what} {problem}") from exc


def _check_server(host: object, port: object) -> None:
    """Refuse a host or port no connection could use (``TypeError`` for a wrong type,
    ``ConfigurationError`` for a bad value), as :func:`split_url` refuses them in a URL."""
    if not isinstance(host, str):
        raise TypeError(f"EmailChannel host must be a str, got {host!r}")
    if not host or _CONTROL.search(host) or any(c.isspace() for c in host):
        raise ConfigurationError(
            f"EmailChannel host must be a host name or an IP address, got {host!r}"
        )
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigurationError(
                f"EmailChannel host {host!r} is no host name or IP address (an IPv6 address "
                "goes without brackets); give the port as port=, not in the host"
            ) from None
    if port is None:
        return
    if not isinstance(port, int) or isinstance(port, bool):
        raise TypeError(f"EmailChannel port must be an int or None, got {port!r}")
    if not 1 <= port <= 65535:
        raise ConfigurationError(
            f"EmailChannel port must be a number from 1 to 65535 (or None for the "
            f"default), got {port}"
        )


def _flag(raw: str, name: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(f"{name} must be true or false, got {raw!r}")


#: control characters (C0, DEL, C1) left in a subject once its whitespace is flattened:
#: not header text (RFC 5322), and a NUL or an escape sequence reaches mail clients
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: characters that may not appear in an unquoted display name (RFC 5322 specials,
#: except ``.`` which real names use): group syntax, comments, a second address
_SPECIALS = frozenset('()<>[]:;@\\,"')
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
#: a local part with quoted strings: dot-separated atoms and quoted strings
_LOCAL_WORD = r'(?:[^\s."()<>\[\]:;@\\,]+|"(?:[^"\\]|\\.)*")'
_QUOTED_LOCAL = re.compile(rf"{_LOCAL_WORD}(?:\.{_LOCAL_WORD})*")
_WORD = re.compile(_LOCAL_WORD)
#: an empty quoted word in a local part (``""@b.com``, ``a.""@b.com``)
_EMPTY_WORD = re.compile(r'(?:^|\.)""(?:\.|$)')


def _unquoted(word: str) -> str:
    """A local part's word as it reads: a quoted string without its quotes and escapes."""
    if not word.startswith('"'):
        return word
    return re.sub(r"\\(.)", r"\1", word[1:-1])


def _single_address(recipient: str | None) -> Address:
    """``recipient`` as exactly one address (``a@b`` or ``Name <a@b>``), else RecipientError.

    The address comes from user data, so anything that could name a second recipient
    (a list, group syntax, a header break) is refused rather than cleaned up, and the
    To: header is rebuilt from the parsed address, never copied from the input.
    """
    if not recipient or not isinstance(recipient, str):
        raise RecipientError(f"email channel: {recipient!r} is not an email address")
    name, addr = _parse_one(recipient)
    local, _, domain = addr.rpartition("@")  # a quoted local part may hold an @
    try:
        domain = _idna(domain)
    except ValueError as exc:
        raise RecipientError(
            f"email channel: {recipient!r} is not an email address: {exc}"
        ) from exc
    try:
        if local.isascii():
            return Address(display_name=name, addr_spec=f"{local}@{domain}")
        # the standard library refuses a non-ASCII local part outright; it is valid
        # (RFC 6531) for a server offering SMTPUTF8, which send() checks
        if '"' in local:  # quoted strings may hold UTF-8 too (RFC 6531): unquoted here
            words = _WORD.findall(local)  # _parse_one checked it is nothing else
            local = ".".join(_unquoted(word) for word in words)
            if any("\x80" <= ch <= "\x9f" for ch in local):
                raise ValueError("its local part (before the @) has a control character")
        elif not _UTF8_LOCAL.fullmatch(local):
            raise ValueError("its non-ASCII local part (before the @) is not dot-separated words")
        return Address(display_name=name, username=local, domain=domain)
    except (ValueError, IndexError, HeaderParseError) as exc:
        raise RecipientError(
            f"email channel: {recipient!r} is not an email address: {exc}"
        ) from exc


#: a local part as dot-separated words of ASCII atext and non-ASCII characters (not
#: the C1 controls)
_UTF8_LOCAL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u00a0-\U0010ffff]+"
    r"(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u00a0-\U0010ffff]+)*"
)
#: an IDNA-encoded domain: letters, digits, hyphens (and the underscores some use)
_ASCII_DOMAIN = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?")


def _idna(domain: str) -> str:
    """``domain`` as every SMTP server takes it: a non-ASCII one IDNA-encoded
    (``exämple.com`` is ``xn--exmple-cua.com``), ValueError when it cannot be."""
    if domain.isascii():
        return domain
    try:
        encoded = encodings.idna.Codec().encode(domain)[0].decode("ascii")
    except UnicodeError as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ValueError(f"its domain {domain!r} is not a valid domain name ({reason})") from exc
    if not _ASCII_DOMAIN.fullmatch(encoded):  # a character that NFKC maps to "@", ",", ...
        raise ValueError(f"its domain {domain!r} is not a valid domain name ({encoded!r})")
    return encoded


def _ascii_address(value: str, what: str) -> str | Address:
    """A configured address (``what``: the sender, reply_to) for its header: as
    configured, unless its domain is not ASCII, then rebuilt with the domain
    IDNA-encoded (ConfigurationError naming ``what`` if it cannot be)."""
    name, addr = parseaddr(value)
    local, at, domain = addr.rpartition("@")
    if not at or domain.isascii():
        return value
    try:
        domain = _idna(domain)
        if '"' in local:  # a quoted local part ("no reply"@...): Address unquotes it
            return Address(display_name=name, addr_spec=f"{local}@{domain}")
        return Address(display_name=name, username=local, domain=domain)
    except (ValueError, IndexError, HeaderParseError) as exc:
        raise ConfigurationError(f"EmailChannel {what} {value!r}: {exc}") from exc


def _parse_one(text: str) -> tuple[str, str]:
    """The (display name, address) of ``text`` when it is exactly one address."""

    def refuse(problem: str) -> RecipientError:
        return RecipientError(f"email channel: {text!r} is not one email address: {problem}")

    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise refuse("it contains a line break or control character")
    pairs = getaddresses([text])
    if len(pairs) != 1:
        raise refuse(f"it parses as {len(pairs)} addresses")
    name, addr = pairs[0]
    local, at, domain = addr.rpartition("@")
    # outside its quoted strings ("john doe"@b.com, "a@b"@b.com) a local part has
    # neither spaces nor an @
    bare = _QUOTED.sub('""', local)
    if not local or not at or not domain or "@" in bare or any(c.isspace() for c in bare + domain):
        raise refuse("it has no user@domain part")
    if '"' in bare and not _QUOTED_LOCAL.fullmatch(local):
        raise refuse("its local part (before the @) is not dot-separated words or quoted strings")
    if _EMPTY_WORD.search(local) or not local.replace('"', "").replace(".", "").strip():
        raise refuse("its local part (before the @) is empty")
    stripped = text.strip()
    if stripped == addr:
        return name, addr
    if not stripped.endswith(f"<{addr}>"):
        raise refuse("the parsed address does not match the input")
    display = stripped[: -len(addr) - 2].strip()
    if display and not _QUOTED.fullmatch(display) and _SPECIALS & set(display):
        raise refuse('the name has special characters (write "Name, Quoted" <user@domain>)')
    return name, addr


def _message_id(notification: Notification, domain: str | None) -> str:
    """The Message-ID of ``notification``: the same on every try (a retry after an answer
    that never came is a copy receivers can recognise), from its id. Not from its
    idempotency key: a key used again once the store forgot it (a "one reset mail per
    day" key) is a new message, which receivers that drop repeated Message-IDs would hide."""
    unique = notification.id
    if not _ID_LEFT.fullmatch(unique):  # an id given by the application: hashed
        unique = hashlib.sha256(unique.encode()).hexdigest()[:32]
    return f"<{unique}@{domain or 'localhost'}>"


#: what may stand left of the @ in a Message-ID as it is (a dot-atom's characters)
_ID_LEFT = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


def _domain(sender: str | Address) -> str | None:
    if isinstance(sender, Address):
        return sender.domain or None
    address = parseaddr(sender)[1]
    return address.rpartition("@")[2] or None
