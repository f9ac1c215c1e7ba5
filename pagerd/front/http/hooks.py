"""The integrations' routes: Alertmanager's webhook, PagerDuty's Events v2 and heartbeats.

Each route hands its body to the integration's handler (`front/integrations.py`: the same
actors, answered after commit), and turns its `Answer` into the HTTP response:

- `POST /v1/integrations/alertmanager` (Bearer) and `/v1/integrations/alertmanager/{key}` (the
  key in the path, for an Alertmanager that cannot send a header): over its rate, an integration
  gets 503 with Retry-After, not 429: Alertmanager drops a 4xx and retries only a 5xx. Each
  alert of a payload that cannot be routed is counted in `pagerd_http_events_refused_total`
  (the others are committed).
- `POST /v2/enqueue`: the key is the body's `routing_key` (PagerDuty's API has no header), so
  the route takes none and its handler reads the body once, finds the integration (comparing the
  key in constant time with each events-v2 key, built once a config) and counts a wrong one as
  an auth failure; past the integration's rate the core refuses it, 429 as PagerDuty answers.
- `POST /heartbeat/{service}` (Bearer, a `heartbeat` integration): a check-in, 200 once
  committed; 404 for an unknown service, 400 if the service has no heartbeat configured.
"""

from __future__ import annotations

from typing import Final

from pager.domain import Heartbeat, is_service_name
from pagerd.front.core import Core
from pagerd.front.http.asgi import JSON, Response
from pagerd.front.http.rest import answer, refuse
from pagerd.front.http.routes import Call, Route
from pagerd.front.http.submit import submit
from pagerd.front.integrations import Answer, alertmanager_webhook, enqueue_events_v2
from pagerd.operations.metrics import Metrics

_ALERTMANAGER: Final = {
    "responses": ("200", "400", "401", "403", "404", "408", "413", "503"),
}


def _response(a: Answer) -> Response:
    return Response(a.status, a.body + b"\n", JSON, a.headers)


class Hooks:
    def __init__(self, core: Core, metrics: Metrics) -> None:
        self._core = core
        self._metrics = metrics

    def routes(self) -> list[Route]:
        am = "/v1/integrations/alertmanager"
        return [
            Route("POST", am, self._alertmanager, auth="alertmanager", body=True,
                  over_rate=503,
                  doc={**_ALERTMANAGER, "summary": "Alertmanager's webhook (version 4), "
                       "Authorization: Bearer KEY"}),
            Route("POST", f"{am}/{{key}}", self._alertmanager,
                  auth="alertmanager", key_in_path=True, body=True, over_rate=503,
                  doc={**_ALERTMANAGER, "summary": "Alertmanager's webhook (version 4), "
                       "the key in the path"}),
            Route("POST", "/v2/enqueue", self._enqueue, body=True,
                  doc={"summary": "PagerDuty's Events API v2: the key is the routing_key",
                       "responses": ("202", "400", "401", "403", "404", "408", "413", "429",
                                     "503")}),
            Route("POST", "/heartbeat/{service}", self._heartbeat,
                  auth="heartbeat",
                  doc={"summary": "A heartbeat check-in of the service",
                       "responses": ("200", "400", "401", "403", "404", "429", "503")}),
        ]  # fmt: skip

    async def _alertmanager(self, call: Call) -> Response:
        integration = call.integration
        assert integration is not None  # the route takes a key
        answered = await alertmanager_webhook(self._core, integration.route(), call.body)
        for reason in answered.refused:
            self._metrics.http_events_refused.inc(integration.name, reason)
        return _response(answered)

    async def _enqueue(self, call: Call) -> Response:
        answered = await enqueue_events_v2(self._core, self._core.config().keyed, call.body)
        if answered.status == 401:
            self._metrics.http_auth_failures.inc("events-v2")
        return _response(answered)

    async def _heartbeat(self, call: Call) -> Response:
        service = call.params["service"]
        integration = call.integration
        assert integration is not None  # the route takes a key
        if not is_service_name(service):
            return refuse("bad_request", "not a service name")
        event = Heartbeat(by=integration.name)
        return answer(*await submit(self._core, service, event, integration))
