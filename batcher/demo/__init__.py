"""A runnable demo: several processes share one datastore's capacity.

Run ``batcher-demo`` (or ``python -m batcher.demo``); ``--help`` lists the
options. The demo is not part of the library's API.
"""
