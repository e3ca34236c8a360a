"""Version 3: a claim is a durable job.

Claims gain ``job``: what running the claim needs (the alert, the rule's digest, the
resolved target and the parameters), so a claim a crash left before its intent is run by
its owner after a restart or by the replica that takes it over. Undos gain an index by
claim: an undo is planned once per claim. Claims made before keep ``job`` NULL and are
settled as before (observed, and paged when nothing was sent).
"""

from __future__ import annotations

SCRIPT = """
    ALTER TABLE claims ADD COLUMN job TEXT;
    CREATE INDEX undos_by_claim ON undos (claim_id)
"""
SCRIPTS = {"sqlite": SCRIPT, "postgres": SCRIPT}
