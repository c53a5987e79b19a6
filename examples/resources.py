"""Schema migrations with resources: one connection per run, one trace span per call.

``migrate`` applies one migration to a SQLite database and tail-calls itself
for the next one, until the schema reaches version ``to``; then it tail-calls
``describe`` for a report. Each turn of that loop asks for three resources:

- ``database`` (run scope, a generator): an in-memory ``sqlite3`` connection,
  set up once on first need, shared by every turn, closed when the run ends;
- ``migration_lock`` (run scope, an async generator): set up after the
  database (``migrate`` lists it second), so it is torn down *before* the
  database: teardown runs in reverse order of set-up;
- ``span`` (``scope="task"``): a fresh record per call, torn down right after
  that call, so ``spans`` in the report holds one entry per turn (the last
  turn ran no statement: it only tail-called ``describe``).

The code after ``yield`` is the teardown: it runs when the run ends, on
success, failure or cancellation. Resources are asked for with
``inject(...)`` as a parameter default (``migrate``) or as an argument
(``describe(inject(database))``). ``run(..., resources={"database": conn})``
replaces a resource with your own value, which Cascade then neither sets up
nor tears down (see the ``__main__`` block).

Run it:

    python -m cascade_vm run examples/resources.py
    python -m cascade_vm run examples/resources.py -p to=2 --engine graph --json
    python examples/resources.py [vm|graph]    # with Cascade installed: set-up/teardown order
"""

import sqlite3

from cascade_graph import Param, inject, resource, task

MIGRATIONS = [
    ["CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)"],
    ["ALTER TABLE users ADD COLUMN email TEXT",
     "CREATE UNIQUE INDEX users_email ON users (email)"],
    ["CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER, total REAL)"],
    ["INSERT INTO users (name, email) VALUES ('Ada', 'ada@example.org')",
     "INSERT INTO users (name, email) VALUES ('Lin', 'lin@example.org')",
     "INSERT INTO orders (user_id, total) VALUES (1, 12.5)"],
]

#: What the resources did, in order (set-up and teardown lines).
LIFECYCLE: list[str] = []
#: One entry per torn-down ``span``: the number of statements that call ran.
SPANS: list[int] = []

to = Param("to", default=len(MIGRATIONS), type=int, help="the schema version to migrate to")


@resource
def database():
    """A connection for the whole run. The code after ``yield`` closes it."""
    conn = sqlite3.connect(":memory:")
    LIFECYCLE.append("database: connected")
    yield conn
    conn.close()
    LIFECYCLE.append("database: closed")


@resource(name="migration_lock")
async def lock():
    """An (imaginary) advisory lock, held from first need to the end of the run."""
    LIFECYCLE.append("lock: acquired")
    yield {"holder": "examples/resources.py"}
    LIFECYCLE.append("lock: released")


@resource(scope="task")
def span():
    """A trace span per call: set up before the call, recorded right after it."""
    record = {"statements": 0}
    yield record
    SPANS.append(record["statements"])


@task
def migrate(version: int, target: int, db=inject(database), lock=inject("migration_lock"),
            span=inject(span)):
    """Apply migration ``version`` (0-based), then go on: a tail-call loop."""
    if version >= target:
        return describe(inject(database))  # injected as an argument this time
    for statement in MIGRATIONS[version]:
        db.execute(statement)
        span["statements"] += 1
    db.execute(f"PRAGMA user_version = {version + 1}")
    return migrate(version + 1, target)  # same run: same connection, same lock


@task
def describe(db) -> dict:
    tables = [row[0] for row in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    return {
        "schema_version": db.execute("PRAGMA user_version").fetchone()[0],
        "tables": {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables},
        "spans": list(SPANS),  # one per migrate call, each closed when its call returned
        "lifecycle": list(LIFECYCLE),  # teardown comes after the run, so not here yet
    }


main = migrate(0, to)


if __name__ == "__main__":
    import sys

    from cascade_graph import ResourceSetUp, ResourceTornDown
    from cascade_vm import run

    engine = sys.argv[1] if len(sys.argv) > 1 else "vm"
    seen: list[str] = []

    def on_event(event):
        if isinstance(event, ResourceSetUp):
            seen.append(f"set up {event.resource} ({event.scope} scope)")
        elif isinstance(event, ResourceTornDown):
            seen.append(f"tore down {event.resource} ({event.scope} scope)")

    print(run(main, engine=engine, on_event=on_event))
    print("resource events, in order:")
    print("\n".join("  " + line for line in seen))
    print("lifecycle after the run:", LIFECYCLE)

    # Bring your own connection: Cascade uses it as it is and leaves it open.
    mine = sqlite3.connect(":memory:")
    LIFECYCLE.clear()
    run(main, engine=engine, params={"to": 1}, resources={"database": mine})
    print("with an override, lifecycle:", LIFECYCLE)
    print("my connection is still open:", mine.execute("PRAGMA user_version").fetchone()[0])
