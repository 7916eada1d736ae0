"""The ``nats://`` transport: the bus over NATS JetStream (the ``[nats]`` extra).

``_subjects`` maps topics and patterns onto subjects, ``_options`` reads settings from
keyword arguments and the URL, ``_consumer`` runs one JetStream consumer, and
``_transport`` ties them to the :class:`~pepperpy.event.Transport` contract.
"""

from __future__ import annotations

from ._options import NatsOptions
from ._transport import NatsTransport

__all__ = ["NatsOptions", "NatsTransport"]
