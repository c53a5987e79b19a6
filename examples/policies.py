"""A release pipeline: conditions, ordering, retries and timeouts on task calls.

Releasing version ``version`` of a (pretend) web service:

    fetch_changelog (flaky server: retried)
    backup -> migrate -> deploy -> check_health (timeout, retried) -> timeline
                           |            '-> canary_failed? -> rollback -> page_oncall
                           '-> tag_latest (if is_stable(version))
    send_newsletter (if there are subscribers)

What it shows:

- ``.with_retry(max_attempts, delay, backoff, max_delay, jitter, retry_on)``:
  the changelog server drops the first ``flaky`` requests (a counter, so every
  run fails the same way); the retry absorbs them. ``-p flaky=4`` is one
  failure too many: the run fails with the server's ``ConnectionError``.
- ``.with_timeout(seconds)`` on an async task: the first health-check ping
  hangs; the timeout cancels it after 0.2 s and ``.with_retry(...,
  retry_on=TimeoutError)`` pings again.
- ``.after(*lazies)``: ``migrate`` must wait for ``backup`` and ``deploy`` for
  ``migrate``, although neither uses the other's value.
- ``.run_if(value)``: a plain value is tested with ``bool()`` right where
  ``.run_if`` is called; the mailing list is empty, so the newsletter is
  skipped (``None`` in the result).
- ``.run_if(lazy)``: decided at run time. ``tag_latest`` runs only for a
  stable version (try ``-p version=2.0.0-rc1``); ``rollback`` only if the
  canary failed (it did not), and ``page_oncall``, which needs the rollback's
  result, is skipped with it: a skip propagates to every consumer.
- ``Param`` with type, default and help (``version``, ``flaky``, ``live``),
  and ``Env`` (``CASCADE_EXAMPLE_REGION``, default ``eu-west``). ``-p live=no``
  skips ``deploy`` and, with it, everything that depends on it.

Run it:

    python -m cascade_vm run examples/policies.py
    python -m cascade_vm run examples/policies.py --engine graph -p version=2.0.0-rc1
    python -m cascade_vm run examples/policies.py -p live=no --json
    python -m cascade_vm run examples/policies.py -p flaky=4      # exit 1: retries exhausted
    CASCADE_EXAMPLE_REGION=us-east python -m cascade_vm run examples/policies.py
    python examples/policies.py [vm|graph]    # with Cascade installed: the run's events
"""

import asyncio

from cascade_graph import Env, Param, task

# -- parameters ---------------------------------------------------------------

version = Param("version", default="1.4.0", help="the version to release")
flaky = Param("flaky", default=2, type=int,
              help="how many changelog requests the server drops before it answers")
live = Param("live", default=True, type=bool,
             help="deploy for real (no: stop after the database migration)")
region = Env("CASCADE_EXAMPLE_REGION", default="eu-west")

#: Who gets the release newsletter. Empty: ``.run_if(SUBSCRIBERS)`` is False.
SUBSCRIBERS: list[str] = []

#: What happened, in order (only tasks that run one after another write here).
JOURNAL: list[str] = []

#: Requests seen by the fake servers, per server: the "network" fails by count.
REQUESTS = {"changelog": 0, "health": 0}


# -- a flaky network call, retried ---------------------------------------------


@task
def fetch_changelog(version: str, drop_first: int) -> dict:
    """Ask the (fake) changelog server; it drops the first ``drop_first`` requests."""
    REQUESTS["changelog"] += 1
    attempt = REQUESTS["changelog"]
    if attempt <= drop_first:
        raise ConnectionError(f"changelog server dropped request {attempt}")
    return {"version": version, "notes": ["faster start-up", "fix login redirect"],
            "attempts": attempt}


changelog = fetch_changelog(version, flaky).with_retry(
    max_attempts=4,  # counts every attempt: the first one and three retries
    delay=0.002,  # pause before attempt 2 ...
    backoff=2.0,  # ... doubled each time: 2 ms, 4 ms, then capped:
    max_delay=0.005,  # never more than 5 ms
    jitter=0.001,  # plus a random 0-1 ms, so many clients do not retry in step
    retry_on=(ConnectionError,),  # anything else fails at once
)


# -- ordering without data: .after ---------------------------------------------


@task
def backup(version: str) -> str:
    JOURNAL.append("backup")
    return f"backup-before-{version}.tar"


@task
def migrate(version: str) -> int:
    JOURNAL.append("migrate")
    return 7  # the new schema version


@task
def deploy(version: str, region: str) -> dict:
    JOURNAL.append("deploy")
    return {"version": version, "region": region, "replicas": 3}


backed_up = backup(version)
migrated = migrate(version).after(backed_up)  # runs after backup; does not take its value
deployed = deploy(version, region).after(migrated).run_if(live)


# -- an async call with a timeout, retried -------------------------------------


@task
async def check_health(deployment: dict) -> dict:
    """Ping the new deployment. The first ping hangs (a lost packet)."""
    REQUESTS["health"] += 1
    ping = REQUESTS["health"]
    if ping == 1:
        await asyncio.sleep(10)  # never finishes: .with_timeout cancels it
    await asyncio.sleep(0.001)
    JOURNAL.append("health check")
    return {"status": "healthy", "region": deployment["region"], "pings": ping}


health = check_health(deployed).with_timeout(0.2).with_retry(2, retry_on=TimeoutError)


# -- conditions: .run_if --------------------------------------------------------


@task
def is_stable(version: str) -> bool:
    return "-" not in version  # 2.0.0-rc1 is a pre-release


@task
def tag_latest(version: str, deployment: dict) -> str:
    return f"docker tag service:{version} service:latest"


@task
def canary_failed(health: dict) -> bool:
    return health["status"] != "healthy"


@task
def rollback(backup_file: str) -> str:
    return f"restored {backup_file}"


@task
def page_oncall(what_happened: str) -> str:
    return f"paged the on-call engineer: {what_happened}"


@task
def send_newsletter(changelog: dict, subscribers: list) -> str:
    return f"mailed {len(subscribers)} subscribers about {changelog['version']}"


@task
def timeline(backup_file: str) -> list:
    """The journal so far: what ran, in order."""
    return list(JOURNAL)


tagged = tag_latest(version, deployed).run_if(is_stable(version))  # a lazy condition
rolled_back = rollback(backed_up).run_if(canary_failed(health))  # False: skipped ...
paged = page_oncall(rolled_back)  # ... and so is its consumer
newsletter = send_newsletter(changelog, SUBSCRIBERS).run_if(SUBSCRIBERS)  # a value: bool([])

main = {
    "changelog": changelog,
    "deployed": deployed,
    "health": health,
    "tagged_latest": tagged,
    "rollback": rolled_back,
    "oncall": paged,
    "newsletter": newsletter,
    "timeline": timeline(backed_up).after(health),
}


if __name__ == "__main__":
    # From Python: run the workflow with an event listener and summarise the events.
    import sys
    from collections import Counter

    from cascade_graph import TaskFailed, TaskRetrying, TaskSkipped
    from cascade_vm import run

    engine = sys.argv[1] if len(sys.argv) > 1 else "vm"
    counts: Counter = Counter()
    notes: list[str] = []

    def on_event(event):
        counts[type(event).__name__] += 1
        if isinstance(event, TaskFailed):
            notes.append(f"  {event.task} failed: {type(event.error).__name__}: {event.error}")
        elif isinstance(event, TaskRetrying):
            notes.append(f"  {event.task}: attempt {event.attempt} failed, retrying")
        elif isinstance(event, TaskSkipped):
            notes.append(f"  {event.task} skipped ({event.reason})")

    result = run(main, engine=engine, on_event=on_event)
    print(f"result on {engine}:", result)
    print("what happened:")
    print("\n".join(notes))
    print("event counts:", dict(sorted(counts.items())))
