"""Map-reduce word count over a short built-in text, with containers of lazies.

The text is cut into paragraphs. Each paragraph is counted by its own task
(the map); the partial counts are merged (the reduce). Along the way the
arguments of tasks are containers holding task calls: ``merge_counts`` takes
a *list* of lazies, ``report`` a *dict* whose values are lazies, a list of
lazies and a tuple of lazies. The engine replaces every lazy by its result
before the call and keeps each container's type and order. The target
itself is a dict of lazies too.

Run it:

    python -m cascade_vm run examples/word_count.py
    python -m cascade_vm run examples/word_count.py -p top=3 --engine graph --json
"""

from cascade_graph import Param, task

TEXT = """\
The river starts as a thin line of water under a stone on the hill. Nobody
sees it start. The water finds the low places and the low places find the
water, and by the first bridge it is already a stream with a name.

At the mill the stream is slow and wide. Children drop sticks from the
bridge and run to the other side to see whose stick comes out first. The
stream does not care whose stick wins; it carries all of them the same way.

By the town the river is deep enough for boats. The boats carry apples down
and bricks up, and the river carries the boats, and the town grows along the
water because the water was there first.

At the sea the river stops being a river. It was never really a line, only
water moving from the hill to the sea, one stone, one bridge, one town at a
time.
"""

#: Short words that say little about the text.
STOP_WORDS = frozenset({
    "a", "an", "and", "as", "at", "by", "first", "for", "from", "is", "it", "of", "on",
    "only", "the", "to", "was", "whose",
})


@task
def words(paragraph: str) -> list[str]:
    """The paragraph's words, lower-case, without punctuation."""
    cleaned = "".join(c.lower() if c.isalpha() or c.isspace() else " " for c in paragraph)
    return cleaned.split()


@task
def count(tokens: list[str]) -> dict[str, int]:
    """How often each interesting word appears (the map step)."""
    counts: dict[str, int] = {}
    for token in tokens:
        if token not in STOP_WORDS:
            counts[token] = counts.get(token, 0) + 1
    return counts


@task
def merge_counts(partials: list[dict[str, int]]) -> dict[str, int]:
    """Add the partial counts together (the reduce step)."""
    total: dict[str, int] = {}
    for partial in partials:
        for word, n in partial.items():
            total[word] = total.get(word, 0) + n
    return total


@task
def top_words(counts: dict[str, int], top: int) -> list[list]:
    """The ``top`` most frequent words, ties broken alphabetically, as [word, count] pairs."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [[word, n] for word, n in ranked[:top]]


@task
def longest(tokens: list[str]) -> str:
    """The longest word (the first one, on a tie)."""
    return max(tokens, key=len)


@task
def report(stats: dict) -> dict:
    """Gather the figures: ``stats`` is a dict of lazies, a list of lazies, a tuple of lazies."""
    sizes = stats["paragraph_sizes"]
    return {
        "paragraphs": len(sizes),
        "words": sum(sizes),
        "distinct_interesting_words": len(stats["counts"]),
        "longest_by_paragraph": list(stats["longest"]),
    }


@task
def size(tokens: list[str]) -> int:
    """Number of words."""
    return len(tokens)


top = Param("top", default=5, type=int, help="how many of the most frequent words to show")

paragraphs = [p for p in TEXT.split("\n\n") if p.strip()]
tokenized = [words(p) for p in paragraphs]  # each used by three consumers: runs once
counts = merge_counts([count(t) for t in tokenized])

main = {
    "top": top_words(counts, top),
    "summary": report(
        {
            "counts": counts,
            "paragraph_sizes": [size(t) for t in tokenized],
            "longest": tuple(longest(t) for t in tokenized),
        }
    ),
}
