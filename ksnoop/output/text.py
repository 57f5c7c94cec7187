# SPDX-License-Identifier: GPL-2.0-only
"""Events -> text in upstream ksnoop's layout: `TIME CPU PID name(`, one `label = (type)value` line
per value (structs nested and indented), then `);`.

Each probe's record is compiled once into a %-template with the constant text (name, labels,
`(type)` prefixes, colour codes) in place. Every string that came from the kernel is sanitised
(control characters escaped). rich supplies the colour codes, and is imported only for colour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from bpf.plan import Capture, Probe, ProbeKind
from btf import BTF, Array, Enum, Enum64, Float, FuncProto, Int, Ptr, Struct, Union
from bpf.errnos import MAX_ERRNO, find_errno_name
from btf.values import Styles, char_literal, function_text, is_char, number_text, pointer_text, text_renderer

from ksnoop.output.decode import READ_FAILED, Decoder, Event, RawValue, RecordFields
from ksnoop.output.formatter import each_record
from ksnoop.output.kallsyms import KALLSYMS_PATH, FunctionNames, Symbolizer
from ksnoop.spec.resolve import ResolvedTrace
from ksnoop.sanitize import sanitize
from ksnoop.spec.language import RETURN
from ksnoop.spec.targets import Target

INDENT = "    "  # before each value line, and added to every line of a nested struct
STRUCT_INDENT = "  "  # a nested struct's members, under its value line


@dataclass(frozen=True)
class TextLayout:
    """How records are laid out: `zeros` shows members that are all zero (else they are counted,
    `/* 3 zero members */`); `compact` puts each record on one line (retsnoop's compact mode)."""

    zeros: bool = False
    compact: bool = False
    tree: bool = False  # a function graph's lines: format() takes a prefix put before the function

    @property
    def newline(self) -> str:
        return " " if self.compact else "\n"

    @property
    def indent(self) -> str:
        return "" if self.compact else INDENT


READ_FAILED_TEXT = "<read failed>"
NO_KSTACK_TEXT = "<no kernel stack>"  # bpf_get_stack failed
_COMM_CACHE_SIZE = 4096
_KSTACK_CACHE_SIZE = 4096  # distinct stacks whose text is kept

# Styles (rich style names) for the parts of a record when colour is on.
STYLE_HEADER = "bold"
STYLE_TIME = "dim"
STYLE_FUNC = "bold cyan"
STYLE_COMM = "dim"
STYLE_LABEL = "green"
STYLE_TYPE = "blue"
STYLE_VALUE = "yellow"
STYLE_STRING = "magenta"
STYLE_FAILED = "bold red"
STYLE_NOTE = "dim"

Converter = Callable[[Any], str]  # a decoded value (never READ_FAILED) -> its text after ` = `


class _Markup:
    """Plain text, or text with ANSI colours: how constant text and kernel text are made safe and styled.

    With colour, each style's escape codes come from rich once, here; records are then plain
    string concatenation, because asking rich to render markup costs ~0.5 ms a record. Kernel
    text is sanitised, so the only escape sequences in the output are these colour codes.
    """

    def __init__(
        self,
        color: bool,
        function_name: Optional[Callable[[int], Optional[str]]] = None,
        layout: TextLayout = TextLayout(),
    ):
        self.color = color
        self.layout = layout
        self.function_name = function_name  # a function pointer's target, by name
        self._codes: Dict[str, Tuple[str, str]] = {}
        self._value_styles: Optional[Styles] = None

    def _sgr(self, style: str) -> Tuple[str, str]:
        codes = self._codes.get(style)
        if codes is None:
            from rich.color import ColorSystem
            from rich.style import Style

            sample = Style.parse(style).render("\0", color_system=ColorSystem.STANDARD)
            before, _, after = sample.partition("\0")
            codes = self._codes[style] = (before, after)
        return codes

    def text(self, text: str) -> str:
        """Kernel-derived text on one line: control characters escaped."""
        return sanitize(text)

    def style(self, style: str, markup: str) -> str:
        """Already-safe text in a style (as is without colour)."""
        if not self.color or not markup:
            return markup
        before, after = self._sgr(style)
        return before + markup + after

    def style_codes(self, style: str) -> Tuple[str, str]:
        """What goes before and after text in `style`: ("", "") without colour."""
        return self._sgr(style) if self.color else ("", "")

    def styled(self, style: str, text: str) -> str:
        return self.style(style, self.text(text))

    @property
    def value_styles(self) -> Styles:
        """What btf.values' text renderer puts around the parts of a struct's lines, and how it
        cleans BTF names: computed once per formatter."""
        if self._value_styles is None:
            if self.color:
                self._value_styles = Styles(
                    label=self._sgr(STYLE_LABEL),
                    type=self._sgr(STYLE_TYPE),
                    value=self._sgr(STYLE_VALUE),
                    string=self._sgr(STYLE_STRING),
                    note=self._sgr(STYLE_NOTE),
                    clean=sanitize,
                    symbol=self.function_name,
                )
            else:
                self._value_styles = Styles(clean=sanitize, symbol=self.function_name)
        return self._value_styles


class _ProbeFormat:
    __slots__ = ("direct", "direct_template", "direct_duration_template", "template", "duration_template", "converters")

    def __init__(self, target: Target, probe: Probe, with_comm: bool, m: _Markup):
        btf = target.btf
        # Without a comm in the records, the (empty) comm prints as nothing.
        comm = " " + m.style(STYLE_COMM, "/* %s */") if with_comm else "%.0s"
        name = _pct(m.styled(STYLE_FUNC, target.label))
        tree = "%s" if m.layout.tree else ""  # format()'s prefix: the call's place in its tree
        first = m.style(STYLE_TIME, "%16d") + " %4d %8d " + tree + name + "(" + comm
        if probe.kind is ProbeKind.ITER:  # an object, not an event: no time, CPU or (the reader's) pid
            first = "%.0s%.0s%.0s" + name + "(" + comm
        direct_lines: List[str] = [first]
        lines: List[str] = [first]
        converters: List[Converter] = []
        direct = True
        count = len(probe.captures)
        for i, capture in enumerate(probe.captures):
            comma = "," if i < count - 1 else ""
            start = m.layout.indent + _pct(m.styled(STYLE_LABEL, capture.label)) + " = "
            code, convert = _capture_format(btf, capture, m, is_return=probe.kind.is_return and capture.label == RETURN)
            if code is None:
                direct = False
                code = "%s"
            direct_lines.append(start + code + comma)
            lines.append(start + "%s" + comma)
            converters.append(convert)
        last = ");"
        last_duration = ");" + m.style(STYLE_NOTE, " /* duration %d ns */")
        self.direct = direct
        newline = m.layout.newline
        self.direct_template = newline.join(direct_lines + [last])
        self.direct_duration_template = newline.join(direct_lines + [last_duration])
        self.template = newline.join(lines + [last])
        self.duration_template = newline.join(lines + [last_duration])
        self.converters = tuple(converters)


class TextFormatter:
    """Turns Events of one ResolvedTrace into ksnoop's text records.

    ```
                TIME  CPU      PID FUNCTION/ARGS
     123456789012345    1     2813 ip_send_skb( /* curl */
        skb->len = (unsigned int)228,
        skb->dev = (struct net_device){
          .name = (char[16])"lo",
          .ifindex = (int)1,
        }
    );
    ```
    The first line has the time (ns), CPU, pid, the function (`tp:name` for a tracepoint) and
    the task's comm (if the plan copies it); a return record's `);` is followed by
    `/* duration N ns */` when the Event or the caller has it. A value that could not be read
    shows `<read failed>`, a struct cut short a `...` line and `/* truncated: N of M bytes */`.
    A record with a kernel stack has its frames after the `);`, innermost first, one a line,
    indented: `function+0xoffset`, `[module]` after a module's, named by `symbolizer` (`0x...`
    addresses without one).
    With `color`, the result is rich markup (print it with markup on, emoji and highlighting
    off); without, plain text. Either way no control character from the kernel gets through.
    """

    def __init__(
        self,
        resolved: ResolvedTrace,
        *,
        color: bool,
        symbolizer: Optional[Symbolizer] = None,
        kallsyms_path: str = KALLSYMS_PATH,
        layout: TextLayout = TextLayout(),
    ):
        self._markup = _Markup(color, FunctionNames(kallsyms_path), layout)
        self._symbolizer = symbolizer
        self._kstacks: Dict[Tuple[int, ...], str] = {}
        plan = resolved.plan
        self._probes = tuple(
            _ProbeFormat(target, probe, plan.with_comm, self._markup)
            for target, probe in zip(resolved.targets, plan.probes)
        )
        self._comms: Dict[str, str] = {}
        if color:
            self._failed = self._markup.style(STYLE_FAILED, READ_FAILED_TEXT)
        else:
            self._failed = READ_FAILED_TEXT

    def record(self, probe_index: int, fields: RecordFields, decode: Decoder) -> Callable[[Any], str]:
        """One record's text: its Event's."""
        format_event = self.format
        return lambda record: format_event(decode(record))

    def batch(self, probe_index: int, fields: RecordFields, decode: Decoder) -> Callable[[Any], List[str]]:
        """For a buffer of whole records of one probe: their texts, record by record."""
        return each_record(self.record(probe_index, fields, decode), fields.unpacker.size)

    def header(self) -> str:
        """The column header, upstream ksnoop's."""
        return self._markup.style(STYLE_HEADER, "%16s %4s %8s %s" % ("TIME", "CPU", "PID", "FUNCTION/ARGS"))

    def format(self, event: Event, duration_ns: Optional[int] = None, prefix: str = "") -> str:
        """The event's lines joined by newlines, without a final newline. `duration_ns` defaults to
        the event's own; `prefix` (safe text) goes before the function's name with a tree layout."""
        ts, pid, _tid, cpu, probe, comm, values, event_duration_ns, kstack = event
        if kstack is not None:
            return self.format(event._replace(kstack=None), duration_ns, prefix) + self._kstack(kstack)
        if duration_ns is None:
            duration_ns = event_duration_ns
        fmt = self._probes[probe]
        comm_text = self._comms.get(comm)
        if comm_text is None:
            comm_text = self._comm(comm)
        head = (ts, cpu, pid, prefix, comm_text) if self._markup.layout.tree else (ts, cpu, pid, comm_text)
        if fmt.direct:
            # Plain integers fill %d directly; anything else there (READ_FAILED, bytes of an
            # odd-sized int) raises TypeError and takes the converters below.
            try:
                if duration_ns is None:
                    return fmt.direct_template % (head + values)
                return fmt.direct_duration_template % (head + values + (duration_ns,))
            except TypeError:
                pass
        failed = self._failed
        texts = tuple(failed if v is READ_FAILED else convert(v) for convert, v in zip(fmt.converters, values))
        if duration_ns is None:
            return fmt.template % (head + texts)
        return fmt.duration_template % (head + texts + (int(duration_ns),))

    def note(self, text: str) -> str:
        """Safe text as a comment after a record (`/* duration ... */`'s style)."""
        return self._markup.style(STYLE_NOTE, text)

    def _kstack(self, kstack: Tuple[int, ...]) -> str:
        """The frames' lines, each after a newline; kept per stack, since the same ones recur."""
        text = self._kstacks.get(kstack)
        if text is not None:
            return text
        m = self._markup
        if not kstack:
            text = m.layout.newline + m.layout.indent + m.style(STYLE_FAILED, NO_KSTACK_TEXT)
        elif self._symbolizer is None:
            text = "".join(f"{m.layout.newline}{m.layout.indent}0x{address:x}" for address in kstack)
        else:
            text = "".join(
                m.layout.newline + m.layout.indent + m.text(frame) for frame in self._symbolizer.frames(kstack)
            )
        if len(self._kstacks) >= _KSTACK_CACHE_SIZE:
            self._kstacks.clear()
        self._kstacks[kstack] = text
        return text

    def _comm(self, comm: str) -> str:
        if len(self._comms) >= _COMM_CACHE_SIZE:
            self._comms.clear()
        # A %-argument, not template text: no %-escaping. Inside /* */, so "*/" is defused too.
        text = self._comms[comm] = self._markup.text(comm).replace("*/", "*\\/")
        return text


def _pct(text: str) -> str:
    """Constant text for a %-template."""
    return text.replace("%", "%%")


# ---- per-capture choice ---------------------------------------------------------------------------


def value_text(btf: BTF, capture: Capture, is_return: bool = False) -> Converter:
    """A decoded value of `capture` (READ_FAILED too) as records show it, on one line, without
    colour and without its `(type)`: an aggregation key's value."""
    return _capture_format(btf, capture, _Markup(False, None, TextLayout(compact=True)), is_return, labelled=False)[1]


def _capture_format(
    btf: BTF, capture: Capture, m: _Markup, is_return: bool = False, labelled: bool = True
) -> Tuple[Optional[str], Converter]:
    """(the %-code taking the decoded value as is, or None; the converter for any value), each
    including the `(type)` prefix unless not `labelled`. `is_return`: the capture is a function's
    return value."""
    type_label = m.styled(STYLE_TYPE, "(" + btf.type_name(capture.type_id) + ")") if labelled else ""
    typ = btf.skip_modifiers(capture.type_id) if capture.type_id else None
    untyped = _generic_converter(btf, m)

    def generic(v: Any) -> str:
        # What the capture's type did not promise still gets that type's label, unless it has its own.
        return untyped(v) if v is READ_FAILED or isinstance(v, RawValue) else type_label + untyped(v)

    def typed(value_text: Callable[[Any], Optional[str]], style: str = STYLE_VALUE) -> Converter:
        def convert(v: Any) -> str:
            text = value_text(v)
            return generic(v) if text is None else type_label + m.style(style, text)

        return convert

    if capture.string or (isinstance(typ, Array) and is_char(btf.skip_modifiers(typ.type_id))):
        return None, typed(lambda v: _string_literal(v, m) if type(v) is str else None, STYLE_STRING)
    if isinstance(typ, Ptr):
        if isinstance(btf.skip_modifiers(typ.type_id), FuncProto):
            function = function_text(m.function_name)
            return None, typed(lambda v: m.text(function(v)) if type(v) is int else None)
        return None, typed(lambda v: pointer_text(v) if type(v) is int else None)
    if isinstance(typ, Int):
        if typ.is_bool:
            return None, typed(lambda v: ("true" if v else "false") if type(v) is bool else None)
        if typ.size == 1 and is_char(typ):
            return None, typed(lambda v: char_literal(v) if type(v) is int else None)
        number = _number_text(btf, capture, typ, is_return)
        if number is not None:
            return None, typed(lambda v: number(v) if type(v) is int else None)
        direct_code = _pct(type_label) + m.style(STYLE_VALUE, "%d")
        return direct_code, typed(lambda v: str(v) if type(v) is int else None)
    if isinstance(typ, (Enum, Enum64)):
        return None, typed(lambda v: m.text(v) if type(v) is str else (str(v) if type(v) is int else None))
    if isinstance(typ, Float):
        return None, typed(lambda v: repr(v) if type(v) is float else None)
    if isinstance(typ, (Struct, Union, Array)):
        return None, _raw_converter(btf, m, capture.full_size, untyped)
    return None, generic


def _generic_converter(btf: BTF, m: _Markup) -> Converter:
    """Any decoded value whatever the capture's type said: the fallback of every converter."""
    raw_text = _raw_converter(btf, m, 0, str)  # only ever given RawValues, below

    def convert(v: Any) -> str:
        if isinstance(v, RawValue):
            return raw_text(v)
        if v is READ_FAILED:
            return m.style(STYLE_FAILED, READ_FAILED_TEXT)
        if isinstance(v, bool):
            text = "true" if v else "false"
        elif isinstance(v, (int, float)):
            text = repr(v)
        elif isinstance(v, str):
            return m.style(STYLE_STRING, _string_literal(v, m))
        elif isinstance(v, (bytes, bytearray, memoryview)):
            text = "<bytes " + bytes(v).hex() + ">"
        else:
            text = m.text(repr(v))
        return m.style(STYLE_VALUE, text)

    return convert


def _raw_converter(btf: BTF, m: _Markup, full_size: int, generic: Converter) -> Converter:
    """Structs, unions and arrays copied whole (or cut from `full_size` bytes): their text; anything
    else: `generic`'s."""
    texts: Dict[Tuple[int, int], Callable[[RawValue], str]] = {}  # by (type id, bytes copied)

    def convert(v: Any) -> str:
        if type(v) is not RawValue:
            return generic(v)
        key = (v.type_id, len(v.data))
        text = texts.get(key)
        if text is None:
            text = texts[key] = _struct_text(btf, m, v.type_id, len(v.data), full_size)
        return text(v)

    return convert


def _struct_text(btf: BTF, m: _Markup, type_id: int, size: int, full_size: int) -> Callable[[RawValue], str]:
    """What renders a struct's bytes (`size` of them, of `type_id`): its type's compiled text renderer,
    its lines indented under the value line, styled while rendering when colour is on; everything
    but the values made here, once."""
    layout = m.layout
    render = text_renderer(
        btf, type_id, size, styles=m.value_styles, zeroes=layout.zeros, indent="" if layout.compact else STRUCT_INDENT
    )
    join = layout.newline if layout.compact else "\n" + INDENT
    # Followed from a pointer: `*(struct sk_buff *)0xffff... {`, as upstream ksnoop writes it.
    where = m.styled(STYLE_TYPE, f"*({btf.type_name(type_id)} *)")
    before, after = m.style_codes(STYLE_VALUE)
    of = f" of {full_size}" if full_size else ""
    cut = m.style(STYLE_NOTE, f" /* truncated: {size}{of} bytes */")

    def text(raw: RawValue) -> str:
        lines = render(raw.data)
        if raw.address is not None:
            lines[0] = f"{where}{before}0x{raw.address:x}{after} {{"
        return join.join(lines) + cut if raw.truncated else join.join(lines)

    return text


def _number_text(btf: BTF, capture: Capture, typ: Int, is_return: bool) -> Optional[Callable[[int], str]]:
    """How an integer capture reads, where not as a plain number: btf.values' rules for struct
    members (number_text), and the errno name of a function's negative return, as retsnoop
    shows it."""
    foreign = capture.bitfield is None and btf.value_byteorder(capture.type_id) != btf.byteorder
    number = number_text(typ.size, typ.signed, foreign, capture.label)
    if number is not None:
        return number
    if is_return and typ.signed:
        return _with_errno_name
    return None


def _with_errno_name(v: int) -> str:
    name = errno_text(v)
    return f"{v} /* {name} */" if name else str(v)


def errno_text(v: int) -> Optional[str]:
    """`-EBADF` for a negative return that is an errno, else None."""
    name = find_errno_name(-v) if -MAX_ERRNO <= v < 0 else None
    return f"-{name}" if name else None


def returns_errno(btf: BTF, capture: Capture) -> bool:
    """Does a function's return of this capture's type read with its errno name (a signed integer)?"""
    typ = btf.skip_modifiers(capture.type_id) if capture.type_id else None
    return isinstance(typ, Int) and typ.signed and capture.bitfield is None


_STRING_ESCAPES = {ord('"'): '\\"', ord("\n"): "\\n", ord("\t"): "\\t", ord("\r"): "\\r"}


def _string_literal(text: str, m: _Markup) -> str:
    """A char array or string as a C literal, as btf.render writes those inside structs: quotes
    and \\n \\t \\r escaped, other control characters as \\xNN.

    Bytes that were not UTF-8 already read `\\xNN` (the decoder's text_from), so backslashes
    are left as they are rather than doubled.
    """
    return m.text('"' + text.translate(_STRING_ESCAPES) + '"')
