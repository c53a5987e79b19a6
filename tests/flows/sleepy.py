"""A long async nap, for the Ctrl-C test: it writes MARKER once it has started."""

import asyncio
import os
from pathlib import Path

from cascade_graph import Param, inject, resource, task


@resource
def scratch_area():
    yield "scratch"
    teardown = os.environ.get("CASCADE_TEST_TEARDOWN")
    if teardown:
        Path(teardown).write_text("torn down")


@task
async def nap(marker: str, area=inject("scratch_area")) -> str:  # noqa: B008
    Path(marker).write_text("started")
    await asyncio.sleep(60)
    return "woke up"


main = nap(Param("marker"))
