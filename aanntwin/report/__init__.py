"""The report: the papermill workbook runner, the notebooks' helpers and study plans (the
quick-run caps), the explorer and plots."""
