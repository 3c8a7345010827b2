"""Declare the JetStream streams of CONTRACT §1 and the daemon's durable consumer."""

from __future__ import annotations

import asyncio
from typing import Any

from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamSource,
)
from nats.js.errors import NotFoundError

from assetd.config import Settings
from assetd.schemas import wire
from assetd.schemas.wire import project_stream

DAY = 86_400.0


# JetStream deduplicates by Nats-Msg-Id across the whole stream, whatever the subject: on
# ASSETD_IN one project's id would swallow another's event. The daemon's inbox deduplicates
# per project for ever, so the inbound window is the server's minimum.
IN_DUPLICATE_WINDOW = 0.1


def stream_configs(prefix: str, replicas: int = 1) -> list[StreamConfig]:
    """``ASSETD_IN``, ``ASSETD_OUT`` and ``ASSETD_DLQ``: file storage; a 2-minute dedup
    window for what the daemon publishes (deterministic ids), the minimum for ``ASSETD_IN``."""
    common: dict[str, Any] = {
        "retention": RetentionPolicy.LIMITS, "storage": StorageType.FILE,
        "num_replicas": replicas, "duplicate_window": 120.0,
    }
    return [
        StreamConfig(name=wire.IN_STREAM, subjects=[wire.project_filter(prefix, "in")],
                     max_age=7 * DAY,
                     **(common | {"duplicate_window": IN_DUPLICATE_WINDOW})),
        StreamConfig(name=wire.OUT_STREAM, subjects=[wire.project_filter(prefix, "out")],
                     max_age=30 * DAY, **common),
        StreamConfig(name=wire.DLQ_STREAM, subjects=[wire.project_filter(prefix, "dlq")],
                     max_age=90 * DAY, **common),
    ]


def project_stream_config(prefix: str, project: str, *, replicas: int = 1,
                          max_consumers: int = 32) -> StreamConfig:
    """``ASSETD_OUT_<project>``: sourced from ``ASSETD_OUT``, filtered to the project.

    NATS permissions name streams and consumers by token, and a consumer name cannot carry
    the project; a stream per project can. So a service may be allowed
    ``$JS.API.CONSUMER.*.ASSETD_OUT_<project>.>`` and nothing of another project, and
    ``max_consumers`` bounds what it can create."""
    return StreamConfig(
        name=project_stream(project), subjects=[], max_age=30 * DAY,
        retention=RetentionPolicy.LIMITS, storage=StorageType.FILE, num_replicas=replicas,
        max_consumers=max_consumers,
        sources=[StreamSource(name=wire.OUT_STREAM,
                              filter_subject=wire.project_filter(prefix, "out", project))])


async def ensure_project_stream(js: Any, prefix: str, project: str, *, replicas: int = 1,
                                max_consumers: int = 32) -> str:
    """Create ``ASSETD_OUT_<project>`` unless it exists; return its name."""
    name = project_stream(project)
    try:
        await js.stream_info(name)
    except NotFoundError:
        await js.add_stream(project_stream_config(prefix, project, replicas=replicas,
                                                  max_consumers=max_consumers))
        await _caught_up(js, name, wire.project_filter(prefix, "out", project))
    return name


async def _caught_up(js: Any, name: str, subjects: str, timeout: float = 10.0) -> None:
    """Wait until a new project stream holds what ``ASSETD_OUT`` held for it at creation, so
    that a consumer created next with ``deliver=new`` really starts after the past."""
    source = await js.stream_info(wire.OUT_STREAM, subjects_filter=subjects)
    want = sum((source.state.subjects or {}).values())
    deadline = asyncio.get_running_loop().time() + timeout
    while (await js.stream_info(name)).state.messages < want:
        if asyncio.get_running_loop().time() > deadline:
            return  # consumers still work; deliver=new may then see some of the past
        await asyncio.sleep(0.02)


async def ensure_streams(js: Any, prefix: str, replicas: int = 1) -> None:
    """Create the streams, or update them to this configuration if they exist."""
    for cfg in stream_configs(prefix, replicas):
        try:
            await js.stream_info(cfg.name)
        except NotFoundError:
            await js.add_stream(cfg)
        else:
            await js.update_stream(cfg)


def consumer_config(settings: Settings) -> ConsumerConfig:
    """The daemon's durable pull consumer on every inbound subject.

    ``max_deliver=-1``: JetStream never silently drops a message; the daemon itself
    dead-letters a message that keeps failing after ``max_deliver`` attempts.
    """
    return ConsumerConfig(
        durable_name=wire.DURABLE,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=settings.ack_wait,
        max_deliver=-1,
        max_ack_pending=max(20_000, settings.batch_size * 4),
        filter_subject=wire.project_filter(settings.subject_prefix, "in"),
    )
