"""The web UI's static files (``static/``), served by :mod:`assetd.daemon.http_ui`."""
