"""Every command the docs show is real: it parses with the program's own argument parser, the
scripts and test modules it names exist, and the README's tour runs against a real pagerd.

Commands are the lines of the fenced `sh` and `console` blocks (in `console`, the lines after a
`$ ` prompt) of README.md, CONTRIBUTING.md and docs/*.md. Output and synopses go in `text`
blocks. A program not known here fails the test: add it to `OTHER_PROGRAMS` on purpose.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final
from unittest import mock

import attrs
import pytest

import pager.cli
import pagerd.main
from tests.processes import Pagerd, env_without_pager_socket, wait_for

ROOT: Final = Path(__file__).resolve().parent.parent
DOCS: Final = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND_FENCES: Final = frozenset({"sh", "console"})
SEPARATORS: Final = frozenset({"&&", "||", "|", ";", "&"})
REDIRECTIONS: Final = frozenset({"<", ">", ">>", "<<<", "2>", "&>"})

# Programs the docs may name that are not this project's: their flags are their own business.
OTHER_PROGRAMS: Final = frozenset(
    {
        "cat",
        "echo",
        "export",
        "ln",
        "install",
        "useradd",
        "systemctl",
        "journalctl",
        "sqlite3",
        "socat",
        "sha256sum",
        "git",
        "pip",
        "ruff",
        "mypy",
        "devcontainer",
        "curl",
        "umask",
        "openssl",
        "sed",
        "chown",
        "psql",
        "pg_dump",
        "scp",
    }
)


@attrs.frozen
class Command:
    doc: Path
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}: {self.text}"


def commands(doc: Path, text: str | None = None) -> list[Command]:
    """The commands in a document's `sh` and `console` blocks, continuation lines joined."""
    lines = (doc.read_text() if text is None else text).splitlines()
    found: list[Command] = []
    fence: str | None = None
    pending = ""
    start = 0
    for number, line in enumerate(lines, start=1):
        if line.startswith("```"):
            fence = (line[3:].split() or ["text"])[0] if fence is None else None
            continue
        if fence not in COMMAND_FENCES:
            continue
        if fence == "console":
            if not line.startswith("$ "):
                continue
            line = line[2:]
        if pending:
            line = line.lstrip()
        else:
            start = number
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        whole, pending = (pending + line).strip(), ""
        if whole and not whole.startswith("#"):
            found.append(Command(doc, start, whole))
    return found


def simple_commands(line: str) -> list[list[str]]:
    """A shell line as its simple commands: no separators, redirections, comments or leading
    variable assignments."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    tokens = list(lexer)
    for i, token in enumerate(tokens):
        if token.startswith("#"):
            tokens = tokens[:i]
            break
    result: list[list[str]] = [[]]
    skip = False
    for token in tokens:
        if skip:
            skip = False
        elif token in SEPARATORS:
            result.append([])
        elif token in REDIRECTIONS:
            skip = True
        elif not result[-1] and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", token):
            continue
        else:
            result[-1].append(token)
    return [words for words in result if words]


class _Parsed(Exception):
    """Raised in place of going on once a program's arguments parsed."""


def argparse_complaint(main: Callable[[], object], argv: Sequence[str]) -> str | None:
    """None if `main`'s own argument parser takes `argv`, else what argparse says is wrong.

    `main` is called with `sys.argv` set to argv; the first `parse_args` it makes parses for
    real and then stops it, so nothing runs."""
    original = argparse.ArgumentParser.parse_args

    def parse_args(
        self: argparse.ArgumentParser, args: Sequence[str] | None = None, namespace: Any = None
    ) -> argparse.Namespace:
        original(self, args, namespace)
        raise _Parsed

    said = io.StringIO()
    with (
        mock.patch.object(argparse.ArgumentParser, "parse_args", parse_args),
        mock.patch.object(sys, "argv", ["prog", *argv]),
        contextlib.redirect_stderr(said),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        try:
            main()
        except _Parsed:
            return None
        except SystemExit as exit:
            if exit.code in (0, None):  # --help, --version
                return None
            return said.getvalue().strip() or f"exit {exit.code}"
    return "it never parsed its arguments"


def _module_main(name: str) -> Callable[[], object]:
    module = importlib.import_module(name)
    main: Callable[[], object] = module.main
    return main


def _file_main(path: Path) -> Callable[[], object]:
    spec = importlib.util.spec_from_file_location(f"_docs_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    main: Callable[[], object] = module.main
    return main


def _pytest_problems(args: list[str]) -> list[str]:
    problems = []
    takes_value = {"-k", "-m", "-p", "--maxfail", "--tb"}
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in takes_value:
            skip = True
            continue
        if arg.startswith("-"):
            continue
        path, _, node = arg.partition("::")
        if not (ROOT / path).exists():
            problems.append(f"no {path}")
        elif node and not re.search(
            rf"^(async )?def {re.escape(node.split('::')[-1])}\b|^class {re.escape(node)}\b",
            (ROOT / path).read_text(),
            re.MULTILINE,
        ):
            problems.append(f"no {node} in {path}")
    return problems


def problems_of(words: list[str]) -> list[str]:
    """What is wrong with one simple command of the docs; empty if nothing."""
    program, args = words[0], words[1:]
    name = Path(program).name
    if name == "sudo":
        return problems_of(args) if args else []
    if name == "docker" and args[:1] == ["exec"]:
        rest = [a for a in args[1:] if not a.startswith("-")]
        return problems_of(rest[1:]) if len(rest) > 1 else []
    if name == "docker":
        return []
    if name == "pager":
        complaint = argparse_complaint(lambda: pager.cli.main(args), args)
        return [] if complaint is None else [complaint]
    if name == "pagerd":
        complaint = argparse_complaint(lambda: pagerd.main.main(args), args)
        return [] if complaint is None else [complaint]
    if program.removeprefix("./").startswith("scripts/"):
        script = ROOT / program.removeprefix("./")
        if not script.is_file():
            return [f"no {program}"]
        return [] if os.access(script, os.X_OK) else [f"{program} is not executable"]
    if name == "pytest":
        return _pytest_problems(args)
    if re.fullmatch(r"python3?(\.\d+)?", name):
        if args[:1] == ["-m"] and len(args) > 1:
            module = args[1]
            if module == "venv":
                return []
            if not module.startswith(("tests.", "bench.")):
                return [f"an unknown module {module}"]
            if not (ROOT / (module.replace(".", "/") + ".py")).is_file():
                return [f"no module {module}"]
            complaint = argparse_complaint(_module_main(module), args[2:])
            return [] if complaint is None else [complaint]
        if args and args[0].endswith(".py"):
            script = ROOT / args[0]
            if not script.is_file():
                return [f"no {args[0]}"]
            complaint = argparse_complaint(_file_main(script), args[1:])
            return [] if complaint is None else [complaint]
        return [f"python {' '.join(args)}: neither -m tests.X nor a script of this repository"]
    if name in OTHER_PROGRAMS:
        return []
    return [f"{program}: not a program the docs are known to use (see OTHER_PROGRAMS)"]


def _all_commands() -> list[Command]:
    return [command for doc in DOCS for command in commands(doc)]


def test_the_docs_show_commands() -> None:
    found = _all_commands()
    assert {c.doc.name for c in found} >= {"README.md", "CONTRIBUTING.md", "operations.md"}
    assert len(found) > 20


@pytest.mark.parametrize("command", _all_commands(), ids=str)
def test_every_command_in_the_docs_is_real(command: Command) -> None:
    for words in simple_commands(command.text):
        assert problems_of(words) == [], str(command)


@pytest.mark.parametrize(
    "wrong",
    [
        ".venv/bin/pager status --unhealty",
        "pager ack payments-api --from alice",
        "pager silence payments-api",
        "pagerd --config x.toml --chek",
        "pagerd backup --config x.toml",
        "./scripts/deploy",
        ".venv/bin/python -m tests.torture --laps 50",
        ".venv/bin/python bench/bench.py --only ingestion",
        ".venv/bin/pytest tests/test_nothing.py",
        "frobnicate --now",
    ],
)
def test_a_wrong_flag_in_the_docs_fails(tmp_path: Path, wrong: str) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(f"Try:\n\n```sh\n{wrong}\n```\n\nIt prints:\n\n```text\npager --nope\n```\n")
    [found] = commands(doc)
    assert any(problems_of(words) for words in simple_commands(found.text))


def test_commands_are_split_as_the_shell_does() -> None:
    assert simple_commands(
        "A=1 .venv/bin/pager history api#3 --json && cat x <<< 'y' | wc  # a comment"
    ) == [[".venv/bin/pager", "history", "api#3", "--json"], ["cat", "x"], ["wc"]]
    text = "```console\n$ pager ping\nok\n```\n```sh\npagerd --check \\\n  --config a\n```\n"
    assert [c.text for c in commands(Path("x.md"), text)] == [
        "pager ping",
        "pagerd --check --config a",
    ]


# The README's tour, run as written, from a copy of the repository's config folder with the
# quick start's daemon running on it.
RUN_IN_THE_TOUR: Final = frozenset({"pager", "pagerd", "export", "cat"})


@contextlib.contextmanager
def _quick_start(folder: Path) -> Iterator[Path]:
    shutil.copytree(ROOT / "config", folder / "config")
    programs = folder / ".venv" / "bin"
    programs.mkdir(parents=True)
    for name, module in (("pager", "pager.cli"), ("pagerd", "pagerd")):
        installed = Path(sys.executable).parent / name
        if installed.exists():  # the console script, as the docs' reader has it
            (programs / name).symlink_to(installed)
        else:
            (programs / name).write_text(f'#!/bin/sh\nexec "{sys.executable}" -m {module} "$@"\n')
            (programs / name).chmod(0o755)
    daemon = Pagerd(
        folder / "config" / "pager.example.toml", folder / ".state" / "pager.sock", folder / "log"
    )
    daemon.start()
    try:
        yield folder
    finally:
        assert daemon.terminate() == 0, daemon.stderr()


@pytest.mark.e2e
def test_the_readme_tour_runs(tmp_path: Path) -> None:
    tour = [
        c
        for c in commands(ROOT / "README.md")
        if all(Path(words[0]).name in RUN_IN_THE_TOUR for words in simple_commands(c.text))
    ]
    ran = [c.text for c in tour]
    assert any("pager alert" in t for t in ran) and any("pager history" in t for t in ran)
    assert any("--check" in t for t in ran) and any("notifications.jsonl" in t for t in ran)
    env = env_without_pager_socket()
    outputs: dict[str, str] = {}
    with _quick_start(tmp_path):
        for command in tour:
            words = simple_commands(command.text)[0]
            if words[0] == "export":
                env.update(w.split("=", 1) for w in words[1:])  # type: ignore[misc]
                continue
            if words[0] == "cat":  # the log: written once delivered, a moment after "ok"
                log = tmp_path / words[1]
                wait_for(lambda log=log: log.exists() and log.read_text(), 10, f"{log} written")
            done = subprocess.run(
                ["bash", "-c", command.text],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, f"{command}\n{done.stdout}{done.stderr}"
            outputs[command.text] = done.stdout
    by_start = {text.split(" #")[0].strip(): out for text, out in outputs.items()}
    paged = next(out for text, out in by_start.items() if text.startswith("cat"))
    assert '"target":"alice@example.com"' in paged and '"target":"+14155550100"' in paged
    status = next(out for text, out in by_start.items() if text.endswith("pager status"))
    assert "payments-api" in status
    history = next(out for text, out in by_start.items() if "pager history" in text)
    assert "alice" in history


def _documented(doc: Path, after: str) -> str:
    """The first fenced block of `doc` after the paragraph that ends with `after`."""
    found = re.search(re.escape(after) + r"\n\n```\w*\n(.*?)```", doc.read_text(), re.DOTALL)
    assert found is not None, f"no example after {after!r} in {doc.name}"
    return found.group(1)


def _check(config: Path, *args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = pagerd.main.main(["--config", str(config), "--check", *args])
    return code, out.getvalue() + err.getvalue()


def test_the_documented_check_outputs_are_real(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    doc = ROOT / "docs" / "configuration.md"
    shown = "/etc/pager/pager.toml"
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "smtp-password").write_text("the SMTP password\n")
    (credentials / "twilio-token").write_text("the Twilio auth token\n")
    production = ROOT / "config" / "pager.toml"
    code, printed = _check(production, "--credentials", str(credentials))
    assert code == 0
    ok = _documented(doc, "and exits 0 when all of it works:")
    assert printed == ok.replace(shown, str(production))

    broken = tmp_path / "pager.toml"
    broken.write_text(
        production.read_text()
        .replace('"sms:+14155550100"', '"sms:0800 PAGER"')
        .replace('[services.payments-api]\npolicy = "payments-oncall"', "")
        + '\n[services.checkout]\npolicy = "payments"\n'
    )
    code, printed = _check(broken, "--credentials", str(credentials))
    assert code == 78
    errors = _documented(doc, "(`EX_CONFIG`),\nfor example:")
    assert printed == errors.replace(shown, str(broken))


def _within(shown: object, actual: object) -> bool:
    """Whether every key and value `shown` is in `actual` (an example may leave keys out)."""
    if isinstance(shown, dict) and isinstance(actual, dict):
        return all(k in actual and _within(v, actual[k]) for k, v in shown.items())
    if isinstance(shown, list) and isinstance(actual, list):
        return len(shown) == len(actual) and all(map(_within, shown, actual))
    return shown == actual


def test_the_documented_configs_are_the_shipped_ones() -> None:
    production = _documented(
        ROOT / "docs" / "configuration.md",
        "(this is `config/pager.toml`, the one the systemd unit reads):",
    )
    assert tomllib.loads(production) == tomllib.loads((ROOT / "config" / "pager.toml").read_text())
    example = _documented(ROOT / "README.md", "Its heart:")
    shipped = tomllib.loads((ROOT / "config" / "pager.example.toml").read_text())
    assert _within(tomllib.loads(example), shipped)


def _anchors(doc: Path) -> set[str]:
    """The anchors GitHub makes of a document's headings."""
    headings = re.findall(r"^#+ (.*)$", re.sub(r"```.*?```", "", doc.read_text(), flags=re.S), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: str(d.relative_to(ROOT)))
def test_every_link_in_the_docs_leads_somewhere(doc: Path) -> None:
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (doc.parent / path).resolve() if path else doc
        assert linked.exists(), f"{doc.name}: {target}"
        if anchor:
            assert anchor in _anchors(linked), f"{doc.name}: {target}"


def test_every_file_the_docs_name_exists() -> None:
    """Tests, benchmark files, scripts and configs named in prose too, not only in commands."""
    named = {
        path
        for doc in DOCS
        for path in re.findall(
            r"(?<![/\w.])((?:tests|bench|scripts|config)/[\w.-]*\w)", doc.read_text()
        )
    }
    assert named
    assert sorted(p for p in named if not (ROOT / p).exists()) == []


def test_every_module_the_docs_name_exists() -> None:
    """The code's paths in the docs (the architecture's path of an alert, CONTRIBUTING's files to
    touch) are those of the tree; later features' folders to come are named as such."""
    to_come = {"pagerd/storage/postgresql/", "pagerd/delivery/transports/NAME.py"}
    named = {
        path
        for doc in DOCS
        for path in re.findall(r"(?<![/\w.])(pagerd?/[\w./-]*\w/?)", doc.read_text())
    }
    assert sorted(p for p in named - to_come if not (ROOT / p).exists()) == []


def _options(parser: argparse.ArgumentParser) -> tuple[set[str], set[str]]:
    """A parser's option strings and its commands, its subcommands' options included."""
    options: set[str] = set()
    commands: set[str] = set()
    for action in parser._actions:
        options.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                commands.add(name)
                options.update(_options(sub)[0])
    return options, commands


def test_the_synopses_are_the_parsers() -> None:
    """The usage blocks of the client's and the daemon's pages name every command and no flag
    the programs do not take."""
    client = _documented(ROOT / "docs" / "client.md", "# The `pager` client")
    options, names = _options(pager.cli.build_parser())
    assert set(re.findall(r"^  ([a-z]+) ", client, re.M)) == names
    assert set(re.findall(r"--[a-z-]+", client)) <= options
    daemon = _documented(ROOT / "docs" / "operations.md", "## Running the daemon")
    parsers = [pagerd.main.build_parser()]
    parsers += [pagerd.main.build_backup_parser(), pagerd.main.build_restore_parser()]
    taken = set().union(*(_options(p)[0] for p in parsers))
    assert set(re.findall(r"--[a-z-]+", daemon)) <= taken
    for level in re.findall(r"--log-level ([a-z|]+)", daemon)[0].split("|"):
        assert argparse_complaint(pagerd.main.main, ["--log-level", level]) is None
