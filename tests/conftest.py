"""pytest: the sample projects under tests/ are data for end-to-end tests, not tests."""
collect_ignore_glob = ["samples/*", "samples_*/*", "junit/*", "fixtures/*"]
