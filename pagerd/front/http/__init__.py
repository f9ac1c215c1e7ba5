"""The HTTP front door: Alertmanager, Events v2, plain REST and heartbeats, over HTTP(S); and
the ways a person answers a page (links, SMS replies, Slack buttons, the web console).

In: HTTP requests on the `[http] listen` addresses (or the socket systemd passes as `http`),
each with an integration's key, or authenticated by its own means: a person's acknowledge link
(its signed token), a provider's signature (Twilio, Slack), a console session; served by front
processes (`http.workers`) or in the core. Out: the same events the Unix socket routes, handed
to the core through its port (`pagerd.front.core.Core`; a person's answer through
`pagerd.front.local.answer`), answered 2xx only once committed; reads served by the socket
server's code. It never decides anything about an incident, never keeps a request's bytes past
its answer (bodies, connections and senders' rates are bounded, for the whole daemon), and
never shows or logs a key.

- `serve.py`: the server (hypercorn's protocol handling, our accept loop, cap, TLS, drain)
- `app.py`: the ASGI application (routing, keys, bodies, metrics)
- `table.py`: the routes every process serves; `routes.py`: a route; `openapi.py`: the document
- `auth.py`: keys, compared in constant time; `limits.py`: rate limits and wrong keys;
  `forms.py`: HTML forms, read strictly (links, console, SMS replies, Slack clicks)
- `submit.py`: one event to the core, awaited until committed (REST's, heartbeats')
- `rest.py`: `POST /alert`, `/acknowledge`, `/healthy`; `GET /status`, `/history`; silences
- `hooks.py`: `POST /v1/integrations/alertmanager[/{key}]`, `/v2/enqueue`, `/heartbeat/{service}`
- `answers.py`: `GET /ack/{token}`, `/resolve/{token}` (a page), `POST /ack`, `/resolve` (the
  answer); its HTML in `templates/` (Jinja2, autoescaped)
- `twilio.py`: `POST /v1/twilio/sms` (SMS replies); `slack.py`: `POST /v1/slack/interactions`
  (Slack buttons); `console/`: the web console under `/console/`
- `fronts.py`: the front processes, from the core (started, served, replaced, drained);
  `process.py`: one front process; `channel.py`: the private channel's messages; `remote.py`:
  the core's port over it; `shared.py`: what the fronts share (the connection cap, the wrong keys)
"""

from pagerd.front.http.app import HttpApp
from pagerd.front.http.routes import Call, Route
from pagerd.front.http.serve import HttpServer
from pagerd.front.http.submit import submit

__all__ = ["Call", "HttpApp", "HttpServer", "Route", "submit"]
