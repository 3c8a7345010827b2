"""Serve the champion fraud_model and swap it when assetd promotes another.

    ASSETD_BRANCH=user.alice python deployments/model_server/app.py      # PORT=8000 by default

GET /score?amount=120 answers {"fraud": true, "model": "v3"}. The model is the Metaflow
artifact the champion points at, loaded with the Metaflow client; promotions and rollbacks
arrive from a durable subscription, so a restarted server (or daemon, or NATS) misses none.
"""

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from assetd.client import EventRejectedError, QueryError
from assetd.metaflow import Asset, load_artifact

ASSET = "fraud_model"
serving = {"model": None, "instance": None}


def load(assets):
    """Serve the current champion; keep what is served when there is none any more."""
    try:
        inst = assets.resolve(ASSET, "model", "@champion")
    except (QueryError, EventRejectedError) as exc:  # cleared, or moved on meanwhile
        if isinstance(exc, QueryError) and exc.code != "not_found":
            raise
        print(f"no champion for {ASSET} ({exc}); still serving "
              f"{serving['instance'] or 'nothing'}", flush=True)
        return
    serving.update(model=load_artifact(inst), instance=inst["instance"])
    print(f"serving {ASSET} {inst['instance']} (threshold {serving['model']['threshold']})",
          flush=True)


class Score(BaseHTTPRequestHandler):
    def do_GET(self):
        amount = float(parse_qs(urlparse(self.path).query).get("amount", ["0"])[0])
        model = serving["model"]
        body = {"fraud": bool(model) and amount >= model["threshold"],
                "model": serving["instance"]}
        self.send_response(200 if model else 503)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(body).encode())


def main():
    assets = Asset(entity_ref={"entity_kind": "deployment", "entity_id": "model_server"})
    load(assets)
    port = int(os.environ.get("PORT", "8000"))
    if port:
        server = ThreadingHTTPServer(("127.0.0.1", port), Score)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    for event in assets.client.events(asset=ASSET, durable="model-server"):
        if event["type"] in ("asset_promoted", "alias_rolled_back") \
                and event["data"]["alias"] == "champion":
            load(assets)


if __name__ == "__main__":
    main()
