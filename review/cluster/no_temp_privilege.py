"""Attack: the fence is a function made in `pg_temp` on each pooled connection (`_configure`).
A role without the TEMPORARY privilege on the database (hardening guides: `REVOKE ALL ON
DATABASE ... FROM PUBLIC`, then `GRANT CONNECT`; the role not the database's owner, which
docs/cluster.md allows: "or at least have CREATE on its schema public") cannot make it.
What do `pagerd --check` and the daemon say?

Exits 1 if `--check` passes while the daemon cannot run, or the daemon's error does not name
the missing privilege.
Run: .venv/bin/python -m review.cluster.no_temp_privilege
"""

from __future__ import annotations

import secrets
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import conninfo, sql

from review.cluster.common import ADMIN, database
from tests.processes import PAGERD


def main() -> int:
    role = f"pagerd_review_role_{secrets.token_hex(3)}"
    with database() as dsn, tempfile.TemporaryDirectory() as tmp:
        name = conninfo.conninfo_to_dict(dsn)["dbname"]
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
            for stmt in (
                "REVOKE ALL ON DATABASE {db} FROM PUBLIC",
                "GRANT CONNECT ON DATABASE {db} TO {r}",
                "GRANT USAGE ON SCHEMA public TO {r}",
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {r}",
                "GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {r}",
            ):
                conn.execute(
                    sql.SQL(stmt).format(db=sql.Identifier(str(name)), r=sql.Identifier(role))
                )
        try:
            folder = Path(tmp)
            (folder / "dsn").write_text(conninfo.make_conninfo(dsn, user=role))
            (folder / "pager.toml").write_text(
                f"""
[daemon]
socket = "{folder}/pager.sock"
state_dir = "{folder}/state"
[storage]
backend = "postgresql"
dsn_file = "{folder}/dsn"
connect_timeout = "2s"
[cluster]
node_name = "n1"
[channels.email]
transport = "log"
[policies.p]
[[policies.p.levels]]
targets = ["email:x@example.com"]
[services.api]
policy = "p"
"""
            )
            check = subprocess.run(
                [*PAGERD, "--config", str(folder / "pager.toml"), "--check"],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            said = (check.stdout + check.stderr).strip()[-400:]
            print(f"pagerd --check: exit {check.returncode}: {said}")
            t0 = time.monotonic()
            run = subprocess.run(
                [*PAGERD, "--config", str(folder / "pager.toml")],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            out = (run.stdout + run.stderr).strip()
            print(f"pagerd: exit {run.returncode} after {time.monotonic() - t0:.1f}s:")
            print("   ", out[-1200:].replace("\n", "\n    "))
            named = "temporary" in out.lower() or "TEMP" in out
            if check.returncode == 0 and run.returncode != 0 and not named:
                print("CHECK PASSES, THE DAEMON FAILS WITHOUT NAMING THE MISSING PRIVILEGE")
                return 1
            if check.returncode == 0 and run.returncode != 0:
                print("CHECK PASSES, THE DAEMON FAILS")
                return 1
            print("held")
            return 0
        finally:
            with psycopg.connect(ADMIN, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                    (role,),
                )
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            with psycopg.connect(ADMIN, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


if __name__ == "__main__":
    raise SystemExit(main())
