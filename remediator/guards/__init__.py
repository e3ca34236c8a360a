"""Guards: small pure decisions, each returning a ``Verdict`` with a reason from ``StopReason``.

They take the facts and the clock reading as arguments. Those that need shared state
(claims, cooldowns, budgets) are evaluated by the store inside one transaction, so that
checking and consuming are atomic.
"""
