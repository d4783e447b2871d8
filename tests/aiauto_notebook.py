"""The AIAuto client's README (tests/reference/aiauto-client-README.md, a copy of the one
shipped beside this repository in shared/reference/) and a notebook to run its code blocks in.

A block runs as a user runs it: the one changed line is the import (`import aiauto` becomes
`import optuna_grpc_storage as aiauto`), and the README's token placeholders ('<token>',
'aiauto_xxx') become the user's token; the endpoint comes from OPTUNA_GRPC_STORAGE_ENDPOINT.
Cells run in one `__main__` namespace, like a Jupyter kernel, with the working directory on
sys.path; a `%%writefile` cell writes its body to the file, as IPython does.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parent / "reference" / "aiauto-client-README.md"
SHARED_README = Path("shared") / "reference" / "aiauto-client-README.md"
_IMPORT = re.compile(r"^import (.+)$", re.M)


@dataclass(frozen=True)
class Block:
    line: int  # of its first line of code in the README (after the ```python fence)
    source: str


def python_blocks(text: str) -> list[Block]:
    """Every ```python block of a Markdown text, in order."""
    out, lines, start = [], text.splitlines(), None
    for i, line in enumerate(lines, 1):
        if start is None and line.strip() == "```python":
            start = i + 1
        elif start is not None and line.strip() == "```":
            out.append(Block(start, "\n".join(lines[start - 1 : i - 1]) + "\n"))
            start = None
    return out


def blocks() -> dict[int, Block]:
    """The vendored README's Python blocks by first line."""
    return {b.line: b for b in python_blocks(README.read_text(encoding="utf-8"))}


def shared_readme() -> Path | None:
    """The reference README beside the checkout (…/shared/reference/), if there is one."""
    given = os.environ.get("OGS_AIAUTO_README")
    if given:
        return Path(given)
    for parent in Path(__file__).resolve().parents:
        if (parent / SHARED_README).is_file():
            return parent / SHARED_README
    return None


def adapt(source: str, token: str) -> str:
    """What the user changes: the import of aiauto, and the token placeholder."""
    def one(match: re.Match[str]) -> str:
        names = [n.strip() for n in match.group(1).split(",")]
        return "import " + ", ".join("optuna_grpc_storage as aiauto" if n == "aiauto" else n
                                     for n in names)

    source = _IMPORT.sub(one, source)
    return source.replace("'<token>'", repr(token)).replace("'aiauto_xxx'", repr(token))


class Notebook:
    """One kernel: a __main__ namespace the cells share; `directory` is the working directory
    (the caller chdirs there and puts it on sys.path, as Jupyter does)."""

    def __init__(self, token: str, directory: Path) -> None:
        self.token, self.directory = token, directory
        self.ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}

    def run(self, source: str, where: str = "<notebook cell>") -> dict[str, Any]:
        first, _, body = source.partition("\n")
        if first.startswith("%%writefile "):  # IPython's cell magic: the body becomes a file
            (self.directory / first.split(None, 1)[1].strip()).write_text(body)
            return self.ns
        exec(compile(source, where, "exec", dont_inherit=True), self.ns)
        return self.ns

    def run_block(self, line: int, source: str | None = None) -> dict[str, Any]:
        """The README's block starting at `line` (or `source`, a stand-in made from it),
        adapted as a user adapts it."""
        text = blocks()[line].source if source is None else source
        return self.run(adapt(text, self.token), f"<AIAuto README line {line}>")

    def forget_modules(self, *names: str) -> None:
        for name in names:
            sys.modules.pop(name, None)
