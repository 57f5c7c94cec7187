# SPDX-License-Identifier: GPL-2.0-only
"""Python functions written at run time, as collections.namedtuple and dataclasses write theirs:
a type's reader and a line's renderer become straight-line code (one unpack into locals, one
%-format), with no loop or dispatch left for each value.

Only generated identifiers go into the source; every value (structs, tables, templates, type and
member names) is bound as a global of the function, so no text from BTF or the kernel is code.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List


class PySource:
    """The statements of one function being written, and the objects its globals name."""

    def __init__(self) -> None:
        self.lines: List[str] = []
        self.globals: Dict[str, Any] = {}
        self._locals = 0

    def bind(self, value: Any, stem: str = "g") -> str:
        """A global name for `value` in the generated function."""
        name = f"_{stem}{len(self.globals)}"
        self.globals[name] = value
        return name

    def local(self, stem: str = "v") -> str:
        """A fresh local variable name."""
        self._locals += 1
        return f"{stem}{self._locals}"

    def add(self, statement: str) -> None:
        self.lines.append(statement)

    def function(self, name: str, params: str, result: str) -> Callable[..., Any]:
        """def name(params): <the statements>; return result."""
        body = "\n".join("    " + line for line in [*self.lines, f"return {result}"])
        code = compile(f"def {name}({params}):\n{body}\n", f"<ksnoop generated {name}>", "exec")
        namespace = dict(self.globals)
        exec(code, namespace)  # noqa: S102 - the source above holds only generated names
        function: Callable[..., Any] = namespace[name]
        return function
