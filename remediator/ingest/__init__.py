"""① Ingest: an HTTP request becomes a journal entry and a 2xx. The edge (framing, limits),
authentication, payload checks in worker processes, the ack gate, and the journal with its
local spool.
"""
