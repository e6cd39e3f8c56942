"""Read-only verbs over the stages: lint, explain, the apply job and its summary."""
