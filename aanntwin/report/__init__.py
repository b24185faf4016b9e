"""The report: the papermill workbook runner, the notebooks' helpers, the explorer and plots."""
