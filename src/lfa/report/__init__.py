"""The HTML report (never imports torch): what was run, the datasets, Figure 2, each experiment's table in the
paper's layout with the published values, figures and per-class tables.

- :mod:`lfa.report.inputs`: the files it reads and the config check of them;
- :mod:`lfa.report.provenance`: commit, packages, devices, hours;
- :mod:`lfa.report.tables`: the table model, rendered to the page, CSV and TeX;
- :mod:`lfa.report.figures`: the figures, as PNG bytes;
- :mod:`lfa.report.sections`: the sections, built without writing anything;
- :mod:`lfa.report.render`: the page, the table files and the figure files.
"""

from lfa.report.inputs import ReportInputs, check_config_hash
from lfa.report.render import export_figures, render_report
from lfa.report.sections import build_context, dataset_sections

__all__ = ["ReportInputs", "build_context", "check_config_hash", "dataset_sections", "export_figures",
           "render_report"]
