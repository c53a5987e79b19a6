"""A Param met only in a tail call: bound at module level so -p can name it."""

from cascade_graph import Param, task

LIMIT = Param("limit", default=3, type=int)


@task
def climb(i, limit=None):
    if limit is not None and i >= limit:
        return i
    return climb(i + 1, LIMIT)


main = climb(0)
