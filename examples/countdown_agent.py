"""An agent loop written as a tail call: think, update the notes, go again.

The agent has a goal and a plan (a list of open questions). Each step it
"thinks": it takes the next open question, writes down what it decided and,
sometimes, adds a follow-up question to the plan. While its step budget (the
``steps`` parameter) lasts and questions remain, ``think`` returns a call to
itself: a tail call, so a budget of a million steps needs no deeper stack
than a budget of five. When it stops, it tail-calls ``summarize``.

The thinking is a pure function of the state (no model, no randomness), so
every run prints the same summary.

Run it:

    python -m cascade_vm run examples/countdown_agent.py -p steps=5
    python -m cascade_vm run examples/countdown_agent.py -p steps=3 --engine graph
    python -m cascade_vm run examples/countdown_agent.py -p steps=100 --json
"""

from cascade_graph import Param, task

GOAL = "organise a picnic for six friends on Saturday"

PLAN = (
    "where should we go?",
    "what will the weather be?",
    "what food do we bring?",
    "who brings what?",
    "how do we get there?",
)

#: What the agent concludes for each question, and the follow-up it raises (or None).
KNOWLEDGE = {
    "where should we go?": ("the lakeside park: shade, tables, a short walk", None),
    "what will the weather be?": (
        "sunny in the morning, showers after 4 pm",
        "when should we leave?",
    ),
    "what food do we bring?": (
        "sandwiches, fruit, lemonade; one friend is vegetarian",
        "is there a vegetarian main?",
    ),
    "who brings what?": ("two bring food, two drinks, two blankets and games", None),
    "how do we get there?": ("bikes; the park is 4 km away", None),
    "when should we leave?": ("meet at 10:30, pack up by 3:30", None),
    "is there a vegetarian main?": ("a big tomato and mozzarella salad", None),
}


def step(state: dict) -> dict:
    """One thought: answer the first open question, note it, queue any follow-up.

    A plain function on plain data: the state goes in, a new state comes out.
    """
    question, *rest = state["open"]
    answer, follow_up = KNOWLEDGE.get(question, ("no idea yet", None))
    if follow_up is not None:
        rest.append(follow_up)
    return {
        "goal": state["goal"],
        "open": rest,
        "notes": [*state["notes"], (question, answer)],
    }


@task
def think(state: dict, budget: int):
    """Think while budget and open questions remain; then summarise. Each turn is a tail call."""
    if budget <= 0 or not state["open"]:
        return summarize(state, budget)
    return think(step(state), budget - 1)


@task
def summarize(state: dict, budget_left: int) -> str:
    """The agent's report: what it decided, and what is still open."""
    lines = [f"Goal: {state['goal']}"]
    lines.append(f"Thought for {len(state['notes'])} steps ({budget_left} left in the budget):")
    for number, (question, answer) in enumerate(state["notes"], start=1):
        lines.append(f"  {number}. {question} -> {answer}")
    if state["open"]:
        lines.append(f"Still open: {'; '.join(state['open'])}")
    else:
        lines.append("Nothing left open: the plan is ready.")
    return "\n".join(lines)


steps = Param("steps", default=3, type=int, help="how many thoughts the agent may have")

main = think({"goal": GOAL, "open": list(PLAN), "notes": []}, steps)
