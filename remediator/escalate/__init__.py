"""④ Escalate: what needs a human is planned into the outbox with the record that says so,
and delivery sends it to the sinks.
"""
