"""Rules or config_lists against a model: checked rules, selectors, precedence, the plan.

Imports `language`, `schema`, `plan` and the root modules; never `engine` (resolution decides
what happens to which tensor; the engine does it). Torch only where a real torch module is
given: a manifest's stand-in resolves without it.
"""
