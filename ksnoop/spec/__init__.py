# SPDX-License-Identifier: GPL-2.0-only
"""ksnoop.spec: the language and its meaning: parsing specs, the targets they name, and resolving
them against BTF into plans."""
