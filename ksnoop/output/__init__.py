# SPDX-License-Identifier: GPL-2.0-only
"""ksnoop.output: records into values and text: decoding records, text and JSON, symbols."""
