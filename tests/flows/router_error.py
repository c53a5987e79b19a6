"""A Router whose selector picks a key no route has: exit 1 naming the node."""

from cascade_graph import Router, task


@task
def add(a, b):
    return a + b


@task
def choose():
    return "nowhere"


@task
def pick(value):
    return value


main = pick(Router(choose(), routes={"left": add(1, 1), "right": add(2, 2)}))
