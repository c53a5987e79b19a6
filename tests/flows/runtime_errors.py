"""Errors the engine finds at run time; each target must exit 1 naming the node.

The Router case is in router_error.py.
"""

from cascade_graph import inject, task


@task
def add(a, b):
    return a + b


@task
def use_db(db=inject("no_such_resource")):  # noqa: B008 - the way to inject
    return db


@task
def identity(x):
    return x


map_lengths = add.map([1, 2, 3], [1, 2])
unknown_resource = use_db()
cache_key = identity(object()).with_cache()
