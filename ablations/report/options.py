"""The report's options that the command line shows before anything heavy loads (no pandas here)."""

FORMATS = ("md", "tex", "html", "csv")  # table formats, each table written in every one asked for
DEFAULT_TARGET = 0.98  # validation accuracy as a fraction, for "epochs to target"; --target changes it
