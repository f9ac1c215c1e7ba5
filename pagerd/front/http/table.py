"""The HTTP front door's routes, besides the built-in ones (`/-/healthy`, `/-/ready`,
`/openapi.json`): one table for every process that serves HTTP, the core's own (`http.workers
= 0`) and each front process, so that both serve the same paths.

A new route is added here: its handler takes its request (`Call`), parses and checks it, and
reaches the core only through `core` (`pagerd/front/core.py`), for one event with
`submit.submit`, or several, a status, a history.
"""

from __future__ import annotations

from pagerd.front.core import Core
from pagerd.front.http.hooks import Hooks
from pagerd.front.http.limits import WrongKeys
from pagerd.front.http.rest import Rest
from pagerd.front.http.routes import Route
from pagerd.operations.metrics import Metrics


def routes(core: Core, metrics: Metrics, wrong_keys: WrongKeys) -> list[Route]:
    """REST, then the integrations' own: alertmanager (`POST /v1/integrations/alertmanager` and
    `.../{key}`), events-v2 (`POST /v2/enqueue`), heartbeat (`POST /heartbeat/{service}`).
    `wrong_keys` is the HTTP application's (`HttpApp`'s): a wrong key in a body counts there."""
    return [*Rest(core).routes(), *Hooks(core, metrics, wrong_keys).routes()]
