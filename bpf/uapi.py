# SPDX-License-Identifier: GPL-2.0-only
"""Mirror of include/uapi/linux/bpf.h and bpf_common.h: the numbers the BPF ABI fixes.

Commands, program, attach and map types, helper ids, opcode fields, registers and
ringbuf header bits. Each uapi number is defined here once; nothing here calls the kernel.
"""

from __future__ import annotations

import enum


class Cmd(enum.IntEnum):
    """enum bpf_cmd: the first argument of bpf(2)."""

    MAP_CREATE = 0
    MAP_LOOKUP_ELEM = 1
    MAP_UPDATE_ELEM = 2
    MAP_DELETE_ELEM = 3
    MAP_GET_NEXT_KEY = 4
    PROG_LOAD = 5
    OBJ_PIN = 6
    OBJ_GET = 7
    PROG_ATTACH = 8
    PROG_DETACH = 9
    PROG_TEST_RUN = 10
    PROG_GET_NEXT_ID = 11
    MAP_GET_NEXT_ID = 12
    PROG_GET_FD_BY_ID = 13
    MAP_GET_FD_BY_ID = 14
    OBJ_GET_INFO_BY_FD = 15
    PROG_QUERY = 16
    RAW_TRACEPOINT_OPEN = 17
    BTF_LOAD = 18
    BTF_GET_FD_BY_ID = 19
    TASK_FD_QUERY = 20
    MAP_LOOKUP_AND_DELETE_ELEM = 21
    MAP_FREEZE = 22
    BTF_GET_NEXT_ID = 23
    MAP_LOOKUP_BATCH = 24
    MAP_LOOKUP_AND_DELETE_BATCH = 25
    MAP_UPDATE_BATCH = 26
    MAP_DELETE_BATCH = 27
    LINK_CREATE = 28
    LINK_UPDATE = 29
    LINK_GET_FD_BY_ID = 30
    LINK_GET_NEXT_ID = 31
    ENABLE_STATS = 32
    ITER_CREATE = 33
    LINK_DETACH = 34
    PROG_BIND_MAP = 35


class MapType(enum.IntEnum):
    """enum bpf_map_type (the ones a tracer may want)."""

    UNSPEC = 0
    HASH = 1
    ARRAY = 2
    PROG_ARRAY = 3
    PERF_EVENT_ARRAY = 4
    PERCPU_HASH = 5
    PERCPU_ARRAY = 6
    STACK_TRACE = 7
    CGROUP_ARRAY = 8
    LRU_HASH = 9
    LRU_PERCPU_HASH = 10
    LPM_TRIE = 11
    ARRAY_OF_MAPS = 12
    HASH_OF_MAPS = 13
    QUEUE = 22
    STACK = 23
    RINGBUF = 27
    TASK_STORAGE = 29
    BLOOM_FILTER = 30


class ProgType(enum.IntEnum):
    """enum bpf_prog_type."""

    UNSPEC = 0
    SOCKET_FILTER = 1
    KPROBE = 2
    SCHED_CLS = 3
    SCHED_ACT = 4
    TRACEPOINT = 5
    XDP = 6
    PERF_EVENT = 7
    RAW_TRACEPOINT = 17
    RAW_TRACEPOINT_WRITABLE = 24
    TRACING = 26
    STRUCT_OPS = 27
    EXT = 28
    LSM = 29
    SYSCALL = 31


class AttachType(enum.IntEnum):
    """enum bpf_attach_type (the tracing end of it; 0 is also BPF_CGROUP_INET_INGRESS)."""

    UNSPEC = 0
    TRACE_RAW_TP = 23
    TRACE_FENTRY = 24
    TRACE_FEXIT = 25
    MODIFY_RETURN = 26
    LSM_MAC = 27
    TRACE_ITER = 28
    PERF_EVENT = 41
    TRACE_KPROBE_MULTI = 42
    TRACE_KPROBE_SESSION = 56  # v6.10


class LinkType(enum.IntEnum):
    """enum bpf_link_type, as reported in struct bpf_link_info.type."""

    UNSPEC = 0
    RAW_TRACEPOINT = 1
    TRACING = 2
    CGROUP = 3
    ITER = 4
    NETNS = 5
    XDP = 6
    PERF_EVENT = 7
    KPROBE_MULTI = 8


class CgroupIterOrder(enum.IntEnum):
    """enum bpf_cgroup_iter_order: how the cgroup iterator walks from its starting cgroup (v6.1)."""

    ORDER_UNSPEC = 0
    SELF_ONLY = 1
    DESCENDANTS_PRE = 2
    DESCENDANTS_POST = 3
    ANCESTORS_UP = 4


class StatsType(enum.IntEnum):
    """enum bpf_stats_type, for BPF_ENABLE_STATS."""

    RUN_TIME = 0


class Helper(enum.IntEnum):
    """enum bpf_func_id: helper numbers for BPF_CALL (listing prints them as bpf_<name>#<id>)."""

    unspec = 0
    map_lookup_elem = 1
    map_update_elem = 2
    map_delete_elem = 3
    probe_read = 4
    ktime_get_ns = 5
    trace_printk = 6
    get_prandom_u32 = 7
    get_smp_processor_id = 8
    tail_call = 12
    get_current_pid_tgid = 14
    get_current_uid_gid = 15
    get_current_comm = 16
    perf_event_read = 22
    perf_event_output = 25
    get_stackid = 27
    get_current_task = 35
    get_numa_node_id = 42
    probe_read_str = 45
    get_stack = 67
    get_current_cgroup_id = 80
    get_current_ancestor_cgroup_id = 123
    probe_read_user = 112
    probe_read_kernel = 113
    probe_read_user_str = 114
    probe_read_kernel_str = 115
    jiffies64 = 118
    get_ns_current_pid_tgid = 120
    ktime_get_boot_ns = 125
    seq_printf = 126
    seq_write = 127
    ringbuf_output = 130
    ringbuf_reserve = 131
    ringbuf_submit = 132
    ringbuf_discard = 133
    ringbuf_query = 134
    get_task_stack = 141
    d_path = 147
    snprintf_btf = 149
    seq_printf_btf = 150
    per_cpu_ptr = 153
    this_cpu_ptr = 154
    get_current_task_btf = 158
    ktime_get_coarse_ns = 160
    snprintf = 165
    get_func_ip = 173
    get_attach_cookie = 174
    loop = 181
    get_func_arg = 183
    get_func_ret = 184
    get_func_arg_cnt = 185
    ktime_get_tai_ns = 208


# Instruction classes: BPF_CLASS(code) = code & 0x07.
BPF_LD = 0x00
BPF_LDX = 0x01
BPF_ST = 0x02
BPF_STX = 0x03
BPF_ALU = 0x04
BPF_JMP = 0x05
BPF_JMP32 = 0x06
BPF_ALU64 = 0x07

# Load/store sizes: BPF_SIZE(code) = code & 0x18.
BPF_W = 0x00
BPF_H = 0x08
BPF_B = 0x10
BPF_DW = 0x18

# Load/store modes: BPF_MODE(code) = code & 0xe0.
BPF_IMM = 0x00
BPF_ABS = 0x20
BPF_IND = 0x40
BPF_MEM = 0x60
BPF_MEMSX = 0x80
BPF_ATOMIC = 0xC0

# ALU operations: BPF_OP(code) = code & 0xf0.
BPF_ADD = 0x00
BPF_SUB = 0x10
BPF_MUL = 0x20
BPF_DIV = 0x30
BPF_OR = 0x40
BPF_AND = 0x50
BPF_LSH = 0x60
BPF_RSH = 0x70
BPF_NEG = 0x80
BPF_MOD = 0x90
BPF_XOR = 0xA0
BPF_MOV = 0xB0
BPF_ARSH = 0xC0
BPF_END = 0xD0

# Jump operations, also BPF_OP(code).
BPF_JA = 0x00
BPF_JEQ = 0x10
BPF_JGT = 0x20
BPF_JGE = 0x30
BPF_JSET = 0x40
BPF_JNE = 0x50
BPF_JSGT = 0x60
BPF_JSGE = 0x70
BPF_CALL = 0x80
BPF_EXIT = 0x90
BPF_JLT = 0xA0
BPF_JLE = 0xB0
BPF_JSLT = 0xC0
BPF_JSLE = 0xD0
BPF_JCOND = 0xE0

# Operand source: BPF_SRC(code) = code & 0x08. BPF_END reuses the bit as TO_LE/TO_BE.
BPF_K = 0x00
BPF_X = 0x08
BPF_TO_LE = 0x00
BPF_TO_BE = 0x08

# Atomic operation modifiers, carried in imm of BPF_STX | BPF_ATOMIC.
BPF_FETCH = 0x01
BPF_XCHG = 0xE0 | BPF_FETCH
BPF_CMPXCHG = 0xF0 | BPF_FETCH

# Registers: r0 return value, r1-r5 arguments (clobbered by calls), r6-r9 callee-saved,
# r10 read-only frame pointer.
R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = range(11)
MAX_BPF_REG = 11
MAX_BPF_STACK = 512
BPF_MAXINSNS = 4096

# src_reg of the first half of a BPF_LD | BPF_IMM | BPF_DW pair.
BPF_PSEUDO_MAP_FD = 1
BPF_PSEUDO_MAP_VALUE = 2
BPF_PSEUDO_BTF_ID = 3
BPF_PSEUDO_FUNC = 4
BPF_PSEUDO_MAP_IDX = 5
BPF_PSEUDO_MAP_IDX_VALUE = 6

# src_reg of BPF_JMP | BPF_CALL.
BPF_PSEUDO_CALL = 1
BPF_PSEUDO_KFUNC_CALL = 2

# src_reg of BPF_JMP | BPF_JCOND.
BPF_MAY_GOTO = 0

# flags of BPF_MAP_UPDATE_ELEM.
BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2
BPF_F_LOCK = 4

# map_flags of BPF_MAP_CREATE.
BPF_F_NO_PREALLOC = 1 << 0
BPF_F_RDONLY = 1 << 3
BPF_F_WRONLY = 1 << 4
BPF_F_RDONLY_PROG = 1 << 7
BPF_F_MMAPABLE = 1 << 10

# prog_flags of BPF_PROG_LOAD.
BPF_F_STRICT_ALIGNMENT = 1 << 0
BPF_F_SLEEPABLE = 1 << 4

BPF_OBJ_NAME_LEN = 16
BPF_TAG_SIZE = 8

# Flags for bpf_ringbuf_output/submit/discard.
BPF_RB_NO_WAKEUP = 1 << 0
BPF_RB_FORCE_WAKEUP = 1 << 1

# Queries for bpf_ringbuf_query.
BPF_RB_AVAIL_DATA = 0
BPF_RB_RING_SIZE = 1
BPF_RB_CONS_POS = 2
BPF_RB_PROD_POS = 3

# struct bpf_ringbuf_hdr is {u32 len; u32 pg_off}; the top bits of len flag the record.
BPF_RINGBUF_BUSY_BIT = 1 << 31
BPF_RINGBUF_DISCARD_BIT = 1 << 30
BPF_RINGBUF_HDR_SZ = 8
