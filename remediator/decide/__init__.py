"""② Decide: the journal worker takes each entry, finds its episode, classifies it and runs
the guard pipeline to exactly one decision per episode.
"""
