"""Parallel runs (``-j N``): one plan, several worker processes, one report.

The controller plans as a serial run does, cuts the plan into work items
(:mod:`.schedule`), forks one worker per job after loading (:mod:`.controller`),
and hands items out longest first. Each worker runs its items with its own
session and ``ClusterPool`` (:mod:`.worker`) and streams every result call and
cluster event back as a declared message (:mod:`.messages`); the controller
alone writes output and reports, replaying each test's messages at once so
progress lines never interleave.
"""
