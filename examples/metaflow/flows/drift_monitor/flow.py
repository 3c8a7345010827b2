"""Compare the latest transactions with the day before and report the drift to assetd;
over the rule's threshold assetd signals retrain_required for every model fed by them.

    python flows/drift_monitor/flow.py run
"""

import itertools
import math

from metaflow import step

from assetd.metaflow import ProjectFlow

EDGES = [0, 25, 50, 75, 100, 150, 200, math.inf]


def shares(amounts):
    """Share of ``amounts`` in each bin of EDGES (never 0, for the logarithm)."""
    counts = [sum(lo <= a < hi for a in amounts) for lo, hi in itertools.pairwise(EDGES)]
    return [max(c / len(amounts), 1e-4) for c in counts]


def psi(reference, current):
    """Population stability index of ``current`` against ``reference``."""
    return sum((c - r) * math.log(c / r)
               for r, c in zip(shares(reference), shares(current), strict=True))


class DriftMonitor(ProjectFlow):
    @step
    def start(self):
        latest = self.prj.get_data("transactions")
        before = self.prj.get_data("transactions", instance="latest-1")
        self.psi = round(psi([t["amount"] for t in before], [t["amount"] for t in latest]), 4)
        outcome = self.prj.report_drift("transactions", "psi", self.psi, reference="latest-1")
        self.retrain = sorted({e["asset"] for e in outcome["events"]
                               if e["type"] == "retrain_required"})
        print(f"psi {self.psi}; retrain required for: {', '.join(self.retrain) or 'nothing'}")
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    DriftMonitor()
