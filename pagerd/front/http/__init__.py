"""The HTTP front door: Alertmanager, Events v2, plain REST and heartbeats, over HTTP(S); and
the ways a person answers a page (links, SMS replies, Slack buttons, the web console).

In: HTTP requests on the `[http] listen` addresses (or the socket systemd passes as `http`),
each with an integration's key, or authenticated by its own means: a person's acknowledge link
(its signed token), a provider's signature (Twilio, Slack), a console session. Out: the same
events the Unix socket routes, through the same actors (`submit.submit`, `submit.answer`),
answered 2xx only once committed; reads served by the socket server. It never decides anything
about an incident, never keeps a request's bytes past its answer (bodies, connections and
senders' rates are bounded), and never shows or logs a key.

- `serve.py`: the server (hypercorn's protocol handling, our accept loop, cap, TLS, drain)
- `app.py`: the ASGI application (routing, keys, rate limits, bodies, metrics)
- `routes.py`: the route table; `openapi.py`: `/openapi.json` made from it
- `auth.py`: keys, compared in constant time; `limits.py`: per-integration rate limits
- `submit.py`: one event to its actor, awaited until committed (REST's, heartbeats'; a
  person's answer through `answer`)
- `rest.py`: `POST /alert`, `/acknowledge`, `/healthy`; `GET /status`, `/history`
- `hooks.py`: `POST /v1/integrations/alertmanager[/{key}]`, `/v2/enqueue`, `/heartbeat/{service}`
- `answers.py`: `GET /ack/{token}`, `/resolve/{token}` (a page), `POST /ack`, `/resolve` (the
  answer); its HTML in `templates/` (Jinja2, autoescaped)
- `twilio.py`: `POST /v1/twilio/sms` (SMS replies); `slack.py`: `POST /v1/slack/interactions`
  (Slack buttons); `console/`: the web console under `/console/`
"""

from pagerd.front.http.app import HttpApp
from pagerd.front.http.routes import Call, Route
from pagerd.front.http.serve import HttpServer
from pagerd.front.http.submit import submit

__all__ = ["Call", "HttpApp", "HttpServer", "Route", "submit"]
