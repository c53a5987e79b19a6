"""A workflow whose task fails in user code called from the task."""

from cascade_graph import task


def ratio(a, b):
    return a / b


@task
def divide(a, b):
    return ratio(a, b)


@task
def add(a, b):
    return a + b


main = add(divide(1, 0), 1)
