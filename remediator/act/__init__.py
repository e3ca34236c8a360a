"""③ Act: a claimed fix runs (intent before effect), is verified and undone on time; after a
crash, reconcile settles what was claimed and never finished.
"""
