"""Clients for pipelines and services: :class:`AssetClient` (async), :class:`SyncAssetClient`."""

from assetd.client.aio import (
    AssetClient,
    EventRejectedError,
    PermissionDeniedError,
    PromotionRejectedError,
)
from assetd.client.sync import SyncAssetClient
from assetd.errors import QueryError

__all__ = ["AssetClient", "EventRejectedError", "PermissionDeniedError",
           "PromotionRejectedError", "QueryError", "SyncAssetClient"]
