"""Clients for pipelines and services: :class:`AssetClient` (async), :class:`SyncAssetClient`."""

from assetd.client.aio import AssetClient, PermissionDeniedError
from assetd.client.outcome import (
    EventRejectedError,
    NoOutcomeError,
    PromotionRejectedError,
    RefusedError,
)
from assetd.client.sync import SyncAssetClient
from assetd.errors import ConnectError, QueryError

__all__ = ["AssetClient", "ConnectError", "EventRejectedError", "NoOutcomeError",
           "PermissionDeniedError", "PromotionRejectedError", "QueryError", "RefusedError",
           "SyncAssetClient"]
