"""A config with no services is an error unless it says so: an empty or truncated file (a failed
deploy) must not pass `--check`, start, or a reload that would close every open incident as
"service removed" and end all paging without a word."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from pagerd.config import ConfigError, load
from pagerd.main import main
from tests.harness import CHANNELS, ONCALL, connect, running, write_config

NO_SERVICES = "services: none configured: a pager with no services pages nobody"


@pytest.mark.parametrize(
    "text",
    ["", "\n", CHANNELS, CHANNELS + ONCALL, CHANNELS + ONCALL + "[services]\n"],
    ids=["empty", "blank", "truncated-after-channels", "truncated-after-policies", "empty-table"],
)
def test_check_and_start_refuse_a_config_without_services(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    path = tmp_path / "pager.toml"
    path.write_text(text)
    assert main(["--check", "--config", str(path)]) == 78
    assert NO_SERVICES in capsys.readouterr().err
    assert main(["--config", str(path)]) == 78  # start: before anything is opened
    assert NO_SERVICES in capsys.readouterr().err
    assert not (tmp_path / "state").exists()


def test_a_config_that_says_it_means_no_services_loads(tmp_path: Path) -> None:
    path = tmp_path / "pager.toml"
    path.write_text(CHANNELS.replace("[daemon]", "[daemon]\nallow_no_services = true") + ONCALL)
    assert load(path).services == {}
    path.write_text(CHANNELS.replace("[daemon]", '[daemon]\nallow_no_services = "yes"') + ONCALL)
    with pytest.raises(ConfigError) as excinfo:
        load(path)
    assert excinfo.value.errors == ["daemon.allow_no_services: expected a boolean, got a string"]


def test_a_services_section_with_errors_is_not_also_reported_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "pager.toml"
    path.write_text(CHANNELS + ONCALL + "[services.api]\npolicy = 3\n")
    with pytest.raises(ConfigError) as excinfo:
        load(path)
    assert excinfo.value.errors == ["services.api.policy: expected a string, got an integer"]


async def test_a_reload_of_a_truncated_file_is_refused_and_open_incidents_stay_open(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    with trio.fail_after(3600):
        async with running(config) as daemon, connect(config.socket) as conn:
            await conn.request("alert", service="api")
            config.path.write_text(CHANNELS)  # the deploy stopped half-way
            assert await daemon.reload() is False
            status = await conn.request("status", service="api")
    assert status["ok"] is True and status["state"] == "unhealthy"
    assert daemon.config.services.keys() == {"api", "web"}
