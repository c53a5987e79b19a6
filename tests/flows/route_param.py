"""A Router whose key is a parameter: a bad key exits 2 before any task runs."""

from cascade_graph import Param, Router, task

STARTED = []  # names of the tasks that ran (the tests read it in-process)


@task
def shout(text: str) -> str:
    STARTED.append("shout")
    return text.upper()


@task
def whisper(text: str) -> str:
    STARTED.append("whisper")
    return text.lower()


@task
def prepare() -> str:
    STARTED.append("prepare")
    return "Hello"


@task
def say(words: str, greeting: str) -> str:
    return f"{greeting}: {words}"


mode = Param("mode", default="shout", help="how to say it: shout or whisper")
main = say(Router(mode, routes={"shout": shout("Hi"), "whisper": whisper("Hi")}), prepare())
