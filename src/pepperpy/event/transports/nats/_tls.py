"""The NATS transport's TLS settings: the ``tls=`` context, or one made from the
``tls_ca``, ``tls_cert`` and ``tls_key`` options (files), and ``tls_hostname``.

They are checked, and the context made, when the transport is made: a file that is
missing, unreadable or not PEM fails there, naming the option and the path (never what
the file holds), not at the first connection.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from ..._errors import ConfigurationError

if TYPE_CHECKING:
    from ._options import NatsOptions

__all__ = ["TlsSettings", "tls_settings"]

#: the options that make the transport's own context, which ``tls=`` replaces
FILE_OPTIONS = ("tls_ca", "tls_cert", "tls_key")


@dataclass(frozen=True)
class TlsSettings:
    """What nats-py is given for TLS; ``required``: every server must use TLS."""

    context: ssl.SSLContext | None = None
    hostname: str | None = None

    @property
    def required(self) -> bool:
        """Whether TLS settings were given: a server that does not require TLS is then
        refused (nats-py upgrades only when the server asks), as with a ``tls://`` URL."""
        return self.context is not None or self.hostname is not None

    def connect_options(self) -> dict[str, Any]:
        """The keyword arguments of nats-py's ``connect()`` for these settings."""
        options: dict[str, Any] = {}
        if self.context is not None:
            options["tls"] = self.context
        if self.hostname is not None:
            options["tls_hostname"] = self.hostname
        return options


def tls_settings(options: NatsOptions, tls: object) -> TlsSettings:
    """The TLS settings of ``options`` and the ``tls=`` keyword (``None``: not given).

    Raises :class:`TypeError` for a ``tls`` that is no :class:`ssl.SSLContext`, and
    :class:`ConfigurationError` for ``tls`` given with a file option, ``tls_key``
    without ``tls_cert``, or a file that cannot be read or used.
    """
    if tls is not None and not isinstance(tls, ssl.SSLContext):
        raise TypeError(f"tls must be an ssl.SSLContext, got {type(tls).__name__}")
    files = [name for name in FILE_OPTIONS if getattr(options, name) is not None]
    if tls is not None and files:
        raise ConfigurationError(
            f"tls (an ssl.SSLContext) and {', '.join(files)} were both given: load the "
            "CA and the client certificate into the context, or give the files only"
        )
    if options.tls_key is not None and options.tls_cert is None:
        raise ConfigurationError(
            "tls_key was given without tls_cert: give the client certificate's file as "
            "tls_cert (tls_key is its private key)"
        )
    context = tls if tls is not None else _context(options) if files else None
    return TlsSettings(context, options.tls_hostname)


def _context(options: NatsOptions) -> ssl.SSLContext:
    """A client context trusting ``tls_ca`` (else the system's CAs) and presenting
    ``tls_cert`` with ``tls_key`` (if given)."""
    for name in FILE_OPTIONS:
        path = getattr(options, name)
        if path is not None:
            _readable(name, path)
    try:
        context = ssl.create_default_context(cafile=options.tls_ca)
    except (ssl.SSLError, ValueError):
        raise ConfigurationError(
            f"tls_ca {options.tls_ca!r} holds no PEM certificate: give the file of the CA "
            "certificate(s) that signed the server's"
        ) from None
    if options.tls_cert is not None:
        try:
            context.load_cert_chain(options.tls_cert, options.tls_key, password=_encrypted)
        except ConfigurationError:
            raise
        except (ssl.SSLError, ValueError) as exc:
            key = f" and tls_key {options.tls_key!r}" if options.tls_key is not None else ""
            why = getattr(exc, "reason", None) or "OpenSSL cannot load them"
            raise ConfigurationError(
                f"tls_cert {options.tls_cert!r}{key}: not a PEM client certificate and its "
                f"private key ({why}); tls_key is needed unless tls_cert holds the key too"
            ) from None
    return context


def _readable(name: str, path: str) -> None:
    """Refuse a file option whose file cannot be opened (named, with the reason)."""
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ConfigurationError(
            f"{name}: cannot read {path!r} ({exc.strerror or type(exc).__name__})"
        ) from None


def _encrypted() -> NoReturn:
    """The key's password callback: OpenSSL would prompt on the terminal for one."""
    raise ConfigurationError(
        "tls_key is encrypted (it needs a password): give the transport an "
        "ssl.SSLContext as tls=, with the certificate loaded with its password"
    )
