"""Real senders nobody here wrote, pointed at a URL of the test's choosing: PagerDuty's own
Python client (`pagerduty` from PyPI) for Events v2. (The real Alertmanager is in
tests/alertmanager.py.)

The client insists on an `https://` base URL, so the receiver must speak TLS: `events_client`
trusts the test CA given, as a client configured with the receiver's CA would.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pagerduty


def events_client(base_url: str, routing_key: str, ca_file: Path) -> pagerduty.EventsApiV2Client:
    """PagerDuty's Events v2 client sending to `base_url` (`https://host:port`; it posts to
    `/v2/enqueue` there), trusting `ca_file`, with no retries of its own (a test sees each
    answer as it is)."""
    client = pagerduty.EventsApiV2Client(
        routing_key, base_url=base_url, verify=ssl.create_default_context(cafile=str(ca_file))
    )
    client.retry = {}
    client.max_network_attempts = 0
    return client
