"""Pydantic models of everything that crosses the process boundary."""

from assetd.schemas.envelope import CloudEvent
from assetd.schemas.inbound import INBOUND
from assetd.schemas.outbound import OUTBOUND

__all__ = ["INBOUND", "OUTBOUND", "CloudEvent"]
