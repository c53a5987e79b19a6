"""Results kept across runs: ``.with_cache`` with an ``SQLiteStore`` file.

Invoices in several currencies are converted to euros. Each exchange rate
comes from a slow (pretend) rate service, so ``fetch_rate`` is cached in an
SQLite file under the system temp directory: the first run asks the service,
every later run (in this process or any other, until the entry is a day old)
reads the file instead, and a listener sees ``TaskSkipped(reason="cached")``
where ``fetch_rate`` would have run. ``convert`` is cached too, in the default
``MemoryStore``: that one lives only as long as the process.

- The cache key is the task's ``module.qualname``, a fingerprint of its code
  and the call's arguments (here ``currency`` and ``day``): change the
  function and its old entries are no longer used. ``key="ecb-v1"`` adds a
  label of your own; change it to start afresh.
- Two invoices in the same currency on the same day share one ``fetch_rate``
  call: the flow builds one lazy call per (currency, day) and uses it twice,
  and one lazy call is one node, which runs once.
- Cached values are pickled into the file, so they must be picklable. Each
  entry is authenticated with a secret kept beside the file
  (``...sqlite.key``, mode 0600, made on first use), and an entry that fails
  the check is never unpickled: see docs/security.md. For your own flows,
  keep the cache in a directory only you can write.
- The file is ``$CASCADE_EXAMPLE_CACHE``, or ``cascade-example-cache.sqlite``
  in the temp directory. Delete it to start cold.

Run it twice; the second run reads every rate from the file (same output):

    python -m cascade_vm run examples/cached.py
    python -m cascade_vm run examples/cached.py --engine graph --json
    python examples/cached.py [vm|graph]    # with Cascade installed: two runs, hits counted
"""

import asyncio
import os
import tempfile

from cascade_graph import SQLiteStore, task

CACHE_FILE = os.environ.get("CASCADE_EXAMPLE_CACHE") or os.path.join(
    tempfile.gettempdir(), "cascade-example-cache.sqlite")
STORE = SQLiteStore(CACHE_FILE)
ONE_DAY = 24 * 3600.0

#: What the pretend rate service answers: euros per unit of currency, per day.
RATES = {
    ("USD", "2024-03-01"): 0.92,
    ("GBP", "2024-03-01"): 1.17,
    ("JPY", "2024-03-04"): 0.0062,
}

INVOICES = [
    {"id": "INV-1", "amount": 120.0, "currency": "USD", "day": "2024-03-01"},
    {"id": "INV-2", "amount": 80.0, "currency": "GBP", "day": "2024-03-01"},
    {"id": "INV-3", "amount": 42.5, "currency": "USD", "day": "2024-03-01"},
    {"id": "INV-4", "amount": 15000.0, "currency": "JPY", "day": "2024-03-04"},
]


@task
async def fetch_rate(currency: str, day: str) -> float:
    """Ask the rate service (pretend: a short sleep stands in for the network)."""
    await asyncio.sleep(0.02)
    return RATES[(currency, day)]


@task
def convert(invoice: dict, rate: float) -> dict:
    euros = round(invoice["amount"] * rate, 2)
    return {**invoice, "rate": rate, "eur": euros}


@task
def summarize(rows: list) -> str:
    lines = [
        f"{r['id']}: {r['amount']:>9.2f} {r['currency']} x {r['rate']:<6} = {r['eur']:>7.2f} EUR"
        for r in rows
    ]
    lines.append(f"total: {sum(r['eur'] for r in rows):.2f} EUR")
    return "\n".join(lines)


# One cached call per distinct (currency, day): INV-1 and INV-3 share one.
rates = {
    (inv["currency"], inv["day"]): fetch_rate(inv["currency"], inv["day"]).with_cache(
        store=STORE, ttl=ONE_DAY, key="ecb-v1")
    for inv in INVOICES
}

main = summarize([
    convert(inv, rates[(inv["currency"], inv["day"])]).with_cache()  # MemoryStore: this process
    for inv in INVOICES
])


if __name__ == "__main__":
    import sys
    from collections import Counter

    from cascade_graph import TaskSkipped, TaskStarted
    from cascade_vm import run

    engine = sys.argv[1] if len(sys.argv) > 1 else "vm"
    STORE.clear()  # start cold, so the counts below are the same every time

    for attempt in (1, 2):
        ran: Counter = Counter()
        hits: Counter = Counter()

        def on_event(event, ran=ran, hits=hits):
            if isinstance(event, TaskStarted):
                ran[event.task] += 1
            elif isinstance(event, TaskSkipped) and event.reason == "cached":
                hits[event.task] += 1

        result = run(main, engine=engine, on_event=on_event)
        print(f"run {attempt}: fetch_rate ran {ran['fetch_rate']}x, "
              f"{hits['fetch_rate']} cache hits; convert ran {ran['convert']}x, "
              f"{hits['convert']} cache hits")
    print(result)
    print("cache file:", CACHE_FILE)
