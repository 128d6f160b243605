#!/usr/bin/env python3
"""A comments API on psycopg 3 that ties its schema to its code (docs/frameworks.md).

Version v1 reads and writes `comments.contents`; version v2 reads and writes
`comments.body`, which the plan `rename-comments-contents-to-body` brings in. Before it
serves anything, a version asks `pgphase check --at-least` whether the plan has reached
the phase its code needs, and refuses to start (exit 3) when not: a version never runs
against a schema it cannot handle.

    DATABASE_URL=postgres://... python3 app.py v2

It then writes and reads comments until its standard input closes (what a process
manager's stop is here), and prints one JSON line: its counts and first errors.
Statements name their columns (no SELECT *), and psycopg prepares each one on the
server at its first use (prepare_threshold=0): the driver setting that is safe on a
direct connection. Behind PgBouncer in transaction mode pass --pooler, which sets
prepare_threshold=None (no server-side prepared statements).
"""

import json
import os
import subprocess
import sys
import threading

import psycopg

PLAN = "rename-comments-contents-to-body"

# The phase of the plan each version's code needs (None: the schema before the plan,
# which lasts until contract; the deploy fence keeps v1 from running into contract).
REQUIRES = {"v1": None, "v2": "backfill"}
COLUMN = {"v1": "contents", "v2": "body"}
# The names the plan's deploy fence looks for (`comments-api-old%`).
APPLICATION_NAME = {"v1": "comments-api-old", "v2": "comments-api-new"}


def schema_ready(url, version):
    """Exit code 0 of `pgphase check --at-least` means the schema serves this version."""
    phase = REQUIRES[version]
    if phase is None:
        return True
    pgphase = os.environ.get("PGPHASE", "pgphase")
    check = subprocess.run(
        [pgphase, "--database-url", url, "check", "--plan", PLAN, "--at-least", phase],
        capture_output=True,
        text=True,
    )
    if check.returncode == 0:
        return True
    if check.returncode == 4:  # not reached yet
        print(f"schema not ready for {version}: {check.stdout.strip()}", file=sys.stderr)
        return False
    sys.exit(f"pgphase check failed (exit {check.returncode}): {check.stderr.strip()}")


def serve(url, version, pooler):
    column = COLUMN[version]
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()

    conn = psycopg.connect(
        url,
        autocommit=True,
        application_name=APPLICATION_NAME[version],
        # None: no server-side prepared statements (transaction-mode poolers);
        # 0: every statement prepared at its first use and reused (psycopg's default
        # is 5 uses); pgphase keeps both working for statements that name columns.
        prepare_threshold=None if pooler else 0,
    )
    prefix = f"{version}-{os.getpid()}-"
    counts = {"version": version, "prefix": prefix, "ok": 0, "failed": 0, "written": 0}
    errors = []
    print("ready", flush=True)
    n = 0
    while not stop.is_set():
        n += 1
        text = f"{prefix}{n}"
        try:
            with conn.transaction():
                (comment_id,) = conn.execute(
                    f"INSERT INTO comments (post_id, user_id, {column}) "
                    f"VALUES (%s, %s, %s) RETURNING id",
                    (n % 100 + 1, n % 1000 + 1, text),
                ).fetchone()
            counts["written"] += 1
            (read,) = conn.execute(
                f"SELECT {column} FROM comments WHERE id = %s", (comment_id,)
            ).fetchone()
            assert read == text, f"read back {read!r}, wrote {text!r}"
            conn.execute(
                f"SELECT id, {column} FROM comments WHERE post_id = %s "
                f"ORDER BY id DESC LIMIT 20",
                (n % 100 + 1,),
            ).fetchall()
            counts["ok"] += 1
        except (psycopg.Error, AssertionError) as e:
            counts["failed"] += 1
            if len(errors) < 5:
                errors.append(str(e).strip())
    conn.close()
    counts["errors"] = errors
    print(json.dumps(counts), flush=True)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 1 or args[0] not in COLUMN:
        sys.exit("usage: app.py v1|v2 [--pooler]  (DATABASE_URL names the database)")
    version = args[0]
    url = os.environ["DATABASE_URL"]
    if not schema_ready(url, version):
        sys.exit(3)
    serve(url, version, "--pooler" in sys.argv)


if __name__ == "__main__":
    main()
