"""The .rules language: grammar, syntax tree, parser, formatter and include expansion.

Imports only the root modules (diagnostics, codes, vocab) and Lark's documented API; no torch,
no model, and not `schema` (the language's meaning is checked in `resolve`).
"""
