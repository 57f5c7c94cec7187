"""Load one generated Program into the kernel, and say in one line what the kernel refused.

In: a Program, the fds of the maps it relies on, the label the user wrote (`ip_send_skb`,
`dump:task`). Out: a LoadedProgram (the caller closes it), or a KsnoopError: the verifier's own
reason, a refusal before verification worded for the kind of program, or the errno's meaning.
Both trace and dump load through here, so each refusal is worded once.
"""
from __future__ import annotations

import errno
import os
from typing import Dict, Optional

from bpf.codegen import MapRole, Program
from bpf.errnos import errno_name
from bpf.loader import LoadedProgram, LoadRefused, VerifierError, load_program
from bpf.uapi import AttachType

from ksnoop.errors import NotPermitted, NotTraceable, Refused, VerifierRejected

# What a user calls each kind of program the kernel may refuse as a whole.
_KIND_WORDS = {
    AttachType.TRACE_FENTRY: "fentry/fexit",
    AttachType.TRACE_FEXIT: "fentry/fexit",
    AttachType.TRACE_RAW_TP: "tp_btf",
    AttachType.TRACE_ITER: "iterator",
}


def load_generated(program: Program, fds: Dict[MapRole, int], label: str,
                   btf_obj_fd: Optional[int] = None) -> LoadedProgram:
    """BPF_PROG_LOAD `program` with its maps bound to `fds`, for the target the user calls `label`.

    Raises VerifierRejected (the verifier's reason line), Refused (the kernel said no before
    verifying: its policy, not the program), NotPermitted (EPERM after all: privileges) or
    NotTraceable (any other errno).
    """
    try:
        return load_program(program.bind_maps(fds), program.prog_type, program.expected_attach_type,
                            program.attach_btf_id, attach_btf_obj_fd=btf_obj_fd, name=program.name)
    except VerifierError as error:
        raise VerifierRejected(f"the kernel's verifier rejected the program for {label}: {error.reason} "
                               "(run with -v for the program listing)") from None
    except LoadRefused as error:
        raise refusal(program.expected_attach_type, label, error.errno or errno.EPERM) from None
    except PermissionError:
        raise NotPermitted(f"the kernel refused to load the program for {label} (EPERM)") from None
    except OSError as error:
        raise NotTraceable(f"cannot load the program for {label}: {error.strerror or error}") from None


def refusal(attach_type: AttachType, label: str, code: int) -> Refused:
    """The error for a load the kernel refused before verification with errno `code`.

    EPERM there, with the privileges checked before loading, is the kernel's policy (a security
    module such as the BPF LSM, or lockdown) refusing this kind of program or this target.
    """
    kind = _KIND_WORDS.get(attach_type, "these")
    how = f"{errno_name(code)} before verification"
    if attach_type in (AttachType.TRACE_FENTRY, AttachType.TRACE_FEXIT):
        return Refused(f"cannot trace {label}: this kernel refuses {kind} programs ({how}, even with full "
                       "privileges); tp: tracepoints still work; see ksnoop list 'tp:*'")
    if code != errno.EPERM:
        return Refused(f"cannot load the {kind} program for {label}: {os.strerror(code)} ({how})")
    return Refused(f"this kernel refuses {kind} programs for {label} ({how})")
