"""Evidence: what a reviewer needs of each action, captured before and after it, redacted,
size-capped and shipped to the object store through a durable queue."""
