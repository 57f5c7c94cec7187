# SPDX-License-Identifier: GPL-2.0-only
"""Kernel addresses -> `function+0xoffset [module]`, from /proc/kallsyms.

`parse_kallsyms` turns the file's text into text symbols sorted by address, and `Kallsyms.find`
looks an address up by bisection. `Symbolizer` reads the file only when the first stack needs
it (after the programs are loaded, so their own `[bpf]` symbols are there too) and falls back to
hex addresses, with one warning, when the kernel hides them (kptr_restrict) or the file is unreadable.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import operator
import re
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Tuple

log = logging.getLogger(__name__)

KALLSYMS_PATH = "/proc/kallsyms"
# Frame texts kept; stacks repeat the same few thousand return addresses.
_CACHE_SIZE = 1 << 16


class Symbol(NamedTuple):
    address: int
    name: str
    module: str  # "" for vmlinux


class Kallsyms:
    """Text symbols sorted by address.

    `hidden` is True when every address read as zero: without CAP_SYSLOG, or with
    kernel.kptr_restrict=2, the kernel prints the names but not where they are.
    """

    def __init__(self, symbols: Iterable[Tuple[int, str, str]], hidden: bool = False):
        # Stable: of two names at one address (aliases), the first listed wins.
        ordered = sorted(symbols, key=_ADDRESS)
        self._addresses = list(map(_ADDRESS, ordered))
        self._symbols = ordered
        self._names: Optional[List[str]] = None
        self.hidden = hidden

    def __len__(self) -> int:
        return len(self._symbols)

    def find(self, address: int) -> Optional[Symbol]:
        """The symbol at or last below `address`; None below the first symbol or when hidden."""
        if self.hidden:
            return None
        index = bisect.bisect_right(self._addresses, address) - 1
        if index < 0:
            return None
        first = bisect.bisect_left(self._addresses, self._addresses[index])
        return Symbol(*self._symbols[first])

    def function_at(self, address: int) -> Optional[Symbol]:
        """The symbol that starts exactly at `address` (a function pointer's target), or None."""
        symbol = self.find(address)
        return symbol if symbol is not None and symbol.address == address else None

    def end_of(self, symbol: Symbol) -> Optional[int]:
        """Where the next symbol above `symbol` starts (the end of its code), or None for the last."""
        index = bisect.bisect_right(self._addresses, symbol.address)
        return self._addresses[index] if index < len(self._addresses) else None

    def by_name(self, name: str, module: str = "") -> Optional[Symbol]:
        """The symbol called `name` in vmlinux (or `module`); of several (static functions of one
        name in two files), the lowest."""
        if self._names is None:  # C-level: a list of the names, searched by list.index
            self._names = list(map(operator.itemgetter(1), self._symbols))
        start = 0
        while True:
            try:
                at = self._names.index(name, start)
            except ValueError:
                return None
            if self._symbols[at][2] == module:
                return Symbol(*self._symbols[at])
            start = at + 1

    def describe(self, address: int) -> str:
        """`name+0xoffset`, `name+0xoffset [module]` for a module's symbol, or `0x...` when unknown."""
        symbol = self.find(address)
        if symbol is None:
            return f"0x{address:x}"
        text = f"{symbol.name}+0x{address - symbol.address:x}"
        return f"{text} [{symbol.module}]" if symbol.module else text

    @classmethod
    def load(cls, path: str = KALLSYMS_PATH) -> "Kallsyms":
        """Read and parse the file; OSError if it cannot be read."""
        with open(path, encoding="utf-8", errors="replace") as f:
            return parse_kallsyms(f.read())


_ADDRESS = operator.itemgetter(0)  # C-level: a function graph parses 100,000 symbols under emulation

# `ADDRESS TYPE NAME`, then `\t[MODULE]` for a module's (or a BPF program's, `[bpf]`) symbols.
# Types of code: global and local text, and weak symbols; data symbols (D/d/B/b/R/r, listed only
# with CONFIG_KALLSYMS_ALL) and absolute ones (A) are left out.
_TEXT_LINE = re.compile(r"^([0-9a-fA-F]+) [TtWw] (\S+)(?:\t\[(\S+)\])?$", re.MULTILINE)
_TEXT_TYPES = frozenset("TtWw")


def parse_kallsyms(text: str) -> Kallsyms:
    """/proc/kallsyms text -> its text symbols; other lines (data symbols, anything odd) are skipped."""
    # Built by C-level iterators, not a Python step a line: 100,000 lines take seconds under
    # emulation. vmlinux's lines come first, three words each (address, type, name); the first
    # line with a `\t[module]` starts the rest, which the pattern reads.
    modules = text.find("\t[")
    head_end = len(text) if modules == -1 else text.rfind("\n", 0, modules) + 1
    words = text[:head_end].split()
    found: List[Tuple[str, str, str]] = []
    if len(words) % 3 == 0:
        is_text = map(_TEXT_TYPES.__contains__, words[1::3])
        found.extend(itertools.compress(zip(words[0::3], words[2::3], itertools.repeat("")), is_text))
    else:  # a line that is not three words: read it all line by line
        head_end = 0
    found.extend(_TEXT_LINE.findall(text, head_end))
    addresses = list(map(int, map(_ADDRESS, found), itertools.repeat(16)))
    symbols = list(zip(addresses, map(operator.itemgetter(1), found), map(operator.itemgetter(2), found)))
    hidden = bool(addresses) and not any(addresses)
    return Kallsyms(symbols, hidden=hidden)


class Symbolizer:
    """Stacks of addresses -> frame texts, reading /proc/kallsyms once, when first needed.

    When the addresses cannot be named (the file is hidden by kptr_restrict, unreadable or empty),
    frames are `0x...` and `warn` is called once with the reason. Each address's text is cached.
    """

    def __init__(self, warn: Callable[[str], object], path: str = KALLSYMS_PATH):
        self._warn = warn
        self._path = path
        self._kallsyms: Optional[Kallsyms] = None
        self._cache: Dict[int, str] = {}

    def _loaded(self) -> Kallsyms:
        if self._kallsyms is None:
            reason = None
            try:
                self._kallsyms = Kallsyms.load(self._path)
            except OSError as err:
                self._kallsyms = Kallsyms(())
                reason = f"cannot read {self._path}: {err.strerror or err}"
            else:
                if self._kallsyms.hidden:
                    reason = f"{self._path} hides kernel addresses (kernel.kptr_restrict, or no CAP_SYSLOG)"
                elif not len(self._kallsyms):
                    reason = f"{self._path} lists no kernel functions"
            if reason is not None:
                self._warn(f"{reason}; kernel stacks show raw addresses")
            log.debug("%d kernel text symbols from %s", len(self._kallsyms), self._path)
        return self._kallsyms

    def frames(self, addresses: Tuple[int, ...]) -> List[str]:
        """One text per address, innermost first, from the traced function on: the frames of
        ksnoop's own program and the tracing glue that called it are left out."""
        cache = self._cache
        out: List[str] = []
        for address in addresses:
            text = cache.get(address)
            if text is None:
                if len(cache) >= _CACHE_SIZE:
                    cache.clear()
                text = cache[address] = self._loaded().describe(address)
            if not out and _is_tracing_glue(text):
                continue
            out.append(text)
        return out


class FunctionNames:
    """Function pointers' targets by name, from /proc/kallsyms read when the first one is asked for
    (a trace that shows none never reads it). Where it cannot be read or hides addresses, nothing
    is named and the pointers show as addresses, without a word: they are still right."""

    def __init__(self, path: str = KALLSYMS_PATH):
        self._path = path
        self._kallsyms: Optional[Kallsyms] = None

    def __call__(self, address: int) -> Optional[str]:
        """`tcp_v4_rcv`, `br_dev_xmit [bridge]`, or None when no function starts at `address`."""
        if self._kallsyms is None:
            try:
                self._kallsyms = Kallsyms.load(self._path)
            except OSError:
                self._kallsyms = Kallsyms(())
        symbol = self._kallsyms.function_at(address)
        if symbol is None:
            return None
        return f"{symbol.name} [{symbol.module}]" if symbol.module else symbol.name


# The innermost frames of a stack taken by a tracing program: the program itself ([bpf]), the
# tracepoint's dispatch (bpf_trace_run<N>, __bpf_trace_<class>) or an fentry trampoline.
_GLUE_PREFIXES = ("bpf_trace_run", "__bpf_trace_", "bpf_trampoline_", "__bpf_prog_enter", "__bpf_prog_exit")


def _is_tracing_glue(frame: str) -> bool:
    return frame.endswith(" [bpf]") or frame.startswith(_GLUE_PREFIXES)
