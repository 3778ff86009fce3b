"""The Python peer of deploybot's ingest benchmark.

A small aiohttp app that verifies and parses each webhook with gidgethub's
``Event.from_http`` (``X-Hub-Signature-256`` over the raw body, then JSON) and answers
200. It stores nothing. PORT and WEBHOOK_SECRET come from the environment;
bench/run.sh (through benches/ingest.rs) starts and stops it.
"""

import os
import sys

from aiohttp import web
from gidgethub import BadRequest, ValidationFailure, sansio

SECRET = os.environ.get("WEBHOOK_SECRET")
if not SECRET:
    sys.exit("set WEBHOOK_SECRET")
PORT = int(os.environ.get("PORT", "3001"))


async def receive(request: web.Request) -> web.Response:
    body = await request.read()
    try:
        event = sansio.Event.from_http(request.headers, body, secret=SECRET)
    except ValidationFailure as exc:
        return web.json_response({"error": str(exc)}, status=401)
    except BadRequest as exc:
        return web.json_response({"error": str(exc)}, status=exc.status_code)
    return web.json_response({"status": "ok", "event": event.event})


app = web.Application(client_max_size=25 * 1024 * 1024)
app.router.add_post("/webhooks/github", receive)

if __name__ == "__main__":
    web.run_app(app, host="127.0.0.1", port=PORT, access_log=None, print=None)
