"""assetd: an event-driven asset orchestration daemon."""

__version__ = "0.1.0"
