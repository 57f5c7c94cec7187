# SPDX-License-Identifier: GPL-2.0-only
"""ksnoop.run: the live part: loading and attaching programs, the record loop, the summary, the iterator walk."""
