"""Rules or config_lists against a model: checked rules, selectors, precedence, the plan."""
