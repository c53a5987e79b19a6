"""A flow importing a module from its own folder."""

from flow_helpers import double

from cascade_graph import task


@task
def twice(x):
    return double(x)


main = twice(21)
