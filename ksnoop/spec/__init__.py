"""ksnoop.spec: the language and its meaning: parsing specs, the targets they name, and resolving
them against BTF into plans."""
