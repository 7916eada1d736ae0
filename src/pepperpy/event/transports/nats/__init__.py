"""The ``nats://`` transport: the bus over NATS JetStream (the ``[nats]`` extra).

``_subjects`` maps topics and patterns onto subjects, ``_options`` reads settings from
keyword arguments and the URL, ``_stream`` creates and checks the JetStream stream,
``_consumer`` runs one JetStream consumer, ``_outcome`` says whether a failed publish
stored its event, ``_outage`` logs a lost connection, ``_recovery`` replaces a client the
server closed and restores what a restarted server lost, ``_client`` works around
nats-py's client, ``_connection`` connects it and handles what it reports, ``_subscribe``
sets subscriptions up and down, and ``_transport`` ties them to the
:class:`~pepperpy.event.Transport` contract.
"""

from __future__ import annotations

from ._options import NatsOptions
from ._transport import NatsTransport

__all__ = ["NatsOptions", "NatsTransport"]
