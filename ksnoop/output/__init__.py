"""ksnoop.output: records into values and text: decoding records, text and JSON, symbols."""
