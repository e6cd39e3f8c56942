"""The .rules language: grammar, syntax tree, parser and formatter; no torch, no model."""
