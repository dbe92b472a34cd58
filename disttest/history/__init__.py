"""Operation histories, linearizability checking and a seeded nemesis.

Test-side library code that knows nothing of the runner:

* :mod:`.recorder` records what concurrent clients invoked and what came back
  (stdlib only, so a node process can record too), saves and loads histories;
* :mod:`.models` and :mod:`.checker` decide whether a history is linearizable
  against a sequential model; they know nothing of clusters and work on a
  history saved by any program;
* :mod:`.nemesis` drives a ``Cluster`` through its public fault methods on a
  seeded schedule and records each fault in the history;
* :mod:`.timeline` and :mod:`.html` render a history for a reader.
"""
