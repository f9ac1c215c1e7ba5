"""`[http]` and `[integrations.*]`: every mistake reported at once with its key path, keys read
like the channels' secrets, TLS files loaded as the server will load them."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

from pagerd.config import ConfigError, load
from pagerd.main import main
from tests.console import user_table
from tests.harness import CHANNELS, ONCALL

SERVICES = '\n[services.api]\npolicy = "oncall"\n[services.web]\npolicy = "oncall"\n'


def write(folder: Path, text: str) -> Path:
    path = folder / "pager.toml"
    path.write_text(CHANNELS + ONCALL + SERVICES + text)
    return path


def errors(folder: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load(write(folder, text))
    return raised.value.errors


def test_every_mistake_is_reported_in_one_pass_with_its_key_path(tmp_path: Path) -> None:
    (tmp_path / "k").write_text("key-0123456789abcdef\n")
    found = errors(
        tmp_path,
        """
[http]
listen = ["127.0.0.1:8080", "nowhere", "127.0.0.1:8080"]
max_body_bytes = 0
rate_limit = "fast"
tls_cert = "cert.pem"
public_url = "ftp://x"
surprise = 1

[integrations.a]
type = "graphite"
key_file = "k"

[integrations.b]
type = "alertmanager"
key_file = "missing.key"
service = "nope"
services = ["api", "gone"]

[integrations.c]
type = "rest"
service_label = "service"

[integrations.d]
type = "events-v2"
key_file = "k"
key_credential = "k"
service = "api"
service_label = "x"
""",
    )
    assert found == [
        'http.listen[1]: expected HOST:PORT, like "127.0.0.1:8080"',
        "http.listen[2]: listed twice",
        "http.surprise: unknown key",
        "integrations.a.type: unknown type 'graphite' (expected one of 'alertmanager', "
        "'events-v2', 'rest', 'heartbeat', 'calendar')",
        f"integrations.b.key_file: cannot read {tmp_path}/missing.key: No such file or directory",
        "integrations.b.service: no service named 'nope' is configured",
        "integrations.b.services[1]: no service named 'gone' is configured",
        "integrations.c.key_file: required: key_file or key_credential",
        "integrations.c.service_label: not a setting of type 'rest' (the request names it)",
        "integrations.d.key_file: give key_file or key_credential, not both",
        "integrations.d.service: give one of service (one service) or service_label (a label)",
    ]


def test_the_limits_and_tls_are_checked_once_the_table_reads(tmp_path: Path) -> None:
    found = errors(
        tmp_path,
        """
[http]
listen = "127.0.0.1:8080"
max_body_bytes = 0
rate_limit = "fast"
tls_cert = "cert.pem"
public_url = "ftp://x"
""",
    )
    assert found == [
        "http.tls_cert: give both tls_cert and tls_key, or neither",
        'http.public_url: expected an http(s) URL, like "https://pager.example"',
        "http.rate_limit: not a rate: 'fast' (examples: 10/s, 30/m, 100/h)",
        "http.max_body_bytes: must be 1 or more",
    ]


def test_a_key_file_s_trailing_newline_is_not_part_of_the_key(tmp_path: Path) -> None:
    (tmp_path / "ops.key").write_text("s3cret-key-0123456789\n")
    config = load(write(tmp_path, '[integrations.ops]\ntype = "rest"\nkey_file = "ops.key"\n'))
    assert config.integrations["ops"].key.value == "s3cret-key-0123456789"
    assert "s3cret" not in repr(config)


def test_a_key_from_a_systemd_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "am.key").write_text("from-systemd-0123456789")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    text = '[integrations.am]\ntype = "alertmanager"\nkey_credential = "am.key"\nservice = "api"\n'
    assert load(write(tmp_path, text)).integrations["am"].key.value == "from-systemd-0123456789"


def test_two_integrations_of_a_type_may_not_share_a_key(tmp_path: Path) -> None:
    (tmp_path / "k").write_text("same-key-0123456789abcdef")
    text = '[integrations.a]\ntype = "rest"\nkey_file = "k"\n'
    text += '[integrations.b]\ntype = "rest"\nkey_file = "k"\n'
    assert errors(tmp_path, text) == [
        "integrations.b: the same key as integrations.a, of the same type (give each its own key)"
    ]


def test_tls_files_are_loaded_at_check(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "both.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    other = ca.issue_cert("127.0.0.1")
    other.private_key_pem.write_to_path(str(tmp_path / "other-key.pem"))
    good = '[http]\nlisten = "127.0.0.1:8443"\ntls_cert = "both.pem"\ntls_key = "key.pem"\n'
    assert load(write(tmp_path, good)).http.tls == (tmp_path / "both.pem", tmp_path / "key.pem")
    (message,) = errors(tmp_path, good.replace("key.pem", "other-key.pem"))
    assert message.startswith(f"http.tls_cert: cannot use {tmp_path}/both.pem with ")


def test_without_http_nothing_listens(tmp_path: Path) -> None:
    config = load(write(tmp_path, ""))
    assert config.http.listen == () and config.integrations == {}


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("x", "the key is 1 characters; at least 16 are needed"),
        ("0123456789abcde", "the key is 15 characters; at least 16 are needed"),
        ("clé-0123456789abcdef", "the key must be printable ASCII without spaces"),
        ("two words 0123456789", "the key must be printable ASCII without spaces"),
    ],
)
def test_a_short_or_non_ascii_key_is_refused_at_check(tmp_path: Path, key: str, why: str) -> None:
    # Short keys can be guessed; a non-ASCII one never matched a Bearer header (found by review).
    (tmp_path / "k").write_text(key + "\n")
    found = errors(tmp_path, '[integrations.a]\ntype = "rest"\nkey_file = "k"\n')
    assert found == [f"integrations.a.key_file: {why} (make one with: openssl rand -hex 32)"]
    assert len(key) < 2 or key not in found[0]  # the key is never shown


QUERY_OR_FRAGMENT = (
    "http.public_url: must have no query (?) or fragment (#): links add a path to it, like"
    ' "https://pager.example.com" or "https://example.com/pager"'
)
NOT_HTTP = 'http.public_url: expected an http(s) URL, like "https://pager.example"'


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("https://pager.example.com/?team=ops", QUERY_OR_FRAGMENT),
        ("https://pager.example.com/#ack", QUERY_OR_FRAGMENT),
        ("https://pager.example.com?", QUERY_OR_FRAGMENT),
        ("ftp://pager.example.com", NOT_HTTP),
        ("mailto:ops@example.com", NOT_HTTP),
        ("pager.example.com", NOT_HTTP),
        ("https://", NOT_HTTP),
    ],
)
def test_public_url_is_an_http_url_links_can_be_added_to(
    tmp_path: Path, url: str, error: str
) -> None:
    assert errors(tmp_path, f'[http]\nlisten = "127.0.0.1:8080"\npublic_url = "{url}"\n') == [error]


@pytest.mark.parametrize("url", ["https://pager.example.com", "http://10.0.0.5:8080/pager/"])
def test_public_url_may_have_a_path(tmp_path: Path, url: str) -> None:
    config = load(write(tmp_path, f'[http]\nlisten = "127.0.0.1:8080"\npublic_url = "{url}"\n'))
    assert config.http.public_url == url


LISTEN_NOTE = (
    "pagerd: note: http.listen is not set: nothing listens for what {} set up (unless systemd"
    " passes pagerd a socket named http; see docs/http.md)\n"
)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[http]\npublic_url = "https://pager.example.com"\n', "http.public_url"),
        ('[integrations.ops]\ntype = "rest"\nkey_file = "k"\n', "[integrations]"),
        (
            '[http]\npublic_url = "https://pager.example.com"\n'
            '[integrations.ops]\ntype = "rest"\nkey_file = "k"\n',
            "http.public_url, [integrations]",
        ),
        ("[console]\n" + user_table("alice"), "[console]"),
        ('[http]\nlisten = "127.0.0.1:8080"\npublic_url = "https://pager.example.com"\n', None),
        ("", None),
    ],
)
def test_check_notes_what_is_set_up_for_http_when_nothing_listens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, named: str | None
) -> None:
    """Not an error (systemd may pass the socket), but a word: the operator set up what is
    reached over HTTP and nothing would listen for it."""
    (tmp_path / "k").write_text("key-0123456789abcdef\n")
    path = write(tmp_path, text)
    assert main(["--config", str(path), "--check"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"pagerd: {path}: ok (")
    notes = [line + "\n" for line in out.splitlines() if "http.listen is not set" in line]
    assert notes == ([] if named is None else [LISTEN_NOTE.format(named)])
