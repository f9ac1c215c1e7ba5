"""Webhook and Slack URLs that cannot be sent to are refused at `--check` (found by review: each
passed, then was retried for 45 minutes; `:0` even went to port 80), by the config with the key
path, and by the core's `Target.parse`. The error never quotes the URL: it may be a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from pager.domain import Target
from tests.test_unusable_values import errors_of

AT = "policies.p.levels[0].targets[1]: not a usable URL: "
PORT = "its port must be a number from 1 to 65535"
HOST = "its host is not a valid host name"
BAD = [
    ("http://127.0.0.1:99999/SECRET", PORT),
    ("http://127.0.0.1:-1/SECRET", PORT),
    ("http://127.0.0.1:0/SECRET", PORT),
    ("http://host:8o/SECRET", PORT),
    ("http://[::1/SECRET", "its host is not a valid IPv6 address in [brackets]"),
    ("http://[::g]/SECRET", "its host is not a valid IPv6 address in [brackets]"),
    ("http://:80/SECRET", "it has no host"),
    ("https://xn--/SECRET", HOST),
    ("https://xn--abc.example/SECRET", HOST),
    ("https://-bad-.example/SECRET", HOST),
    ("https://a..example/SECRET", HOST),
]
GOOD = [
    "https://hooks.slack.com/services/T0/B0/SECRET",
    "http://127.0.0.1:8080/hook",
    "http://[::1]:8080/hook",
    "https://user:pass@example.com/hook",
    "https://bücher.example/hook",
    "https://xn--bcher-kva.example/hook",
    "http://my_service:80/hook",
    "http://example.com.:443/hook",
    "http://example.com:/hook",
]


@pytest.mark.parametrize(("url", "error"), BAD)
def test_an_unusable_url_is_refused_by_the_config_with_its_key_path(
    tmp_path: Path, url: str, error: str
) -> None:
    found = errors_of(tmp_path, url=url)
    assert AT + error in found, found
    assert "SECRET" not in "\n".join(found)


@pytest.mark.parametrize(("url", "error"), BAD)
def test_an_unusable_url_is_refused_by_the_core(url: str, error: str) -> None:
    for channel in ("webhook", "slack"):
        with pytest.raises(ValueError, match=error.replace("[", r"\[")) as caught:
            Target.parse(f"{channel}:{url}")
        assert "SECRET" not in str(caught.value)


@pytest.mark.parametrize("url", GOOD)
def test_usable_urls_are_taken(tmp_path: Path, url: str) -> None:
    assert Target.parse(f"webhook:{url}").address == url
    assert errors_of(tmp_path, url=url) == []
