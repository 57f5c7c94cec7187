# SPDX-License-Identifier: GPL-2.0-only
"""The CLI's whole table of usage errors, no kernel needed (the mini kernels' BTF by --btf): every
option given a bad value, every command and option misspelt, every spec mistake a user makes.
Each is one `ksnoop: error:` line in ksnoop's words (a spec's adds the spec and a caret under the
fault), exit 2, nothing on stdout: whatever click, typer and rich versions are installed."""

from __future__ import annotations

import pytest

from tests.support import miniiter

# (argv, with "{btf}" for the mini kernel's or "{iter}" for the iterator kernel's BTF; the line)
OPTION_ERRORS = [
    (
        ["tracee"],
        "no command 'tracee'; did you mean 'trace'? the commands are info, list, trace, dump (see ksnoop --help)",
    ),
    (["--bogus"], "no option --bogus (see ksnoop --help)"),
    (["trace"], "ksnoop trace needs SPEC... (see ksnoop trace --help)"),
    (["info"], "ksnoop info needs TARGET... (see ksnoop info --help)"),
    (["list", "a", "b"], "got unexpected extra argument (b) (see ksnoop list --help)"),
    (["trace", "-n", "abc", "noargs"], "--count abc: not a whole number (at least 1)"),
    (["trace", "-n", "0", "noargs"], "--count 0: at least 1"),
    (["trace", "--pid", "abc", "noargs"], "--pid abc: not a whole number (at least 0)"),
    (["trace", "--pid", "-1", "noargs"], "--pid -1: at least 0"),
    (
        ["trace", "--comm", "a_very_long_command", "noargs"],
        "--comm 'a_very_long_command': a task's comm has at most 15 bytes",
    ),
    (["trace", "--uid", "root", "noargs"], "--uid root: not a whole number (from 0 to 4294967295)"),
    (["trace", "--uid", "-1", "noargs"], "--uid -1: from 0 to 4294967295"),
    (["trace", "--cgroup-id", "0", "noargs"], "--cgroup-id 0: at least 1"),
    (["trace", "--cgroup", "/", "--cgroup-id", "1", "noargs"], "--cgroup and --cgroup-id: give one"),
    (["trace", "--min-duration", "10", "noargs"], "--min-duration 10: a time with its unit: 10ms, 500us, 2s or 200ns"),
    (
        ["trace", "--min-duration", "fast", "noargs"],
        "--min-duration fast: a time with its unit: 10ms, 500us, 2s or 200ns",
    ),
    (["trace", "--min-duration", "0ms", "noargs"], "--min-duration 0ms: more than 0 and less than 292 years"),
    (
        ["trace", "--min-duration", "1ms", "tp:net_dev_queue"],
        "--min-duration: tp:net_dev_queue is a tracepoint, which has no duration",
    ),
    (["trace", "--duration", "x", "noargs"], "--duration x: not a number of seconds (such as 5 or 0.5)"),
    (["trace", "--duration", "-1", "noargs"], "--duration -1: 0 seconds or more"),
    (["trace", "--pages", "abc", "noargs"], "--pages abc: not a whole number (at least 1)"),
    (["trace", "--pages", "0", "noargs"], "--pages 0: at least 1"),
    (["trace", "--pages", "3", "noargs"], "--pages 3: the ring buffer size must be a power of two pages"),
    (["trace", "-o", "yaml", "noargs"], "--output yaml: one of text, json"),
    (["trace", "-o", "jsno", "noargs"], "--output jsno: one of text, json; did you mean 'json'?"),
    (["trace", "--kstack-depth", "0", "noargs"], "--kstack-depth 0: from 1 to 127"),
    (["trace", "--kstack-depth", "200", "noargs"], "--kstack-depth 200: from 1 to 127"),
    (["trace", "--max-probes", "0", "noargs"], "--max-probes 0: at least 1"),
    (["trace", "--backend", "kprob", "noargs"], "--backend kprob: one of auto, fentry, kprobe; did you mean 'kprobe'?"),
    (
        ["trace", "--durationn", "1", "noargs"],
        "no option --durationn; did you mean '--duration', '--min-duration'? (see ksnoop trace --help)",
    ),
    (
        ["trace", "--summary", "-n", "2", "noargs"],
        "--count stops after N calls printed, and --summary prints none: use --duration or Ctrl-C",
    ),
    (["trace", "--calls-only", "noargs"], "--calls-only is a kind of --summary: add --summary"),
    (
        ["trace", "-s", "--summary", "noargs"],
        "-s shows the calls of one path, and --summary counts every call: use one",
    ),
    (["trace", "--summary", "--kstack", "noargs"], "--kstack shows a stack per record, and --summary prints none"),
    (["trace", "--interval", "0", "--count-by", "comm", "noargs"], "--interval 0: more than 0 seconds"),
    (["trace", "--interval", "-1", "--count-by", "comm", "noargs"], "--interval -1: more than 0 seconds"),
    (
        ["trace", "--interval", "soon", "--count-by", "comm", "noargs"],
        "--interval soon: not a number of seconds (such as 5 or 0.5)",
    ),
    (["trace", "--top", "0", "--count-by", "comm", "noargs"], "--top 0: at least 1"),
    (["info", "-g", "--graph-depth", "0", "noargs"], "--graph-depth 0: from 1 to 10"),
    (["info", "-g", "--graph-depth", "11", "noargs"], "--graph-depth 11: from 1 to 10"),
    (["info", "-g", "--graph-depth", "x", "noargs"], "--graph-depth x: not a whole number (from 1 to 10)"),
    (["trace", "--top", "x", "--count-by", "comm", "noargs"], "--top x: not a whole number (at least 1)"),
    (["trace", "--max-keys", "0", "--count-by", "comm", "noargs"], "--max-keys 0: from 1 to 16777216"),
    (["trace", "--max-keys", "16777217", "--count-by", "comm", "noargs"], "--max-keys 16777217: from 1 to 16777216"),
    (["trace", "--top", "3", "noargs"], "--top is for counts by key: add --count-by or --hist"),
    (["trace", "--interval", "1", "noargs"], "--interval is for counts by key: add --count-by or --hist"),
    (
        ["trace", "--count-by", "comm", "--summary", "noargs"],
        "--summary counts per function; use one (--count-by counts calls by key)",
    ),
    (
        ["trace", "--hist", "duration", "--summary", "noargs"],
        "--summary counts per function; use one (--hist counts calls by key)",
    ),
    (
        ["trace", "--count-by", "comm", "-s", "noargs"],
        "-s shows the calls of one path; use one (--count-by counts calls by key)",
    ),
    (
        ["trace", "--count-by", "comm", "-n", "3", "noargs"],
        "--count stops after N calls printed, and counts print none: use --duration (--count-by counts calls by key)",
    ),
    (
        ["trace", "--count-by", "comm", "--kstack", "noargs"],
        "--kstack shows a stack per record, and counts print none (--count-by counts calls by key)",
    ),
    (["trace", "--count-by", "comm", "--calls-only", "noargs"], "--calls-only is a kind of --summary: add --summary"),
    (
        ["trace", "--count-by", "comm", "--min-duration", "1ms", "tp:net_dev_queue"],
        "--min-duration: tp:net_dev_queue is a tracepoint, which has no duration",
    ),
    (["dump", "--pid", "x", "task"], "--pid x: not a whole number (at least 1)"),
    (["dump", "--tid", "0", "task"], "--tid 0: at least 1"),
    (["dump", "--map-id", "x", "bpf_map_elem"], "--map-id x: not a whole number (at least 1)"),
    (["dump", "--cgroup-id", "x", "cgroup"], "--cgroup-id x: not a whole number (at least 1)"),
    (
        ["dump", "--cgroup-order", "up", "cgroup"],
        "--cgroup-order up: one of self-only, descendants-pre, descendants-post, ancestors-up",
    ),
    (["dump", "-n", "0", "task"], "--count 0: at least 1"),
    (["list", "-o", "xml"], "--output xml: one of text, json"),
    (["info", "-o", "xml", "noargs"], "--output xml: one of text, json"),
    (["info", "ip_send_skbb"], "no kernel function or typedef 'ip_send_skbb' in BTF; did you mean 'ip_send_skb'?"),
]

# (trace's spec, the message, the text the caret points at)
SPEC_ERRORS = [
    ("ip_send_skbb", "no kernel function 'ip_send_skbb' in BTF; did you mean 'ip_send_skb'?", "ip_send_skbb"),
    (
        "net_dev_queue",
        "'net_dev_queue' is a tracepoint, not a kernel function; did you mean 'tp:net_dev_queue'?",
        "net_dev_queue",
    ),
    ("tp:net_dev_queu", "no tracepoint 'net_dev_queu' in BTF; did you mean 'tp:net_dev_queue'?", "tp:net_dev_queu"),
    (
        "ip_send_skb(skb->len = 100)",
        "unexpected character '='; did you mean '=='? (a comparison is ==, !=, >=, <=, >, <)",
        "= 100",
    ),
    (
        "ip_send_skb(skb->len => 100)",
        "unexpected character '='; did you mean '>='? (a comparison is ==, !=, >=, <=, >, <)",
        "=> 100",
    ),
    ("ip_send_skb(skb->lenn)", "struct sk_buff has no member 'lenn'; did you mean 'len'?", "->lenn"),
    ("ip_send_skb(sbk)", "ip_send_skb has no argument 'sbk'; did you mean 'skb'? its arguments are: net, skb", "sbk"),
    ("ip_send_skb(skb->len > )", "expected a number, a \"string\", an enumerator or NULL, found ')'", ")"),
    ("ip_send_skb(skb->len", "expected ',' or ')', found the end of the spec", ""),
    ('ip_send_skb(skb->len > "x")', "strings compare only with == and !=, not >", '> "x"'),
    ("noargs(return)", "noargs returns void", "return"),
    ("ip_send_*(skb->lne)", "none of the 1 functions matching 'ip_send_*' fits: ", "->lne"),
]


# (trace's options and spec, the message, the option's text shown, the caret's column in it)
AGGREGATE_ERRORS = [
    (
        ["--count-by", "comm,bogus", "ip_send_skb"],
        "--count-by: ip_send_skb has no argument 'bogus'; the values it can take: net, skb, return, comm, pid, tid, "
        "uid, cpu",
        "comm,bogus",
        5,
    ),
    (
        ["--count-by", "comn", "tp:net_dev_queue"],
        "--count-by: tp:net_dev_queue has no argument 'comn'; did you mean 'comm'? the values it can take: skb, "
        "comm, pid, tid, uid, cpu",
        "comn",
        0,
    ),
    (["--count-by", "comm->x", "noargs"], "--count-by: 'comm' is the task's name; it has no members", "comm->x", 4),
    (
        ["--count-by", "duration", "ip_send_skb"],
        "--count-by: 'duration' is not a key; --hist duration makes a histogram of it",
        "duration",
        0,
    ),
    (
        ["--count-by", "comm,return", "tp:net_dev_queue"],
        "--count-by: tp:net_dev_queue is a tracepoint, which has no return value",
        "comm,return",
        5,
    ),
    (
        ["--hist", "duration", "tp:net_dev_queue"],
        "--hist: tp:net_dev_queue is a tracepoint, which has no duration",
        "duration",
        0,
    ),
    (
        ["--hist", "skb", "ip_send_skb"],
        "--hist: 'skb' is a pointer (struct sk_buff *); a histogram is of an integer",
        "skb",
        0,
    ),
    (
        ["--count-by", "comm", "--hist", "skb->dev->name", "ip_send_skb"],
        "--hist: 'skb->dev->name' is a string (char[16]); a histogram is of an integer",
        "skb->dev->name",
        0,
    ),
    (
        ["--hist", "skb->len,skb->len", "ip_send_skb"],
        "--hist: one value, an integer or 'duration'",
        "skb->len,skb->len",
        9,
    ),
    (
        ["--count-by", "skb->cb,skb->dev->name,comm", "ip_send_skb"],
        "--count-by: a key of 80 bytes of values (skb->cb 48, skb->dev->name 16, comm 16); at most 64",
        "skb->cb,skb->dev->name,comm",
        0,
    ),
    (
        ["--count-by", ",".join(["a"] * 17), "seven_args"],
        "--count-by: 17 values; at most 16",
        ",".join(["a"] * 17),
        32,
    ),
    (
        ["--count-by", "skb->lenn", "ip_send_skb"],
        "--count-by: struct sk_buff has no member 'lenn'; did you mean 'len'?",
        "skb->lenn",
        3,
    ),
    (["--count-by", "return", "noargs"], "--count-by: noargs returns void", "return", 0),
    (
        ["--count-by", "skb,", "ip_send_skb"],
        "--count-by: expected an argument name or 'return', found the end of the spec",
        "skb,",
        4,
    ),
    (
        ["--count-by", "zz", "s*"],
        "--count-by: seven_args has no argument 'zz'; the values it can take: a, b, c, d, e, f, g, return, comm, "
        "pid, tid, uid, cpu",
        "zz",
        0,
    ),
]


@pytest.fixture
def btfs(mini_btf, write_btf) -> dict[str, str]:
    return {"btf": mini_btf, "iter": write_btf(miniiter.blob(), "miniiter.btf")}


def _line(outcome) -> str:
    assert outcome.exit_code == 2, (outcome.stdout, outcome.stderr)
    assert outcome.stdout == "" and "Traceback" not in outcome.stderr and "│" not in outcome.stderr
    first, *rest = outcome.stderr.splitlines()
    assert first.startswith("ksnoop: error: ") and not any("error" in line for line in rest), outcome.stderr
    return first, rest


@pytest.mark.parametrize("args, says", OPTION_ERRORS, ids=[" ".join(a) for a, _ in OPTION_ERRORS])
def test_an_option_error_is_one_line_in_ksnoops_words(cli, btfs, args: list[str], says: str) -> None:
    command = args[0]
    if command in ("trace", "dump", "info", "list"):
        args = [command, "--btf", btfs["iter" if command == "dump" else "btf"], *args[1:]]
    first, rest = _line(cli(*args))
    assert (first, rest) == ("ksnoop: error: " + says, [])


@pytest.mark.parametrize("spec, says, at", SPEC_ERRORS, ids=[s for s, _, _ in SPEC_ERRORS])
def test_a_spec_error_is_one_line_and_a_caret(cli, mini_btf, spec: str, says: str, at: str) -> None:
    first, rest = _line(cli("trace", "--btf", mini_btf, spec))
    assert first.startswith("ksnoop: error: " + says), first
    shown, caret = rest
    assert shown == "  " + spec
    assert caret.index("^") - 2 == (spec.index(at) if at else len(spec)), caret


@pytest.mark.parametrize("args, says, shown, column", AGGREGATE_ERRORS, ids=[" ".join(a) for a, *_ in AGGREGATE_ERRORS])
def test_a_count_by_or_hist_error_is_one_line_and_a_caret_in_the_option(
    cli, mini_btf, args: list[str], says: str, shown: str, column: int
) -> None:
    first, rest = _line(cli("trace", "--btf", mini_btf, *args))
    assert first == "ksnoop: error: " + says
    assert rest == ["  " + shown, "  " + " " * column + "^"]
