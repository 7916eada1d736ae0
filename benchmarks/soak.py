"""A long run under random network faults: what breaks over time.

    python -m benchmarks.soak --minutes 90 [--components redis,nats,rabbitmq,postgres,sqlite]
                              [--out report.json] [--seed N]

Run from the repository root (it imports ``tests.faultproxy``) with the services of
``tests/conftest.py`` on loopback. Per component (see ``docs/soak.md``):

* ``redis``, ``nats``, ``rabbitmq``: an EventBus producer publishing per-key sequence
  numbers, two members of one group and one ungrouped subscriber, each bus through a
  fault proxy of its own (``benchmarks/_soak_bus.py``);
* ``postgres`` (through a fault proxy) and ``sqlite``: concurrent appenders with
  ``expected_version``, a ``subscribe()`` follower and a ``Projection.follow()``
  (``benchmarks/_soak_store.py``).

Every 20-90 s one proxied component gets a fault (reset, partition of 1-15 s, or refused
connections for 2-6 s). A line of progress every 60 s; at the end the producers stop,
the subscribers drain, everything is compared and the report is printed (and written as
JSON with ``--out``). Every name the soak makes contains ``soak_``; all of it is deleted
at the end, also after Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import pathlib
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from tests.faultproxy import FaultProxy

from benchmarks._soak_bus import BusSoak
from benchmarks._soak_store import StoreSoak
from benchmarks._soak_watch import FaultScheduler, LagTicker, LogCounter, Sampler, trend

COMPONENTS = ("redis", "nats", "rabbitmq", "postgres", "sqlite")
REDIS = "redis://127.0.0.1:6379/0"
NATS = "nats://127.0.0.1:4222"
AMQP = "amqp://guest:guest@127.0.0.1:5672/"
POSTGRES = "postgresql://postgres@127.0.0.1:5432"
BUS_RATE = {"redis": 80.0, "nats": 80.0, "rabbitmq": 60.0}  # events/s per component
STORE_RATE = 20.0  # appends/s per store
DRAIN_LIMIT = 180.0  # seconds the subscribers get to catch up at the end
DRAIN_QUIET = 60.0  # ... and the longest they may make no progress

PROMISES = {
    "redis": (
        "group: at-least-once, a key's first deliveries in publish order; ungrouped: resumes "
        "at the last id read, nothing missed unless trimmed (logged), nothing handed out twice, "
        "per-key order"
    ),
    "nats": (
        "group: at-least-once, per-key order (one event in flight per lane); ungrouped: nothing "
        "lost when back within inactive_threshold (30 s; else a warning names the consumer), "
        "per-key order only while nothing is redelivered"
    ),
    "rabbitmq": (
        "group: at-least-once, a key handled by one process at a time in publish order unless "
        "a handler outlives its connection by more than handover_grace (5 s); ungrouped: a queue "
        "of its own with x-expires, kept across reconnects: nothing lost; a redelivery after a "
        "reset may come after later events of its key"
    ),
}

log = logging.getLogger("soak")


# -- components --------------------------------------------------------------------


def redis_soak(token: str, began: float) -> BusSoak:
    from pepperpy.event import RedisTransport

    namespace = f"soak_{token}"

    async def cleanup() -> list[str]:
        import redis.asyncio as aioredis

        client = aioredis.from_url(REDIS)
        try:
            keys = [key async for key in client.scan_iter(match=f"{namespace}:*", count=500)]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()
        return []

    return BusSoak(
        "redis",
        lambda port: RedisTransport(
            f"redis://127.0.0.1:{port}/0", namespace=namespace, partitions=8
        ),
        6379,
        cleanup,
        BUS_RATE["redis"],
        PROMISES["redis"],
        began,
    )


def nats_soak(token: str, began: float) -> BusSoak:
    from pepperpy.event import NatsTransport

    stream, prefix = f"SOAK_{token}", f"soak_{token}"

    async def cleanup() -> list[str]:
        await NatsTransport(NATS, stream=stream, prefix=prefix).delete_stream()
        return []

    return BusSoak(
        "nats",
        lambda port: NatsTransport(
            f"nats://127.0.0.1:{port}", stream=stream, prefix=prefix, partitions=8
        ),
        4222,
        cleanup,
        BUS_RATE["nats"],
        PROMISES["nats"],
        began,
    )


def rabbitmq_soak(token: str, began: float) -> BusSoak:
    from pepperpy.event import RabbitMQTransport

    exchange = f"soak_{token}"
    made: list[RabbitMQTransport] = []

    def make(port: int) -> RabbitMQTransport:
        transport = RabbitMQTransport(
            f"amqp://guest:guest@127.0.0.1:{port}/?heartbeat=5&exchange={exchange}",
            partitions=4,
        )
        made.append(transport)
        return transport

    async def cleanup() -> list[str]:
        problems: list[str] = []
        for transport in made:
            try:
                await transport.delete_topology()
            except Exception as exc:
                problems.append(f"rabbitmq delete_topology: {type(exc).__name__}: {exc}")
        return problems + await sweep_rabbitmq(exchange)

    return BusSoak(
        "rabbitmq", make, 5672, cleanup, BUS_RATE["rabbitmq"], PROMISES["rabbitmq"], began
    )


async def rabbitmqctl(*args: str) -> list[str]:
    """Names rabbitmqctl lists (empty when it is not available)."""
    if shutil.which("rabbitmqctl") is None:
        return []
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl",
        *args,
        "name",
        "-q",
        "--no-table-headers",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await process.communicate()
    return [line.strip() for line in out.decode().splitlines() if line.strip()]


async def sweep_rabbitmq(exchange: str) -> list[str]:
    """Delete queues and exchanges named after ``exchange`` that are still there (the
    presence queue and release marks expire by themselves, but not at once)."""
    import aio_pika

    queues = [q for q in await rabbitmqctl("list_queues") if q.startswith(exchange)]
    exchanges = [e for e in await rabbitmqctl("list_exchanges") if e.startswith(exchange)]
    if not queues and not exchanges:
        return []
    connection = await aio_pika.connect(AMQP)
    async with connection:
        channel = await connection.channel()
        for queue in queues:
            await channel.queue_delete(queue)
        for name in exchanges:
            await channel.exchange_delete(name)
    return []


async def pg_admin(sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(f"{POSTGRES}/postgres")
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def postgres_soak(token: str, rng: random.Random) -> StoreSoak:
    database = f"soak_{token}"
    await pg_admin(f'CREATE DATABASE "{database}"')

    def url(port: int | None) -> str:
        assert port is not None
        return (
            f"postgresql://postgres@127.0.0.1:{port}/{database}"
            "?sslmode=disable&command_timeout=5&connect_timeout=3"
        )

    async def cleanup() -> list[str]:
        await pg_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        return []

    return StoreSoak(
        "postgres",
        url,
        f"{POSTGRES}/{database}",
        cleanup,
        STORE_RATE,
        FaultProxy(5432),
        rng,
    )


def sqlite_soak(rng: random.Random) -> StoreSoak:
    folder = pathlib.Path(tempfile.mkdtemp(prefix="soak_"))
    path = f"sqlite:///{folder / 'events.db'}"

    async def cleanup() -> list[str]:
        shutil.rmtree(folder, ignore_errors=True)
        return []

    return StoreSoak("sqlite", lambda port: path, path, cleanup, STORE_RATE, None, rng)


# -- leftovers ---------------------------------------------------------------------


async def leftovers(token: str) -> dict[str, Any]:
    """What of this run is still in the services (should be nothing)."""
    found: dict[str, Any] = {}
    try:
        import redis.asyncio as aioredis

        client = aioredis.from_url(REDIS)
        try:
            found["redis_keys"] = [k.decode() async for k in client.scan_iter(match=f"*{token}*")]
        finally:
            await client.aclose()
    except Exception as exc:
        found["redis_error"] = repr(exc)
    try:
        import nats

        nc = await nats.connect(NATS)
        try:
            streams = await nc.jetstream().streams_info()
            found["nats_streams"] = [
                s.config.name for s in streams if token in (s.config.name or "")
            ]
        finally:
            await nc.close()
    except Exception as exc:
        found["nats_error"] = repr(exc)
    found["rabbitmq_queues"] = [q for q in await rabbitmqctl("list_queues") if token in q]
    found["rabbitmq_exchanges"] = [e for e in await rabbitmqctl("list_exchanges") if token in e]
    try:
        import asyncpg

        connection = await asyncpg.connect(f"{POSTGRES}/postgres")
        try:
            rows = await connection.fetch("SELECT datname FROM pg_database")
            found["postgres_databases"] = [r["datname"] for r in rows if token in r["datname"]]
        finally:
            await connection.close()
    except Exception as exc:
        found["postgres_error"] = repr(exc)
    return found


# -- the run -----------------------------------------------------------------------


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.token = uuid.uuid4().hex[:10]
        self.rng = random.Random(args.seed)
        self.started = time.monotonic()
        self.buses: list[BusSoak] = []
        self.stores: list[StoreSoak] = []
        self.logs = LogCounter(self.started)
        self.lag = LagTicker(self.started)
        self.problems: list[str] = []
        self.start_failures: dict[str, str] = {}
        self.closed = False

    async def build(self) -> None:
        async def bus(factory: Callable[[str, float], BusSoak]) -> BusSoak:
            return factory(self.token, self.started)

        makers: dict[str, Callable[[], Awaitable[Any]]] = {
            "redis": lambda: bus(redis_soak),
            "nats": lambda: bus(nats_soak),
            "rabbitmq": lambda: bus(rabbitmq_soak),
            "postgres": lambda: postgres_soak(self.token, self.rng),
        }
        for name in self.args.components:
            try:
                if name == "sqlite":
                    component: BusSoak | StoreSoak = sqlite_soak(self.rng)
                else:
                    component = await makers[name]()
                if isinstance(component, BusSoak):
                    self.buses.append(component)
                else:
                    self.stores.append(component)
                await asyncio.wait_for(component.start(), 120)
            except Exception as exc:
                self.start_failures[name] = f"{type(exc).__name__}: {exc}"
                print(f"{name} did not start: {exc!r}", file=sys.stderr, flush=True)

    def proxies(self) -> dict[str, dict[str, FaultProxy]]:
        targets: dict[str, dict[str, FaultProxy]] = {}
        for soak in self.buses:
            targets[soak.name] = dict(soak.proxies)
        for store in self.stores:
            if store.proxy is not None:
                targets[store.name] = {"store": store.proxy}
        return targets

    async def run(self) -> dict[str, Any]:
        await self.build()
        targets = {n: t for n, t in self.proxies().items() if n not in self.start_failures}
        sampler = Sampler(self.started, {n: list(t.values()) for n, t in targets.items()})
        scheduler = FaultScheduler(
            self.started,
            targets,
            self.rng,
            interval=self.args.fault_every,
            on_fault=lambda f: print(
                f"[{f.at:7.1f}s] fault {f.component}/{f.target}: {f.kind}"
                + (f" {f.seconds}s" if f.seconds else ""),
                flush=True,
            ),
        )
        background = [
            asyncio.create_task(sampler.run(), name="soak-sampler"),
            asyncio.create_task(self.lag.run(), name="soak-lag"),
        ]
        faults = asyncio.create_task(scheduler.run(), name="soak-faults")
        end = self.started + self.args.minutes * 60
        last_cpu, last_at = time.process_time(), time.monotonic()
        try:
            while time.monotonic() < end:
                await asyncio.sleep(min(60.0, max(0.0, end - time.monotonic())))
                cpu, now = time.process_time(), time.monotonic()
                self.progress(sampler, (cpu - last_cpu) / (now - last_at), len(scheduler.faults))
                last_cpu, last_at = cpu, now
            faults.cancel()
            await asyncio.gather(faults, return_exceptions=True)
            print(f"[{self.elapsed():7.1f}s] stopping producers, draining", flush=True)
            self.logs.phase = "drain"
            await asyncio.gather(
                *(b.stop_publishing() for b in self.buses),
                *(s.stop_appending() for s in self.stores),
            )
            drained = await asyncio.gather(
                self.drain_buses(), *(s.drain(DRAIN_LIMIT) for s in self.stores)
            )
            sampler.take()
            for task in background:  # the checks below take the loop for a while
                task.cancel()
            self.logs.phase = "close"
            report = await self.finish()
            report["drain_s"] = drained[0]
        finally:
            faults.cancel()
            for task in background:
                task.cancel()
            await asyncio.gather(faults, *background, return_exceptions=True)
            if not self.closed:  # interrupted: clean up all the same
                await self.close_all()
        report["faults"] = scheduler.summary()
        report["process"] = {
            **trend(sampler.samples),
            "samples": [vars(s) for s in sampler.samples],
        }
        report["loop_lag"] = {
            "max_s": round(self.lag.max_lag, 3),
            "over_100ms": self.lag.over_100ms,
            "over_1s": self.lag.over_1s,
            "worst": [(round(lag, 3), round(at, 1)) for lag, at in self.lag.worst],
        }
        report["logs"] = self.logs.report()
        report["leftovers"] = await leftovers(self.token)
        return report

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def progress(self, sampler: Sampler, cpu_share: float, faults: int) -> None:
        sample = sampler.take()
        print(
            f"[{self.elapsed():7.1f}s] cpu={cpu_share:.0%} rss={sample.rss_mb:.0f}MB "
            f"fds={sample.fds} tasks={sample.tasks} lag_max={self.lag.take_window():.2f}s "
            f"warn={self.logs.total('WARNING')} err={self.logs.total('ERROR')} faults={faults} | "
            + " | ".join(
                [*(b.progress() for b in self.buses), *(s.progress() for s in self.stores)]
            ),
            flush=True,
        )

    async def drain_buses(self) -> float:
        """Wait until every group and ungrouped subscriber has every acknowledged event,
        at most DRAIN_LIMIT seconds, and no longer than DRAIN_QUIET without progress."""
        began = last_progress = time.monotonic()
        last_total = -1
        while time.monotonic() - began < DRAIN_LIMIT:
            missing = sum(b.missing(b.group) + b.missing(b.listener) for b in self.buses)
            if missing == 0:
                break
            total = sum(b.group.delivered + b.listener.delivered for b in self.buses)
            if total != last_total:
                last_total, last_progress = total, time.monotonic()
            elif time.monotonic() - last_progress > DRAIN_QUIET:
                break
            await asyncio.sleep(1.0)
        return round(time.monotonic() - began, 1)

    async def finish(self) -> dict[str, Any]:
        components: dict[str, Any] = {}
        for bus in self.buses:
            components[bus.name] = bus.report()
        for store in self.stores:
            report, problems = await store.finish()
            components[store.name] = report
            self.problems += problems
        for bus in self.buses:
            self.problems += await bus.close()
        self.closed = True
        return {
            "token": self.token,
            "minutes": self.args.minutes,
            "seed": self.args.seed,
            "components": components,
            "start_failures": self.start_failures,
            "close_problems": self.problems,
        }

    async def close_all(self) -> None:
        self.closed = True
        for store in self.stores:
            try:
                _, problems = await store.finish()
                self.problems += problems
            except Exception as exc:
                self.problems.append(f"{store.name}: {exc!r}")
        for bus in self.buses:
            self.problems += await bus.close()


def summary(report: dict[str, Any]) -> str:
    lines = [f"soak {report.get('token')} ({report.get('minutes')} min, seed {report.get('seed')})"]
    for name, c in report.get("components", {}).items():
        if "group" in c:
            failed = ", ".join(f"{k}={v}" for k, v in c["failed"].items() if v) or "none"
            lines.append(
                f"{name}: published ok {c['published_ok']}, failed: {failed}, "
                f"unfinished {c['unfinished_publishes']}, >5s {c['publishes_over_5s']}"
            )
            for view in ("group", "ungrouped"):
                v = c[view]
                extra = ""
                if view == "group":
                    extra = f", per member {v['per_member']}, overlaps {v['overlapping_handlers']}"
                fd = {k: n for k, n in v["failed_publish_but_delivered"].items() if n}
                lines.append(
                    f"  {view}: delivered {v['delivered']} (unique {v['delivered_unique']}), "
                    f"missing {v['missing']}, duplicates {v['duplicates']}, order violations "
                    f"acked {v['order_violations_acked']} / all {v['order_violations_all']}, "
                    f"failed-but-delivered {fd or 0}{extra}"
                )
        else:
            f, p = c["follower"], c["projection"]
            lines.append(
                f"{name}: appends acked {c['appends_acknowledged']}, conflicts {c['conflicts']}, "
                f"errors {c['append_errors']}, log {c['log_events']}, acked missing "
                f"{c['acknowledged_missing_from_log']}, stored twice {c['stored_twice']}, "
                f"gave up {c['appends_given_up_at_stop']}"
            )
            lines.append(
                f"  follower: seen {f['seen']}, missing {f['missing']}, twice {f['twice']}, "
                f"out of order {f['out_of_order']}, restarts {f['restarts']}; projection: "
                f"exactly-once {p.get('exactly_once')} at {p.get('position')}, restarts "
                f"{p.get('restarts')}, final run error {p.get('final_run_error')}"
            )
    proc = report.get("process", {})
    if proc:
        lines.append(
            f"process: rss {proc['first']['rss_mb']} -> {proc['last']['rss_mb']} MB "
            f"(max {proc['rss_mb_max']}), fds {proc['first']['fds']} -> {proc['last']['fds']}, "
            f"tasks {proc['first']['tasks']} -> {proc['last']['tasks']}, "
            f"cpu {proc['cpu_share']:.0%}"
        )
    lag = report.get("loop_lag", {})
    lines.append(
        f"loop lag: max {lag.get('max_s')}s, >100ms {lag.get('over_100ms')}, "
        f">1s {lag.get('over_1s')}"
    )
    faults = report.get("faults", {})
    lines.append(f"faults: {faults.get('count')} {faults.get('by_component_kind')}")
    lines.append("warnings/errors by prefix:")
    for entry in report.get("logs", [])[:40]:
        lines.append(
            f"  {entry['count']:6d} {entry['phase']:5} {entry['level'][:4]} {entry['logger']}: "
            f"{entry['prefix']}"
        )
    lines.append(f"drain: {report.get('drain_s')}s; close problems: {report.get('close_problems')}")
    lines.append(f"leftovers: {report.get('leftovers')}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--components", default=",".join(COMPONENTS))
    parser.add_argument("--out", type=pathlib.Path)
    parser.add_argument(
        "--log", type=pathlib.Path, help="WARNING and ERROR records (default: beside --out)"
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--fault-every",
        default="20,90",
        help="seconds between faults, drawn from MIN,MAX (default 20,90)",
    )
    args = parser.parse_args()
    args.components = [c.strip() for c in args.components.split(",") if c.strip()]
    unknown = sorted(set(args.components) - set(COMPONENTS))
    if unknown:
        parser.error(
            f"unknown component(s) {', '.join(unknown)}; choose from {', '.join(COMPONENTS)}"
        )
    if args.minutes <= 0:
        parser.error("--minutes must be > 0")
    try:
        low, high = (float(part) for part in args.fault_every.split(","))
    except ValueError:
        parser.error(f"--fault-every takes MIN,MAX seconds, not {args.fault_every!r}")
    if not 0 < low <= high:
        parser.error(f"--fault-every: need 0 < MIN <= MAX, got {args.fault_every!r}")
    args.fault_every = (low, high)
    if args.seed is None:
        args.seed = random.randrange(2**32)
    if args.log is None and args.out is not None:
        args.log = args.out.with_suffix(".log")

    soak = Soak(args)
    root = logging.getLogger()
    root.setLevel(logging.WARNING)
    root.addHandler(soak.logs)
    if args.log is not None:
        handler = logging.FileHandler(args.log)
        handler.setLevel(logging.WARNING)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)

    async def run() -> dict[str, Any]:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await soak.run()

    try:
        report = asyncio.run(run())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; cleaned up", file=sys.stderr)
        sys.exit(130)
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=1, default=str))
    print(summary(report), flush=True)


if __name__ == "__main__":
    main()
