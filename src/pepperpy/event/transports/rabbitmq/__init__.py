"""The RabbitMQ transport: one topic exchange, quorum queues for groups, publisher confirms.

How the bus's semantics map onto AMQP 0-9-1 (the full story is in
``docs/transport-rabbitmq.md``):

* Every event is published, as a persistent CloudEvents JSON message, to one durable
  *topic* exchange with its topic as the routing key; ``publish`` returns once the broker
  confirmed it (publisher confirms), i.e. once every queue it was routed to has it.
* Our patterns are AMQP binding keys unchanged: ``*`` is one word and ``#`` zero or more
  words in both languages (``#.failed`` matches ``failed`` on the broker too).
* An ungrouped subscription owns a non-durable queue that expires (``x-expires``) a
  minute after its consumer went away: it survives a reconnect, and leaves no backlog
  behind once the process has exited.
* A group owns ``partitions`` durable quorum queues, each with *single active consumer*.
  A publisher stamps each message with a lane (hash of its key, else of its id); the
  group's headers exchange sends each lane to one partition, so one key always lands in
  one queue and is consumed by one process at a time, in order. Members of a group
  balance the active partitions between them (see :class:`_Group`).
* Messages are acknowledged only after ``sub.deliver`` returned; a consumer that dies
  leaves them unacknowledged and the broker redelivers them. A message redelivered
  ``max_deliveries`` times (its consumer keeps crashing) is moved to ``deadletter.<topic>``.
"""

from ._transport import RabbitMQTransport

__all__ = ["RabbitMQTransport"]
