"""Audit: every decision becomes a record, written through one door; the decisions API reads
them back.
"""
