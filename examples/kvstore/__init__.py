"""kvstore: a small replicated key-value store, the example service of disttest.

``kvstore.server`` runs on every node of a disttest cluster; ``kvstore.client``
talks to it from the test process. ``test_kvstore`` is the suite.
"""
