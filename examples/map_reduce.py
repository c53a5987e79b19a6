"""Map-reduce with ``task.map``: crawl a small (pretend) website and index it.

    list_pages(site) -> fetch.map(urls) -> count_words.map(pages) ---> build_index
                        (each item retried     page_entry.map(urls, pages) -'
                         and timed out alone)  spellcheck.map(pages), if -p spellcheck=yes

What it shows:

- ``task.map(iterable)`` over a *lazy* iterable: how many pages there are is
  known only when ``list_pages`` has run, so the fan-out is decided at run
  time. The value of a map is the list of the item results, in the order of
  the iterable, whichever item finishes first (here the last page answers
  first).
- ``.with_retry(...)`` and ``.with_timeout(...)`` on a map apply to *each
  item's call*: two pages fail on their first request; only those two are
  fetched again (``requests`` in the result is pages + 2).
- Several iterables are zipped: ``page_entry.map(urls, pages)`` makes one
  call per (url, page) pair; they must have the same length.
- ``.run_if(...)`` on a map gates the whole map: the spell check runs only
  with ``-p spellcheck=yes`` (``None`` otherwise).
- ``Param``: ``site`` picks the site (``docs`` or ``blog``), ``top`` how many
  words the index shows.

Run it:

    python -m cascade_vm run examples/map_reduce.py
    python -m cascade_vm run examples/map_reduce.py -p site=blog -p top=3 --engine graph
    python -m cascade_vm run examples/map_reduce.py -p spellcheck=yes --json
    python examples/map_reduce.py [vm|graph]    # with Cascade installed: per-item events
"""

import asyncio

from cascade_graph import Param, task

SITES = {
    "docs": {
        "/": "Welcome to the river toolkit. Install it, then follow the tutorial.",
        "/install": "Install the toolkit with pip. The toolkit needs Python 3.11.",
        "/tutorial": "The tutorial builds a small river model step by step. Each step "
                     "adds one feature to the model.",
        "/faq": "Why is my model slow? Check the step size. Why does install fail? "
                "Check your Python version.",
        "/api": "The model API: Model, Step, River. Every River has a source and a mouth.",
    },
    "blog": {
        "/": "Notes from the river toolkit team.",
        "/2024/spring": "Spring release: faster models and a new tutorial.",
        "/2024/summer": "Summer release: the river API is stable. Tankyou for the reports!",
    },
}

#: Pages whose first request fails (a flaky CDN), and how many requests each page got.
FLAKY = {"docs/tutorial", "docs/api", "blog/2024/summer"}
REQUESTS: dict[str, int] = {}

STOP_WORDS = {"a", "and", "each", "is", "it", "my", "one", "the", "then", "to", "why", "with"}
KNOWN_TYPOS = {"tankyou": "thank you", "recieve": "receive"}

site = Param("site", default="docs", help="which site to crawl: docs or blog")
top = Param("top", default=5, type=int, help="how many words the index shows")
spellcheck_on = Param("spellcheck", default=False, type=bool, help="also spell-check every page")


@task
def list_pages(site: str) -> list[str]:
    """The site map: the pages' URLs, in order. Known only at run time."""
    if site not in SITES:
        raise ValueError(f"no site {site!r}; sites: {', '.join(SITES)}")
    return [site + path for path in SITES[site]]


@task
async def fetch(url: str) -> str:
    """Download one page (pretend). Later pages answer sooner; flaky pages fail once."""
    REQUESTS[url] = REQUESTS.get(url, 0) + 1
    site_name, _, path = url.partition("/")
    paths = list(SITES[site_name])
    await asyncio.sleep(0.001 * (len(paths) - paths.index("/" + path)))
    if url in FLAKY and REQUESTS[url] == 1:
        raise ConnectionError(f"connection reset while fetching {url}")
    return SITES[site_name]["/" + path]


@task
def count_words(page: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for word in "".join(c.lower() if c.isalnum() else " " for c in page).split():
        if word not in STOP_WORDS and not word.isdigit():
            counts[word] = counts.get(word, 0) + 1
    return counts


@task
def page_entry(url: str, page: str) -> list:
    """[url, first sentence] for the table of contents."""
    return [url, page.split(". ")[0].rstrip(".")]


@task
def spellcheck(page: str) -> list[str]:
    words = "".join(c.lower() if c.isalpha() else " " for c in page).split()
    return [f"{w} -> {KNOWN_TYPOS[w]}" for w in words if w in KNOWN_TYPOS]


@task
def build_index(counts: list[dict], contents: list[list], top: int) -> dict:
    """The reduce step: merge the per-page counts."""
    total: dict[str, int] = {}
    for page_counts in counts:
        for word, n in page_counts.items():
            total[word] = total.get(word, 0) + n
    ranked = sorted(total.items(), key=lambda item: (-item[1], item[0]))[:top]
    return {
        "pages": len(contents),
        "requests": sum(REQUESTS.values()),  # every fetch attempt, retries included
        "top_words": [f"{word} ({n})" for word, n in ranked],
        "contents": contents,
    }


urls = list_pages(site)
pages = fetch.map(urls).with_retry(3, delay=0.001, retry_on=ConnectionError).with_timeout(2.0)

main = {
    "index": build_index(count_words.map(pages), page_entry.map(urls, pages), top),
    "typos": spellcheck.map(pages).run_if(spellcheck_on),
}


if __name__ == "__main__":
    # From Python: each map item is an ordinary task call with its own events.
    import sys
    from collections import Counter

    from cascade_graph import TaskFailed, TaskRetrying, TaskStarted
    from cascade_vm import run

    engine = sys.argv[1] if len(sys.argv) > 1 else "vm"
    started: Counter = Counter()
    failures: list[str] = []

    def on_event(event):
        if isinstance(event, TaskStarted):
            started[event.task] += 1
        elif isinstance(event, TaskFailed):
            failures.append(f"{event.task} failed: {event.error}")
        elif isinstance(event, TaskRetrying):
            failures.append(f"{event.task} retries (attempt {event.attempt} failed)")

    print(run(main, engine=engine, params={"spellcheck": "yes"}, on_event=on_event))
    print("calls started:", ", ".join(f"{name} x{n}" for name, n in sorted(started.items())))
    print("\n".join(sorted(failures)))
