"""Rule files: YAML (``schema``, ``read``) → checked, compiled ``RuleSet`` (``load``) with matchers
(``matchers``), target templates (``template``) and an equality index (``index``)."""
