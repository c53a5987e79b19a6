"""``Router``: choose one of several lazy branches by a selector's value.

Not implemented yet on either engine: constructing one raises
``NotImplementedError`` with a pointer to the issue, rather than running every
branch.
"""

from __future__ import annotations


class Router:
    """``Router(selector, routes={key: lazy, ...})``: becomes the selected route's value."""

    def __init__(self, selector, routes):
        raise NotImplementedError("Router is not implemented yet (tracked in issue 5)")
