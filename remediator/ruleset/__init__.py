"""Rule files: the directory's files (``files``), their YAML (``strict_yaml``, ``schema``,
``read``) → checked, compiled ``RuleSet`` (``load``) with matchers (``matchers``), target
templates (``template``) and an equality index (``index``)."""
