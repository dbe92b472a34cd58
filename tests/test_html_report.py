"""--html-report: one self-contained page of a run, built from the run's events.

The htmlreport sample (tests/samples/htmlreport) runs in a real subprocess
with real nodes: it logs on nodes, pauses, kills and restarts a node,
partitions and delays a proxied network, and fails one test. The page's data
is read back from the file and compared with the JSON report of the same run;
a real headless Chromium (where installed) then clicks, filters and takes a
screenshot, saved in $DISTTEST_TEST_ARTIFACTS (else build/test-artifacts/).
"""
from __future__ import annotations

import json
import os
import re
import textwrap
import unittest
from pathlib import Path

from tests import support
from tests.test_runner_e2e import Sample
from tests.webdriver import Browser

SAMPLE = "tests.test_timeline."
PAUSE = SAMPLE + "ABreaksNodes.test_1_pause_and_restart"
FAILS = SAMPLE + "ABreaksNodes.test_2_fails_with_logs"
NETWORK = SAMPLE + "BNetwork.test_3_partition_and_heal"
ARTIFACTS = Path(os.environ.get("DISTTEST_TEST_ARTIFACTS")
                 or Path(support.REPO) / "build" / "test-artifacts")


def page_data(path) -> dict:
    text = Path(path).read_text(encoding="utf-8")
    found = re.search(r'<script type="application/json" id="data">(.*?)</script>', text, re.S)
    assert found, "no data element in the page"
    return json.loads(found.group(1))


class HtmlReportOfARun(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.sample = Sample(cls.addClassCleanup, "htmlreport")
        cls.html = cls.sample.path("out/report.html")
        cls.run_ = cls.sample.run("discover", "-s", "tests", "-t", ".",
                                  "--html-report", str(cls.html), report=True)
        Sample.check_no_leaks(cls.run_)
        cls.text = cls.html.read_text(encoding="utf-8")
        cls.data = page_data(cls.html)
        cls.tests = {t["id"]: t for t in cls.data["tests"]}

    def test_the_run_failed_and_wrote_the_page(self):
        self.assertEqual(self.run_.returncode, 1, self.run_)
        self.assertTrue(self.text.startswith("<!DOCTYPE html>"))
        self.assertEqual(set(self.tests), {PAUSE, FAILS, NETWORK})

    def test_the_page_is_self_contained(self):
        self.assertNotRegex(self.text, r"<(link|img|iframe)\b")
        self.assertNotRegex(self.text, r"\bsrc\s*=")
        self.assertNotRegex(self.text.replace("http://www.w3.org/2000/svg", ""), r"https?://")
        # Node output cannot close the data element: "<" is escaped in the JSON.
        self.assertEqual(self.text.count("</script>"), 2)
        self.assertIn("\\u003c/script>", self.text)

    def test_its_figures_are_the_json_reports(self):
        summary, document = self.data["summary"], dict(self.run_.report)
        document.pop("tests")
        self.assertEqual(summary, document)
        self.assertEqual((summary["tests_run"], summary["failures"]), (3, 1))
        self.assertIn("Cluster usage", self.data["usage"])
        self.assertIn("faults in BNetwork: partition x1, heal x1, delay x1", self.data["usage"])

    def test_a_failure_has_its_traceback_and_only_its_windows_logs(self):
        failed = self.tests[FAILS]
        self.assertEqual(failed["outcome"], "failed")
        self.assertIn("AssertionError: bravo failed on purpose", failed["details"])
        logs = {node: entry["lines"] for node, entry in failed["logs"].items()}
        self.assertEqual(logs, {"node-0": ["bravo-node0 </script><b>not markup</b>"],
                                "node-1": ["bravo-node1-says-goodbye"]})
        self.assertNotIn("details", self.tests[PAUSE], "a passing test has no traceback")
        self.assertIn("alpha-before-restart", self.tests[PAUSE]["logs"]["node-0"]["lines"])

    def test_node_faults_fall_in_their_tests_window(self):
        pause = self.tests[PAUSE]
        events = [(e["node"], e["kind"]) for e in self.data["node_events"]
                  if pause["start"] <= e["t"] <= pause["end"]]
        self.assertEqual(events, [("node-1", "pause"), ("node-1", "resume"),
                                  ("node-0", "kill"), ("node-0", "restart")])
        cluster = next(c for c in self.data["clusters"] if c["id"] == pause["cluster"])
        self.assertLessEqual(cluster["start"], cluster["ready"])
        self.assertLessEqual(cluster["ready"], pause["start"])
        self.assertLessEqual(self.tests[FAILS]["end"], cluster["stop"])

    def test_network_faults_carry_their_times(self):
        test = self.tests[NETWORK]
        self.assertEqual([f["kind"] for f in test["faults"]], ["partition", "heal", "delay"])
        self.assertEqual(test["faults"][0]["groups"], [["node-0", "node-1"], ["node-2"]])
        for fault in test["faults"]:
            self.assertTrue(test["start"] <= fault["t"] <= test["end"], (fault, test))
        network = {c["id"]: c["network"] for c in self.data["clusters"]}
        self.assertEqual(network[test["cluster"]], "proxy")

    def test_in_a_browser_a_click_shows_a_tests_node_logs_and_filters(self):
        paths = Browser.find()
        if paths is None:
            self.skipTest(Browser.missing)
        browser = Browser(*paths)
        self.addCleanup(browser.close)
        browser.open(self.html.as_uri())
        browser.wait_for("body[data-ready]")
        self.assertEqual(len(browser.all("svg.timeline")), 2)
        self.assertEqual(len(browser.all("rect.bar")), 3)
        self.assertEqual(len(browser.all("rect.node-down")), 1, "node-0 killed, then restarted")
        self.assertEqual(len(browser.all("rect.fault")), 2, "a partition and a delay")
        width = browser.script("return document.querySelector('svg.timeline').width.baseVal.value")
        browser.click(browser.one("#zoom-in"))
        self.assertGreater(browser.script(
            "return document.querySelector('svg.timeline').width.baseVal.value"), width)

        browser.click(browser.one(f'#tests tr.test[data-id="{FAILS}"]'))
        self.assertEqual(browser.text(browser.one("#detail-id")), FAILS)
        lines = [browser.text(e) for e in browser.all("#logs .logline")]
        self.assertEqual(lines, ["bravo-node0 </script><b>not markup</b>",
                                 "bravo-node1-says-goodbye"])
        self.assertEqual(browser.all("#logs b"), [], "node output is text, never markup")
        browser.type(browser.one("#log-filter"), "goodbye")
        self.assertEqual([browser.text(e) for e in browser.all("#logs .logline")],
                         ["bravo-node1-says-goodbye"])
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "html-report-failing-test.png"
        browser.screenshot(str(shot))
        self.assertEqual(shot.read_bytes()[:8], b"\x89PNG\r\n\x1a\n")

        # A bar on the timeline selects its test too; the node list filters.
        browser.click(browser.one(f'rect.bar[data-test="{PAUSE}"]'))
        self.assertEqual(browser.text(browser.one("#detail-id")), PAUSE)
        self.assertIn("kill node-0", browser.text(browser.one("#faults")))
        browser.script("const s = document.getElementById('log-node'); s.value = 'node-0';"
                       "s.dispatchEvent(new Event('change'));")
        self.assertEqual([browser.script("return arguments[0].dataset.node",
                                         {"element-6066-11e4-a52e-4f735466cecf": e})
                          for e in browser.all("#logs .lognode")], ["node-0"])


class HtmlReportOfOtherRuns(unittest.TestCase):
    def test_under_j_the_workers_send_their_nodes_log_windows(self):
        sample = Sample(self.addCleanup, "htmlreport")
        html = sample.path("parallel.html")
        run = sample.run("discover", "-s", "tests", "-t", ".", "-j", "2",
                         "--html-report", str(html))
        self.assertEqual(run.returncode, 1, run)
        tests = {t["id"]: t for t in page_data(html)["tests"]}
        self.assertEqual({n: e["lines"] for n, e in tests[FAILS]["logs"].items()},
                         {"node-0": ["bravo-node0 </script><b>not markup</b>"],
                          "node-1": ["bravo-node1-says-goodbye"]})
        self.assertEqual([f["kind"] for f in tests[NETWORK]["faults"]],
                         ["partition", "heal", "delay"])

    def test_a_failed_history_check_links_its_saved_view(self):
        sample = Sample(self.addCleanup, "history")
        html = sample.path("reports/history.html")
        run = sample.run("discover", "-s", "tests", "-t", ".", "-k", "test_stale_register",
                         "--html-report", str(html),
                         env={"DISTTEST_HISTORY_DIR": str(sample.path("histories"))})
        self.assertEqual(run.returncode, 1, run)
        (failed,) = [t for t in page_data(html)["tests"] if t["outcome"] == "failed"]
        self.assertTrue(failed["history"].startswith("../histories/"), failed["history"])
        self.assertTrue(failed["history"].endswith(".html"))
        self.assertTrue((html.parent / failed["history"]).is_file(), failed["history"])


class HtmlReportSettings(unittest.TestCase):
    def test_html_report_in_the_configuration_writes_the_page(self):
        sample = Sample(self.addCleanup, "htmlreport")
        (sample.root / "disttest.toml").write_text('html_report = "build/run.html"\n')
        run = sample.run("discover", "-s", "tests", "-t", ".", "-k", "test_3")
        self.assertEqual(run.returncode, 0, run)
        data = page_data(sample.root / "build" / "run.html")
        self.assertEqual([t["id"] for t in data["tests"]], [NETWORK])

    def test_a_path_that_cannot_be_written_is_named_and_the_status_is_the_tests(self):
        sample = Sample(self.addCleanup, "htmlreport")
        (sample.root / "blocker").write_text("a file, not a directory")
        run = sample.run("discover", "-s", "tests", "-t", ".", "-k", "test_3",
                         "--html-report", "blocker/report.html")
        self.assertEqual(run.returncode, 0, run)
        self.assertIn("disttest: could not write the HTML report:", run.output)
        self.assertIn("blocker", run.output)


class HtmlReportSize(unittest.TestCase):
    def test_2000_tests_on_10_clusters_stay_under_5_MB(self):
        sample = Sample(self.addCleanup, "empty")
        tests = sample.root / "tests"
        tests.mkdir(exist_ok=True)
        (tests / "__init__.py").write_text("")
        classes = "".join(textwrap.dedent(f"""
            class Group{group}(disttest.DistributedTestCase):
                cluster_size = 1
            """) + "".join(textwrap.dedent(f"""
                def test_{n:03d}(self):
                    self.cluster.call_all(say, "group {group}, test {n}: " + "\\u00e9<" * 30, 40)
            """).replace("\n", "\n    ") for n in range(200)) for group in range(10))
        (tests / "test_many.py").write_text(
            "import disttest\n\n\ndef say(text, times):\n"
            "    for _ in range(times):\n        print(text, flush=True)\n" + classes)
        html = sample.path("many.html")
        run = sample.run("discover", "-s", "tests", "-t", ".", "--no-reuse",
                         "--html-report", str(html), timeout=600)
        self.assertEqual(run.returncode, 0, run)
        data = page_data(html)
        self.assertEqual(len(data["tests"]), 2000)
        self.assertEqual(len(data["clusters"]), 10)
        # 80,000 lines of 60 characters, each taking 6 bytes or more in the page's
        # JSON: more than the page's budget for node logs, which keeps it small.
        lines = [len(e["lines"]) for t in data["tests"] for e in t["logs"].values()]
        self.assertEqual(len(lines), 2000)
        self.assertEqual(max(lines), 40)
        self.assertEqual(min(lines), 0, "past the budget, a test's lines are left out")
        self.assertGreater(sum(lines), 5000)
        self.assertLess(html.stat().st_size, 5 * 1024 * 1024)


if __name__ == "__main__":
    unittest.main()
