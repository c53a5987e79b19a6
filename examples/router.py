"""Support-ticket triage with ``Router``: each ticket takes one of four branches.

Every ticket is classified (``billing``, ``bug``, ``question`` or ``spam``)
and a ``Router`` picks what to do about it:

    classify(ticket) --Router--> billing:  refund(ticket, lookup_account(customer))
                              |-> bug:      file_issue(ticket)
                              |-> question: suggest_article(ticket)   (shared, see below)
                              '-> spam:     discard(ticket)
    compose(ticket, outcome=<the selected route's value>, see_also=suggest_article(ticket),
            greeting=Router(tone, {"friendly": ..., "formal": ...}))

What it shows:

- Only the selected route runs: the routes not selected never start (a
  listener sees one ``TaskSkipped(reason="pruned")`` per route root). The
  customer's account is looked up only for billing tickets, because
  ``lookup_account`` sits inside the billing route.
- A route that is also needed elsewhere runs anyway, and only once: every
  reply carries a "see also" article, and for a question that same lazy call
  is the answer. It is one node, so it runs once per ticket whatever the
  Router selects.
- The selector may be a lazy call (``classify(ticket)``) or a ``Param``
  (``tone``), and routes may be plain values (the greetings). An unknown
  key fails the run naming the known keys; a key chosen by a parameter is
  checked before any task runs: ``-p tone=rude`` exits 2 (bad input).

Run it:

    python -m cascade_vm run examples/router.py
    python -m cascade_vm run examples/router.py -p tone=formal --engine graph
    python -m cascade_vm run examples/router.py -p tone=rude     # exit 2: no route 'rude'
    python examples/router.py [vm|graph]    # with Cascade installed: what ran, what was pruned
"""

from cascade_graph import Param, Router, task

TICKETS = [
    {"id": 101, "customer": "c-17", "text": "I was charged twice for my subscription"},
    {"id": 102, "customer": "c-03", "text": "The export button crashes the app"},
    {"id": 103, "customer": "c-42", "text": "How do I change my password?"},
    {"id": 104, "customer": "c-99", "text": "WIN A FREE CRUISE!!! Click here"},
]

ACCOUNTS = {"c-17": {"plan": "pro", "monthly": 12.0}, "c-42": {"plan": "free", "monthly": 0.0}}

ARTICLES = {
    "password": "KB-7: Changing your password",
    "export": "KB-12: Exporting your data",
    "charged": "KB-3: Understanding your invoice",
}

tone = Param("tone", default="friendly", help="how replies greet the customer: friendly or formal")


@task
def classify(ticket: dict) -> str:
    """A keyword classifier standing in for a model."""
    text = ticket["text"].lower()
    if "free" in text and "!!!" in text:
        return "spam"
    if "charged" in text or "invoice" in text:
        return "billing"
    if "crash" in text or "error" in text:
        return "bug"
    return "question"


@task
def lookup_account(customer: str) -> dict:
    return ACCOUNTS.get(customer, {"plan": "unknown", "monthly": 0.0})


@task
def refund(ticket: dict, account: dict) -> str:
    return f"refunded {account['monthly']:.2f} EUR on the {account['plan']} plan"


@task
def file_issue(ticket: dict) -> str:
    return f"filed BUG-{ticket['id']} for engineering"


@task
def suggest_article(ticket: dict) -> str:
    text = ticket["text"].lower()
    for word, article in ARTICLES.items():
        if word in text:
            return article
    return "KB-1: Getting started"


@task
def discard(ticket: dict) -> None:
    return None


@task
def compose(ticket: dict, outcome, see_also: str, greeting: str) -> str:
    if outcome is None:
        return f"#{ticket['id']}: no reply (spam)"
    if outcome == see_also:  # a question: the article is the answer
        return f"#{ticket['id']}: {greeting}! This should help: {see_also}."
    return f"#{ticket['id']}: {greeting}! Done: {outcome}. See also {see_also}."


@task
def report(replies: list) -> str:
    return "\n".join(replies)


greeting = Router(tone, routes={"friendly": "Hi there", "formal": "Dear customer"})


def triage(ticket: dict):
    """The workflow for one ticket (plain Python building lazy calls)."""
    article = suggest_article(ticket)  # one node: a route *and* an argument of compose
    outcome = Router(
        classify(ticket),
        routes={
            "billing": refund(ticket, lookup_account(ticket["customer"])),
            "bug": file_issue(ticket),
            "question": article,
            "spam": discard(ticket),
        },
    )
    return compose(ticket, outcome, see_also=article, greeting=greeting)


main = report([triage(t) for t in TICKETS])


if __name__ == "__main__":
    # From Python: watch which tasks ran and which routes were pruned.
    import sys
    from collections import Counter

    from cascade_graph import TaskSkipped, TaskStarted
    from cascade_vm import run

    engine = sys.argv[1] if len(sys.argv) > 1 else "vm"
    started: Counter = Counter()
    pruned: Counter = Counter()

    def on_event(event):
        if isinstance(event, TaskStarted):
            started[event.task] += 1
        elif isinstance(event, TaskSkipped) and event.reason == "pruned":
            pruned[event.task] += 1

    print(run(main, engine=engine, on_event=on_event))
    print("ran:   ", ", ".join(f"{name} x{n}" for name, n in sorted(started.items())))
    print("pruned:", ", ".join(f"{name} x{n}" for name, n in sorted(pruned.items())))
