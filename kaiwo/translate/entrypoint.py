"""Entrypoints: the KaiwoJob/KaiwoService ``entrypoint`` string -> a container command or a Ray entrypoint.

Shell form (docs/design/upstream.md#kaiwojob-spec): ``[<shell>, "-c", <script>]`` where the shell is ``/bin/sh`` unless
the first line is a ``#!`` line, which names the interpreter (and is removed from the script). A backslash-newline
becomes a space. Choices where upstream is silent (docs/design/decisions.md D23): the script is stripped of surrounding
blank space; the ``#!`` line is split on white space, so ``#!/usr/bin/env python3`` gives ``["/usr/bin/env", "python3",
"-c", script]``; the Ray entrypoint also has its line continuations joined (it is run by a shell as one line).
"""

from __future__ import annotations

import re

DEFAULT_SHELL = "/bin/sh"
_CONTINUATION = re.compile(r"\\\r?\n")


def join_continuations(text: str) -> str:
    return _CONTINUATION.sub(" ", text)


def shell_command(entrypoint: str) -> list[str]:
    script = entrypoint.strip()
    interpreter = [DEFAULT_SHELL]
    if script.startswith("#!"):
        first, _, rest = script.partition("\n")
        interpreter = first[2:].split() or interpreter
        script = rest.strip()
    return [*interpreter, "-c", join_continuations(script)]


def ray_entrypoint(entrypoint: str) -> str:
    return join_continuations(entrypoint.strip())
