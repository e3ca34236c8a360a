"""Runtime: builds the application, starts and stops its loops in order, and holds the
replica's lease.
"""
