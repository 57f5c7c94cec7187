# SPDX-License-Identifier: GPL-2.0-only
"""What `ksnoop info` and `ksnoop list` say about targets and types, as text or JSON-ready dicts."""

from __future__ import annotations

import difflib
from typing import Any, Dict

from btf import Kind
from btf.cdecl import function_declaration

from ksnoop.output.layout import layout_json, layout_text
from ksnoop.errors import UnknownTarget
from ksnoop.sanitize import sanitize
from ksnoop.spec.targets import ITER_PREFIX, KernelBTF, Target, TargetKind

_TYPE_PREFIXES = ("struct ", "union ", "enum ")


def is_type_name(text: str) -> bool:
    return text.startswith(_TYPE_PREFIXES)


def signature_text(target: Target) -> str:
    """`int ip_send_skb(struct net *net, struct sk_buff *skb);`, a module's name after it in brackets."""
    params = [(a.name, a.type_id) for a in target.args]
    if target.kind is TargetKind.TRACEPOINT:
        text = function_declaration(target.btf, target.label, 0, params)[len("void ") :]
    else:
        text = function_declaration(target.btf, target.name, target.return_type_id, params, target.variadic)
    suffix = f" [{target.module}]" if target.module != "vmlinux" else ""
    return sanitize(text + ";" + suffix)


def signature_json(target: Target) -> Dict[str, Any]:
    btf = target.btf
    out: Dict[str, Any] = {"name": target.name, "kind": target.kind.value, "module": target.module}
    if target.kind is TargetKind.FUNCTION:
        out["return"] = btf.type_name(target.return_type_id)
    out["params"] = [{"name": a.name, "type": btf.type_name(a.type_id)} for a in target.args]
    if target.variadic:
        out["variadic"] = True
    return out


def describe(kernel: KernelBTF, text: str, as_json: bool) -> Any:
    """Text or a JSON-ready dict for one `info` argument: a function, `tp:NAME`, or a type."""
    if text.startswith(ITER_PREFIX):
        from ksnoop.spec.iter_targets import IterTargets, signature_json as iter_json, signature_text as iter_text

        iters = IterTargets(kernel)
        found = iters.find(text)
        refused = iters.refusal(found)
        return iter_json(found, iters.link_info, refused) if as_json else iter_text(found, iters.link_info, refused)
    if is_type_name(text):
        module, btf, type_id = kernel.find_type(text)
        return layout_json(btf, type_id) if as_json else layout_text(btf, type_id)
    try:
        target = kernel.find_target(text)
    except UnknownTarget as err:
        if text.startswith("tp:"):
            raise
        typedef = kernel.vmlinux.find(text, Kind.TYPEDEF)  # `info u32`: a typedef is a type too
        if typedef is None:
            close = set(err.suggestions) | set(kernel.vmlinux.closest_names(text, [Kind.TYPEDEF]))
            raise UnknownTarget(
                f"no kernel function or typedef '{text}' in BTF",
                difflib.get_close_matches(text, sorted(close), n=5, cutoff=0.0),
            ) from None
        return layout_json(kernel.vmlinux, typedef.id) if as_json else layout_text(kernel.vmlinux, typedef.id)
    return signature_json(target) if as_json else signature_text(target)
