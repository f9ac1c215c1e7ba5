"""The HTTP front door: Alertmanager, Events v2, plain REST and heartbeats, over HTTP(S).

In: HTTP requests on the `[http] listen` addresses (or the socket systemd passes as `http`),
each with an integration's key, or a person's acknowledge link (its signed token). Out: the same events the Unix socket routes, through the same
actors (`submit.submit`), answered 2xx only once committed; reads served by the socket server.
It never decides anything about an incident, never keeps a request's bytes past its answer
(bodies, connections and senders' rates are bounded), and never shows or logs a key.

- `serve.py`: the server (hypercorn's protocol handling, our accept loop, cap, TLS, drain)
- `app.py`: the ASGI application (routing, keys, rate limits, bodies, metrics)
- `routes.py`: the route table; `openapi.py`: `/openapi.json` made from it
- `auth.py`: keys, compared in constant time; `limits.py`: per-integration rate limits
- `submit.py`: one event to its actor, awaited until committed (REST's, heartbeats')
- `rest.py`: `POST /alert`, `/acknowledge`, `/healthy`; `GET /status`, `/history`
- `hooks.py`: `POST /v1/integrations/alertmanager[/{key}]`, `/v2/enqueue`, `/heartbeat/{service}`
- `answers.py`: `GET /ack/{token}`, `/resolve/{token}` (a page), `POST /ack`, `/resolve` (the
  answer, through `submit.submit_answer`); its HTML in `templates/` (Jinja2, autoescaped)
"""

from pagerd.front.http.app import HttpApp
from pagerd.front.http.routes import Call, Route
from pagerd.front.http.serve import HttpServer
from pagerd.front.http.submit import submit

__all__ = ["Call", "HttpApp", "HttpServer", "Route", "submit"]
