# SPDX-License-Identifier: GPL-2.0-only
"""Glob targets (`tcp_v4_*`, `tp:net_dev_*`) resolved over the mini kernel: what they match, the
per-function stash groups, items that fit only some matches, the --max-probes limit, no match."""

from __future__ import annotations

import resource

import pytest

from bpf.plan import ProbeKind
from btf import BTF
from ksnoop.errors import UsageError
from ksnoop.spec.resolve import DEFAULT_MAX_PROBES, resolve
from ksnoop.spec.language import SpecError, parse_spec
from ksnoop.spec.targets import KernelBTF
from tests.support import minikernel, records

# Every FUNC of the mini kernel, sorted; `*` matches these and no tracepoint.
FUNCTIONS = [
    "__probestub_net_dev_queue",
    "__traceiter_net_dev_queue",
    "ip_send_skb",
    "noargs",
    "printk",
    "seven_args",
    "strncpy_from_user",
]


def _resolve(*specs: str, kernel: KernelBTF | None = None, **kwargs):
    return resolve([parse_spec(s) for s in specs], kernel or records.kernel(), **kwargs)


@pytest.fixture
def with_module() -> KernelBTF:
    """The mini kernel and module nf_minimod (mini_hook, mini_state_get) on it."""
    builder, ids = minikernel.make_builder()
    vmlinux = BTF.from_bytes(builder.to_bytes())
    blob, _ = minikernel.build_module(builder, ids)
    kernel = KernelBTF(vmlinux, [minikernel.MODULE_NAME])
    kernel._modules[minikernel.MODULE_NAME] = BTF.from_bytes(blob, base=vmlinux)
    return kernel


def test_spec_glob_target_parses_and_items_take_no_wildcards():
    spec = parse_spec("tcp_v4_*(return)")
    assert (spec.target, spec.is_glob, spec.items[0].value.base) == ("tcp_v4_*", True, "return")
    assert parse_spec("tp:net_dev_?ueue").is_glob and not parse_spec("ip_send_skb").is_glob
    with pytest.raises(SpecError) as err:
        parse_spec("tcp_*(skb->le*)")
    assert err.value.reason == "'*' is a wildcard for the target's name only, not for values"
    assert err.value.position == len("tcp_*(skb->le")


def test_a_function_glob_matches_functions_only_each_with_its_own_stash_group():
    resolved = _resolve("*")
    names = sorted({t.name for t in resolved.targets})
    assert names == FUNCTIONS  # net_dev_queue is a tracepoint: not matched by a bare glob
    assert resolved.notes == (f"ksnoop: tracing {len(FUNCTIONS)} functions matching '*'",)
    pairs = {}
    for probe in resolved.plan.probes:
        assert probe.kind in (ProbeKind.FENTRY, ProbeKind.FEXIT)
        pairs.setdefault(probe.target, set()).add(probe.stash_group)
    # Functions with an fexit (all but the void ones) stash; fentry and fexit share their group,
    # and no two functions do.
    paired = [
        groups for name, groups in pairs.items() if len([p for p in resolved.plan.probes if p.target == name]) == 2
    ]
    assert len(paired) == 5 and all(len(groups) == 1 for groups in paired)
    assert len({next(iter(g)) for g in paired}) == len(paired)
    assert set(resolved.sources) == {0} and resolved.globs == ("*",)


def test_a_glob_with_items_keeps_the_functions_that_have_them(with_module):
    resolved = _resolve("*(skb->len, return)", kernel=with_module)
    kept = sorted({(t.name, t.module) for t in resolved.targets})
    # The tracepoint stubs return void or have no `skb`... only these have both skb and a return value.
    assert kept == [("__traceiter_net_dev_queue", "vmlinux"), ("ip_send_skb", "vmlinux"), ("mini_hook", "nf_minimod")]
    count, warning = resolved.notes
    assert count == "ksnoop: tracing 3 functions matching '*'"
    assert warning.startswith("ksnoop: warning: left out 6 functions matching '*' whose values cannot be shown")
    assert warning.endswith(
        ": __probestub_net_dev_queue, mini_state_get, noargs, printk, seven_args, strncpy_from_user"
    )


def test_a_tracepoint_glob(with_module):
    resolved = _resolve("tp:net_dev_*", "ip_send_skb", kernel=with_module)
    assert [(p.kind, p.target) for p in resolved.plan.probes][0] == (ProbeKind.TP_BTF, "net_dev_queue")
    assert resolved.sources == (0, 1, 1) and resolved.globs == ("tp:net_dev_*", None)
    assert resolved.notes == ("ksnoop: tracing 1 tracepoint matching 'tp:net_dev_*'",)


def test_items_that_fit_no_match_are_the_error_of_the_first():
    with pytest.raises(SpecError) as err:
        _resolve("ip_*(skbb)")
    assert err.value.reason.startswith(
        "none of the 1 functions matching 'ip_*' fits: ip_send_skb has no argument 'skbb'; did you mean 'skb'?"
    )
    assert err.value.position == len("ip_*(")


@pytest.mark.parametrize(
    "specs, says",
    [
        (["*"], "'*' matches 7 functions, more than --max-probes 3: narrow the glob or raise --max-probes"),
        (["*(return)"], "'*' matches 5 functions, more than --max-probes 3"),
        (
            ["ip_*", "s*", "noargs"],
            "4 functions and tracepoints to trace ('ip_*' matches 1, 's*' matches 2), "
            "more than --max-probes 3: narrow the glob or raise --max-probes",
        ),
    ],
)
def test_over_the_limit_is_a_usage_error_with_the_count_and_a_hint(specs, says):
    with pytest.raises(UsageError) as err:
        _resolve(*specs, max_probes=3)
    assert str(err.value).startswith(says)
    assert err.value.exit_status == 2
    _resolve(*specs, max_probes=7)  # at the limit is fine


def test_the_default_limit():
    assert DEFAULT_MAX_PROBES == 64


@pytest.mark.parametrize(
    "spec, says",
    [
        ("ip_sned_*", "no kernel function matches 'ip_sned_*'; did you mean 'ip_send_skb'"),
        ("tp:net_dev_qeue*", "no tracepoint matches 'tp:net_dev_qeue*'; did you mean 'tp:net_dev_queue'"),
    ],
)
def test_a_glob_matching_nothing_names_close_ones(spec, says):
    with pytest.raises(SpecError) as err:
        _resolve(spec)
    assert err.value.reason.startswith(says)
    assert err.value.exit_status == 2 and err.value.position == 0


def test_cli_glob_over_the_limit_and_no_match(cli, tmp_path):
    blob, _ = minikernel.build()
    path = tmp_path / "mini.btf"
    path.write_bytes(blob)
    over = cli("trace", "--btf", str(path), "--max-probes", "2", "*")
    assert over.exit_code == 2
    assert "'*' matches 7 functions, more than --max-probes 2: narrow the glob or raise --max-probes" in over.stderr
    none = cli("trace", "--btf", str(path), "tcp_*")
    assert none.exit_code == 2 and "no kernel function matches 'tcp_*'" in none.stderr


def test_many_probes_raise_the_open_files_limit():
    from ksnoop.errors import RuntimeFailure
    from ksnoop.run.runner import raise_open_files_limit

    saved = resource.getrlimit(resource.RLIMIT_NOFILE)
    if saved[1] != resource.RLIM_INFINITY and saved[1] < 2000:
        pytest.skip(f"hard RLIMIT_NOFILE {saved[1]} is too low for this test")
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (300, saved[1]))
        raise_open_files_limit(500)  # two fds a probe and some to spare
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= 1000
        raise_open_files_limit(10)  # never lowered
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= 1000
        if saved[1] != resource.RLIM_INFINITY:
            with pytest.raises(RuntimeFailure, match="ulimit -n"):
                raise_open_files_limit(saved[1])
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, saved)
