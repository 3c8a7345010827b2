"""Declare the JetStream streams of CONTRACT §1 and the daemon's durable consumer."""

from __future__ import annotations

from typing import Any

from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from assetd.config import Settings

DAY = 86_400.0


def stream_configs(prefix: str, replicas: int = 1) -> list[StreamConfig]:
    """``ASSETD_IN``, ``ASSETD_OUT`` and ``ASSETD_DLQ``: file storage, 2-minute dedup window."""
    common: dict[str, Any] = {
        "retention": RetentionPolicy.LIMITS, "storage": StorageType.FILE,
        "num_replicas": replicas, "duplicate_window": 120.0,
    }
    return [
        StreamConfig(name="ASSETD_IN", subjects=[f"{prefix}.in.>"], max_age=7 * DAY, **common),
        StreamConfig(name="ASSETD_OUT", subjects=[f"{prefix}.out.>"], max_age=30 * DAY, **common),
        StreamConfig(name="ASSETD_DLQ", subjects=[f"{prefix}.dlq.>"], max_age=90 * DAY, **common),
    ]


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
    """The daemon's durable pull consumer on ``assetd.in.>``.

    ``max_deliver=-1``: JetStream never silently drops a message; the daemon itself
    dead-letters a message that keeps failing after ``max_deliver`` attempts.
    """
    return ConsumerConfig(
        durable_name="assetd",
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=settings.ack_wait,
        max_deliver=-1,
        max_ack_pending=max(20_000, settings.batch_size * 4),
        filter_subject=f"{settings.subject_prefix}.in.>",
    )
