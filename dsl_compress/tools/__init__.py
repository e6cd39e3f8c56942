"""Read-only verbs over the stages: lint, explain, explain CODE, the apply job and its summary.

May import every stage below the command (`api`, `io`, `engine`, `resolve`, `schema`,
`language`, `plan`); never `cli`, and nothing here prints.
"""
