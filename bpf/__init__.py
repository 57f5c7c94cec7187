# SPDX-License-Identifier: GPL-2.0-only
"""The BPF layer: instructions, their listing, bpf(2), maps, loading, attaching, the ring buffer.

Takes numbers (offsets, sizes, BTF ids), never BTF objects: bpf/ imports neither btf nor ksnoop.
"""
