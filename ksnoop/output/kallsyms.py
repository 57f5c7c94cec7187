# SPDX-License-Identifier: GPL-2.0-only
"""Kernel addresses -> `function+0xoffset [module]`, from /proc/kallsyms.

`parse_kallsyms` keeps vmlinux's lines as read (the kernel lists them by address) and parses the
rest into symbols sorted by address; `Kallsyms.find` looks an address up in both by bisection.
`Symbolizer` reads the file only when the first stack needs it (after the programs are loaded, so
their own `[bpf]` symbols are there too) and falls back to hex addresses, with one warning, when
the kernel hides them (kptr_restrict) or the file is unreadable.
"""

from __future__ import annotations

import bisect
import logging
import operator
import re
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Tuple, Union

log = logging.getLogger(__name__)

KALLSYMS_PATH = "/proc/kallsyms"
# Frame texts kept; stacks repeat the same few thousand return addresses.
_CACHE_SIZE = 1 << 16


class Symbol(NamedTuple):
    address: int
    name: str
    module: str  # "" for vmlinux


class Kallsyms:
    """Text symbols by address, from vmlinux's lines kept as the kernel wrote them (`listing`,
    sorted by address) and from a list of the rest (modules, BPF programs, trampolines).

    `hidden` is True when every address read as zero: without CAP_SYSLOG, or with
    kernel.kptr_restrict=2, the kernel prints the names but not where they are.
    """

    def __init__(self, symbols: Iterable[Tuple[int, str, str]], hidden: bool = False, listing: bytes = b""):
        self._parts: Tuple[_Part, ...] = (_Listing(listing), _Sorted(symbols))
        self.hidden = hidden
        # Answers kept: records name the same few function pointers over and over.
        self._found: Dict[int, Optional[Symbol]] = {}

    def __len__(self) -> int:
        return sum(map(len, self._parts))

    def find(self, address: int) -> Optional[Symbol]:
        """The symbol at or last below `address`; None below the first symbol or when hidden."""
        if self.hidden:
            return None
        if address in self._found:
            return self._found[address]
        found = [s for s in (part.at_or_below(address) for part in self._parts) if s is not None]
        if len(self._found) >= _CACHE_SIZE:
            self._found.clear()
        symbol = self._found[address] = max(found, key=_ADDRESS) if found else None  # of equal addresses, vmlinux's
        return symbol

    def function_at(self, address: int) -> Optional[Symbol]:
        """The symbol that starts exactly at `address` (a function pointer's target), or None."""
        symbol = self.find(address)
        return symbol if symbol is not None and symbol.address == address else None

    def end_of(self, symbol: Symbol) -> Optional[int]:
        """Where the next symbol above `symbol` starts (the end of its code), or None for the last."""
        ends = [e for e in (part.next_above(symbol.address) for part in self._parts) if e is not None]
        return min(ends) if ends else None

    def by_name(self, name: str, module: str = "") -> Optional[Symbol]:
        """The symbol called `name` in vmlinux (or `module`); of several (static functions of one
        name in two files), the lowest."""
        for part in self._parts:
            symbol = part.named(name, module)
            if symbol is not None:
                return symbol
        return None

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
        with open(path, "rb") as f:
            return parse_kallsyms(f.read())


_ADDRESS = operator.itemgetter(0)  # C-level, as sorted() and map() want it
# Types of code: global and local text, and weak symbols; data symbols (D/d/B/b/R/r, listed only
# with CONFIG_KALLSYMS_ALL) and absolute ones (A) are left out.
_TEXT_TYPES = b"TtWw"
# A line's type between two spaces: no name or address holds a space, so these are types alone.
_TEXT_MARKS = tuple(b" %c " % kind for kind in _TEXT_TYPES)


class _Part:
    """Symbols of one kind of source, asked the questions Kallsyms combines."""

    def __len__(self) -> int:
        raise NotImplementedError

    def at_or_below(self, address: int) -> Optional[Symbol]:
        raise NotImplementedError

    def next_above(self, address: int) -> Optional[int]:
        raise NotImplementedError

    def named(self, name: str, module: str) -> Optional[Symbol]:
        raise NotImplementedError


class _Sorted(_Part):
    """Parsed symbols, sorted by address (stable: of two names at one address, the first listed wins)."""

    def __init__(self, symbols: Iterable[Tuple[int, str, str]]):
        self._symbols = sorted(symbols, key=_ADDRESS)
        self._addresses = list(map(_ADDRESS, self._symbols))
        self._names: Optional[List[str]] = None

    def __len__(self) -> int:
        return len(self._symbols)

    def at_or_below(self, address: int) -> Optional[Symbol]:
        index = bisect.bisect_right(self._addresses, address) - 1
        if index < 0:
            return None
        first = bisect.bisect_left(self._addresses, self._addresses[index])
        return Symbol(*self._symbols[first])

    def next_above(self, address: int) -> Optional[int]:
        index = bisect.bisect_right(self._addresses, address)
        return self._addresses[index] if index < len(self._addresses) else None

    def named(self, name: str, module: str) -> Optional[Symbol]:
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


class _Listing(_Part):
    """vmlinux's lines of /proc/kallsyms as read (`ADDRESS TYPE NAME`), looked up where they lie.

    The kernel lists its own symbols in its table's order, which is by address (its lookups bisect
    that table), so an address is found by bisecting byte offsets and reading a line or two: a
    function graph asks of a few hundred addresses, and parsing 100,000 lines first takes a second
    under emulation. Data symbols (with CONFIG_KALLSYMS_ALL) lie among the code and are stepped over.
    """

    def __init__(self, text: bytes):
        self._text = text

    def __len__(self) -> int:
        return sum(map(self._text.count, _TEXT_MARKS))

    def _line_start(self, offset: int) -> int:
        return self._text.rfind(b"\n", 0, offset) + 1

    def _symbol(self, start: int) -> Symbol:
        address, _, name = self._text[start : self._text.index(b"\n", start)].split(b" ")
        return Symbol(int(address, 16), name.decode(errors="replace"), "")

    def _address(self, start: int) -> int:
        return int(self._text[start : self._text.index(b" ", start)], 16)

    def sample_addresses(self, count: int) -> List[int]:
        """The addresses of about `count` lines spread evenly over the listing, in its order."""
        step = max(1, len(self._text) // count)
        return [self._address(self._line_start(offset)) for offset in range(0, len(self._text), step)]

    def span(self) -> Tuple[int, ...]:
        """The lowest and the highest address listed; () when nothing is."""
        if not self._text:
            return ()
        return self._address(0), self._address(self._line_start(len(self._text) - 1))

    def _last_line_at_or_below(self, address: int) -> Optional[int]:
        """Where the last line whose address is at or below `address` starts."""
        low, high = 0, len(self._text)
        while low < high:  # the first offset in a line above `address`
            middle = (low + high) // 2
            if self._address(self._line_start(middle)) <= address:
                low = middle + 1
            else:
                high = middle
        return self._line_start(low - 1) if low else None

    def _text_line_from(self, offset: int, backwards: bool) -> Optional[int]:
        """Where the nearest line of code starts, at or after `offset` (at or before, backwards).
        Looked for in windows that double: a rare type (W) is far away, and a search to the end of
        5 MB for each would cost more than the lookup."""
        text, window = self._text, 1 << 12
        if backwards:
            end = text.find(b"\n", offset)
            while True:
                start = max(0, end - window)
                at = max(text.rfind(mark, start, end) for mark in _TEXT_MARKS)
                if at >= 0:
                    return self._line_start(at)
                if start == 0:
                    return None
                window *= 2
        while True:
            end = min(len(text), offset + window)
            found = [at for at in (text.find(mark, offset, end) for mark in _TEXT_MARKS) if at >= 0]
            if found:
                return self._line_start(min(found))
            if end == len(text):
                return None
            window *= 2

    def at_or_below(self, address: int) -> Optional[Symbol]:
        line = self._last_line_at_or_below(address)
        if line is None:
            return None
        line = self._text_line_from(line, backwards=True)
        if line is None:
            return None
        symbol = self._symbol(line)
        while line:  # back to the first of its aliases: the name the kernel itself would give
            previous = self._line_start(line - 1)
            if self._address(previous) != symbol.address:
                break
            if self._text[self._text.index(b" ", previous) + 1] in _TEXT_TYPES:
                symbol = self._symbol(previous)
            line = previous
        return symbol

    def next_above(self, address: int) -> Optional[int]:
        line = self._last_line_at_or_below(address)
        following = 0 if line is None else self._text.index(b"\n", line) + 1
        line = self._text_line_from(following, backwards=False)
        return None if line is None else self._address(line)

    def named(self, name: str, module: str) -> Optional[Symbol]:
        if module:
            return None
        text, wanted = self._text, b" " + name.encode() + b"\n"
        at = text.find(wanted)
        while at >= 0:  # the lowest first: the listing is by address
            if text[at - 2 : at - 1] == b" " and text[at - 1] in _TEXT_TYPES:
                return self._symbol(self._line_start(at))
            at = text.find(wanted, at + 1)
        return None


# `ADDRESS TYPE NAME`, then `\t[MODULE]` for a module's (or a BPF program's, `[bpf]`) symbols.
_TEXT_LINE = re.compile(r"^([0-9a-fA-F]+) [TtWw] (\S+)(?:\t\[(\S+)\])?$", re.MULTILINE)


def parse_kallsyms(text: Union[str, bytes]) -> Kallsyms:
    """/proc/kallsyms text -> its text symbols; other lines (data symbols, anything odd) are skipped."""
    data = text.encode() if isinstance(text, str) else text
    # vmlinux's lines come first, three words each; the first line with a `\t[module]` starts
    # the rest, which is parsed (a few thousand lines where modules are loaded).
    modules = data.find(b"\t[")
    head_end = len(data) if modules == -1 else data.rfind(b"\n", 0, modules) + 1
    listing = data[:head_end]
    if not _well_formed(listing):
        listing, head_end = b"", 0
    found = _TEXT_LINE.findall(data[head_end:].decode(errors="replace"))
    symbols = [(int(address, 16), name, module) for address, name, module in found]
    addresses = [address for address, _, _ in symbols] + list(_Listing(listing).span())
    hidden = bool(addresses) and not any(addresses)
    return Kallsyms(symbols, hidden=hidden, listing=listing)


def _well_formed(listing: bytes) -> bool:
    """Is every line `ADDRESS TYPE NAME`, each address hex (checked at both ends)? Anything else
    (a kernel that writes more words) is parsed line by line instead."""
    if not listing:
        return True
    lines = listing.count(b"\n")
    if not listing.endswith(b"\n") or listing.count(b" ") != 2 * lines:
        return False
    first, last = listing[: listing.index(b"\n")], listing[listing.rfind(b"\n", 0, len(listing) - 1) + 1 : -1]
    if not all(_HEX_WORD.fullmatch(line.split(b" ")[0]) and len(line.split(b" ")[1]) == 1 for line in (first, last)):
        return False
    # In address order, as bisecting needs: asked of lines spread over the listing, not proved (that
    # would parse every line); a file out of order shows at once in all but the odd case.
    samples = _Listing(listing).sample_addresses(_ORDER_SAMPLES)
    return all(map(operator.le, samples, samples[1:]))


_ORDER_SAMPLES = 256


_HEX_WORD = re.compile(rb"[0-9a-fA-F]+")


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
