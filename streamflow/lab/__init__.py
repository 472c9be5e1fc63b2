"""The backpressure lab: named experiments that run a backpressured job in process with
aligned and unaligned checkpoints, sample its metrics and write CSV, plots and a report.

``streamflow lab SCENARIO`` on the command line; :func:`run_lab` from Python. The plots
need matplotlib (``pip install 'streamflow[lab]'``).
"""

from streamflow.lab.run import MODES, run_lab, run_mode
from streamflow.lab.sampling import ModeRun
from streamflow.lab.scenarios import SCENARIOS, LabOptions, LatencyProbe, Scenario

__all__ = ["MODES", "SCENARIOS", "LabOptions", "LatencyProbe", "ModeRun", "Scenario", "run_lab", "run_mode"]
