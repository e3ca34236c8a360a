"""Core values every stage shares: the model, errors, the clock, metrics, episode and
fingerprint identity, RE2 regexes and failpoints. Imports nothing else of remediator.
"""
