"""mtrec.reporting: what a run produced, read back from MLMD and the artifacts, as JSON, a table and a plot."""
