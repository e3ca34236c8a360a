"""The operator console's pages (``/ui/``): what is happening now, an episode's story, the
brakes, the approvals waiting for a human and the active rules, as HTML rendered here from
what the store and the rule set say. ``runtime.console`` serves them; nothing here speaks
HTTP or writes anything.
"""
