"""Sweep results as paper tables, plots, paired comparisons and a browsable gallery.

Everything is rebuilt from what the runs wrote to disk (``run.json``, ``metrics.csv``,
``per_image.csv``, ``images/``), so ``python -m evalrun.report SWEEP_DIR...`` can be re-run
at any time; the Hydra multirun callback calls :func:`~evalrun.report.build.build_report`.

- ``sweep``: loading runs and what they declare about their columns;
- ``tables``, ``compare``, ``plots``, ``gallery``: one kind of artefact each;
- ``build``: all of them for a sweep, plus ``report.md``.
"""

from evalrun.report.build import build_report
from evalrun.report.sweep import Sweep, load_sweep

__all__ = ["Sweep", "build_report", "load_sweep"]
