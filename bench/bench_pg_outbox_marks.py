"""Do the relay's published marks slow PostgreSQL down as the outbox grows?

The outbox alone, on a scratch database of the server given: batches of 500 rows (900-byte
payloads, a random-UUID unique ``id``, the daemon's ``(published_at, seq)`` index), one
commit each; with ``--mark`` the previous batch's rows get ``published_at`` in the same
transaction, as the relay's marks do (an update of an indexed column: never HOT). Prints
rows/s per 100,000 rows, then the table's size and dead rows.

    .venv/bin/python bench/bench_pg_outbox_marks.py --n 800000 --mark
"""

from __future__ import annotations

import argparse
import os
import time
import uuid

import psycopg
from psycopg.conninfo import make_conninfo

TABLE = """CREATE TABLE outbox (seq bigserial PRIMARY KEY, id varchar(64) UNIQUE NOT NULL,
    subject varchar(512) NOT NULL, payload bytea NOT NULL, created_at timestamptz NOT NULL,
    published_at timestamptz)"""
INSERT = ("INSERT INTO outbox (id, subject, payload, created_at) VALUES (%s, %s, %s, now()) "
          "RETURNING seq")
SUBJECT = "assetd.out.bench.main.m.instance_created"


def run(conn: psycopg.Connection, n: int, mark: bool) -> None:
    conn.execute(TABLE)
    conn.execute("CREATE INDEX ix_outbox_pending ON outbox (published_at, seq)")
    conn.commit()
    payload = os.urandom(450).hex().encode()
    previous: list[int] = []
    last, done = time.perf_counter(), 0
    while done < n:
        with conn.cursor() as cur:
            cur.executemany(INSERT, [(str(uuid.uuid4()), SUBJECT, payload) for _ in range(500)],
                            returning=True)
            seqs = []
            while True:
                row = cur.fetchone()
                assert row is not None
                seqs.append(row[0])
                if not cur.nextset():
                    break
            if mark and previous:
                cur.execute("UPDATE outbox SET published_at = now() WHERE seq = ANY(%s)",
                            (previous,))
            previous = seqs
        conn.commit()
        done += 500
        if done % 100_000 == 0:
            now = time.perf_counter()
            print(f"{'marked' if mark else 'not marked'} {done:>9,}: "
                  f"{100_000 / (now - last):,.0f} rows/s over the last 100,000", flush=True)
            last = now
    size, dead = conn.execute(
        "SELECT pg_size_pretty(pg_total_relation_size('outbox')), n_dead_tup "
        "FROM pg_stat_user_tables WHERE relname = 'outbox'").fetchone() or ("?", "?")
    print(f"outbox: {size}, {dead} dead row versions")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=800_000, help="rows to write (multiple of 500)")
    p.add_argument("--mark", action="store_true", help="mark each batch published")
    p.add_argument("--server", default="host=127.0.0.1 user=postgres dbname=postgres",
                   help="libpq connection string of a database to create the scratch one from")
    args = p.parse_args()
    name = f"assetd_marks_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            with psycopg.connect(make_conninfo(args.server, dbname=name)) as conn:
                run(conn, args.n, args.mark)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
