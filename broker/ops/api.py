"""The JSON API under ``/api/``: what the dashboard reads and the buttons it has.

Each handler does what the matching line-protocol command does (``STATS``,
``DLQ``, ``REPLAY``, ``PURGE``, ``PAUSE``/``RESUME``, ``DELETE``) with the same permission
checks (README's Security table). Changes only reach memory and the broker's
write buffers, so each one asks the commit tick to run and waits for it (and for the fsync under
``--fsync always``) before answering: a 200 promises what an ``OK`` does.

POST bodies must be JSON (``Content-Type: application/json``). Browsers cannot
send that cross-origin without a CORS preflight, which this server never
grants, so another web page cannot press the buttons on a broker without auth.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import orjson
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from linemq.broker.delivery.dead_letters import DeadLetterNotFound
from linemq.broker.delivery.lookup import NotThere
from linemq.broker.delivery.router import DeliveryError
from linemq.broker.observe.failure_rate import FailureRates
from linemq.broker.observe.stats import Snapshot, collect, filter_snapshot
from linemq.broker.ops.access import broker_of, json_error, require, user_of, visible_topics
from linemq.broker.ops.port import Operations
from linemq.broker.protocol.names import is_pattern, is_valid_name, is_valid_pattern
from linemq.broker.storage.records import StorageError

log = structlog.get_logger(__name__)

DEFAULT_DLQ_COUNT: Final = 100
MAX_DLQ_COUNT: Final = 100_000
DURABLE_TIMEOUT: Final = 30.0
FAILURES: Final[web.AppKey[FailureRates]] = web.AppKey("linemq_failure_rates")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/stats", stats)
    app.router.add_get("/api/dlq", dlq_list)
    app.router.add_get("/api/status", message_status_json)
    app.router.add_get("/api/schedules", schedules_json)
    app.router.add_post("/api/dlq/replay", dlq_replay)
    app.router.add_post("/api/dlq/purge", dlq_purge)
    app.router.add_post("/api/groups/pause", group_pause)
    app.router.add_post("/api/groups/resume", group_resume)
    app.router.add_post("/api/groups/delete", group_delete)
    app.router.add_post("/api/topics/delete", topic_delete)


def snapshot_json(snap: Snapshot) -> dict[str, Any]:
    return {
        "broker": snap.broker,
        "topics": snap.topics,
        "groups": [{"topic": t, "group": g, **f} for t, g, f in snap.groups],
    }


async def stats(request: web.Request) -> web.Response:
    """``STATS [topic]`` as JSON, limited to the topics the user may read."""
    topic = request.query.get("topic")
    if topic is not None:
        _check_name(topic)
        require(request, topic, "subscribe")
    snap = collect(broker_of(request), topic)
    visible = visible_topics(request)
    if visible is not None:
        snap = filter_snapshot(snap, visible)
    user = user_of(request)
    body = {**snapshot_json(snap), "user": None if user is None else user.name}
    rates = request.app[FAILURES]
    recent = rates.recent()
    broker = broker_of(request)
    for group in body["groups"]:  # of the last window (as /readyz), not the durable totals
        r = recent.get((group["topic"], group["group"]))
        group["failure_rate"] = round(r.rate, 4) if r is not None and r.counted else None
        group["policy"] = _policy_json(broker.group_policy(group["topic"], group["group"]))
        group["filter"] = broker.group_filter(group["topic"], group["group"])
    body["failure_rate_window"] = rates.window
    return _json(body)


def _policy_json(fields: dict[str, str] | None) -> dict[str, Any] | None:
    """``POLICY <topic> <group>``'s fields as given, but ``overrides`` as a list."""
    if fields is None:
        return None
    own = fields.get("overrides", "none")
    return {**fields, "overrides": [] if own == "none" else own.split(",")}


async def schedules_json(request: web.Request) -> web.Response:
    """``SCHEDULES [topic]``: the jobs of topics the user may publish or subscribe to."""
    topic = request.query.get("topic")
    user = user_of(request)

    def may_see(t: str) -> bool:
        return user is None or user.may_publish(t) or user.may_subscribe(t)

    if topic is not None:
        _check_name(topic)
        if not may_see(topic):
            assert user is not None
            log.warning("http_permission_denied", user=user.name, topic=topic, needs="read")
            raise json_error(403, "permission denied")
    jobs = [
        {
            "topic": job.topic,
            "name": job.name,
            "every": job.every,
            "cron": job.cron,
            "tz": job.tz,
            "next": job.next_due,
            "last": job.last_due,
            "fired": job.fired,
            "bytes": job.nbytes,
            "options": list(job.options),
        }
        for job in broker_of(request).schedules(topic)
        if may_see(job.topic)
    ]
    return _json({"schedules": jobs})


async def dlq_list(request: web.Request) -> web.Response:
    """The last n dead letters of a topic with their failure metadata (``DLQ``)."""
    topic = _check_name(request.query.get("topic", ""))
    require(request, topic, "subscribe")  # a topic's dead letters are read as the topic
    try:
        n = int(request.query.get("n", DEFAULT_DLQ_COUNT))
    except ValueError:
        raise json_error(400, "n must be an integer") from None
    if n < 0:
        raise json_error(400, "n must not be negative")
    letters = await broker_of(request).dead_letters(topic, min(n, MAX_DLQ_COUNT))
    out = [{**orjson.loads(text), "dlq_offset": offset} for offset, text in letters]
    return _json({"topic": topic, "letters": out})


async def message_status_json(request: web.Request) -> web.Response:
    """Where a message (``message``: an id or an offset) of a topic is (``STATUS``)."""
    topic = _check_name(request.query.get("topic", ""))
    require(request, topic, "subscribe")
    message = request.query.get("message", "")
    if not message or any(c.isspace() for c in message):
        raise json_error(400, "give message=<id or offset>")
    by_offset = message.isascii() and message.isdigit()
    broker = broker_of(request)
    try:
        record, fields, places = await broker.message_status(
            topic, int(message) if by_offset else None, None if by_offset else message
        )
    except NotThere as e:
        raise json_error(404, e.reason) from None
    body: dict[str, Any] = {"topic": topic, "offset": record.offset, "id": record.id}
    body.update({**fields, "ts": record.ts})
    body["groups"] = [{"group": p.group, "state": p.state, **p.fields} for p in places]
    return _json(body)


async def dlq_replay(request: web.Request) -> web.Response:
    """``{"topic": T, "id": ID}`` or ``{"topic": T, "all": true}`` (``REPLAY``)."""
    body = await _body(request)
    topic = _check_name(body.get("topic"))
    target = body.get("id")
    if body.get("all") is True:
        target = None
    elif not isinstance(target, str) or not target:
        raise json_error(400, 'give "id" (a dead letter\'s id) or "all": true')
    require(request, topic, "manage")
    broker = broker_of(request)
    try:
        done = await broker.replay(topic, target)
    except DeadLetterNotFound as e:
        raise json_error(404, str(e)) from None
    await _committed(broker)
    log.info(
        "dead_letters_replayed",
        topic=topic,
        id=target,
        count=done.replayed,
        skipped=done.skipped,
        via="http",
        **_who(request),
    )
    return _json({"replayed": done.replayed, "skipped": done.skipped})


async def dlq_purge(request: web.Request) -> web.Response:
    """``{"topic": T}``: delete every dead letter of T (``PURGE T.dlq``)."""
    body = await _body(request)
    topic = _check_name(body.get("topic"))
    require(request, topic, "manage")
    dlq = topic + ".dlq"
    broker = broker_of(request)
    count = await broker.purge(dlq)  # StorageError: 503 (storage_failures)
    await _committed(broker)
    log.warning("topic_purged", topic=dlq, records=count, via="http", **_who(request))
    return _json({"purged": count})


async def group_pause(request: web.Request) -> web.Response:
    return await _pause(request, True)


async def group_resume(request: web.Request) -> web.Response:
    return await _pause(request, False)


async def _pause(request: web.Request, paused: bool) -> web.Response:
    body = await _body(request)
    topic = _check_name(body.get("topic"))
    group = _check_name(body.get("group"), "group")
    require(request, topic, "manage")
    broker = broker_of(request)
    try:
        broker.pause(topic, group, paused)
    except DeliveryError as e:
        raise json_error(404, e.reason) from None
    await _committed(broker)
    event = "group_paused" if paused else "group_resumed"
    log.info(event, topic=topic, group=group, via="http", **_who(request))
    return _json({"topic": topic, "group": group, "paused": paused})


async def group_delete(request: web.Request) -> web.Response:
    """``{"topic": T, "group": G, "force": false}``: ``DELETE T G [force]``; T may be a pattern."""
    body = await _body(request)
    topic = body.get("topic")
    if not (isinstance(topic, str) and is_valid_pattern(topic) and is_pattern(topic)):
        topic = _check_name(topic)
    group = _check_name(body.get("group"), "group")
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise json_error(400, '"force" must be true or false')
    require(request, topic, "manage")
    broker = broker_of(request)
    try:
        await broker.delete_group(topic, group, force)
    except DeliveryError as e:
        raise json_error(409 if e.reason == "group has members" else 404, e.reason) from None
    await _committed(broker)
    log.warning("group_deleted", topic=topic, group=group, force=force, via="http", **_who(request))
    return _json({"topic": topic, "group": group, "deleted": True})


async def topic_delete(request: web.Request) -> web.Response:
    """``{"topic": T, "force": false}``: ``DELETE T [force=true]``."""
    body = await _body(request)
    topic = _check_name(body.get("topic"))
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise json_error(400, '"force" must be true or false')
    require(request, topic, "manage")
    broker = broker_of(request)
    try:
        await broker.delete_topic(topic, force)
    except DeliveryError as e:
        raise json_error(409 if e.reason == "topic has subscribers" else 404, e.reason) from None
    except StorageError as e:
        raise json_error(503, f"storage unavailable: {e}") from None
    await _committed(broker)
    log.warning("topic_deleted", topic=topic, force=force, via="http", **_who(request))
    return _json({"topic": topic, "deleted": True})


# -- helpers ---------------------------------------------------------------------


@web.middleware
async def storage_failures(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one answer to a storage failure, whatever the route: 503 and the ERR's reason."""
    try:
        return await handler(request)
    except StorageError as e:
        raise json_error(503, f"storage unavailable: {e}") from None


async def _committed(broker: Operations) -> None:
    """Wait until the change is written and, per ``--fsync``, durable, as before an ``OK``."""
    try:
        async with asyncio.timeout(DURABLE_TIMEOUT):
            await broker.durable()
    except TimeoutError:
        raise json_error(503, "storage unavailable: fsync did not finish in time") from None


async def _body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise json_error(415, "send a JSON body with Content-Type: application/json")
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise json_error(400, "body is not valid JSON") from None
    if not isinstance(body, dict):
        raise json_error(400, "body must be a JSON object")
    return body


def _check_name(name: object, kind: str = "topic") -> str:
    if not isinstance(name, str) or not is_valid_name(name):
        raise json_error(400, f"invalid {kind} name")
    return name


def _who(request: web.Request) -> dict[str, str | None]:
    user = user_of(request)
    return {"user": None if user is None else user.name, "peer": request.remote}


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")
