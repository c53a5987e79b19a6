"""A small data pipeline: fetch from several sources at once, parse, clean, merge.

Each source is "fetched" by an async task (a short sleep stands in for the
network) that returns raw CSV-like lines, made up but always the same. The
workflow fans out over the sources, so the fetches run concurrently; each
batch is parsed and cleaned on its own as soon as it arrives, and one task
merges the clean batches into a summary.

    fetch(s) -> parse -> clean ─┐
    fetch(s) -> parse -> clean ─┼─> merge
    fetch(s) -> parse -> clean ─┘

Run it:

    python -m cascade_vm run examples/pipeline.py
    python -m cascade_vm run examples/pipeline.py --engine graph --json
    python -m cascade_vm graph examples/pipeline.py | dot -Tsvg > pipeline.svg
"""

import asyncio

from cascade_graph import task

SOURCES = ["north", "south", "east", "west"]


@task
async def fetch(source: str) -> list[str]:
    """Pretend to download the readings of one weather station as text lines."""
    await asyncio.sleep(0.01)
    seed = sum(map(ord, source))
    lines = ["station,hour,celsius"]
    for hour in range(6):
        reading = seed % 23 + 3 * hour - hour * hour // 2 - 4  # made up, but repeatable
        # Every fourth line is broken, as real feeds sometimes are.
        lines.append(f"{source},{hour}," + ("n/a" if (seed + hour) % 4 == 0 else str(reading)))
    return lines


@task
def parse(lines: list[str]) -> list[dict]:
    """Turn text lines into records; unreadable values become None."""
    header, *rows = lines
    keys = header.split(",")
    records = []
    for row in rows:
        record = dict(zip(keys, row.split(",")))
        record["hour"] = int(record["hour"])
        celsius = record["celsius"]
        record["celsius"] = int(celsius) if celsius.lstrip("-").isdigit() else None
        records.append(record)
    return records


@task
def clean(records: list[dict]) -> list[dict]:
    """Drop the records with no reading."""
    return [r for r in records if r["celsius"] is not None]


@task
def merge(batches: list[list[dict]]) -> dict:
    """Summarise the clean batches: per-station mean, the overall extremes, counts."""
    records = [r for batch in batches for r in batch]
    per_station = {}
    for batch in batches:
        if batch:
            station = batch[0]["station"]
            per_station[station] = round(sum(r["celsius"] for r in batch) / len(batch), 1)
    hottest = max(records, key=lambda r: r["celsius"])
    coldest = min(records, key=lambda r: r["celsius"])
    return {
        "records": len(records),
        "mean_by_station": per_station,
        "hottest": f"{hottest['station']} at hour {hottest['hour']}: {hottest['celsius']} C",
        "coldest": f"{coldest['station']} at hour {coldest['hour']}: {coldest['celsius']} C",
    }


main = merge([clean(parse(fetch(source))) for source in SOURCES])
