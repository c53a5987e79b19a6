"""A plain module next to sibling.py: flows may import their neighbours."""


def double(x):
    return 2 * x
