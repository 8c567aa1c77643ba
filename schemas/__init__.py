"""Checked-in schemas (schema.pbtxt: the examples LogExampleGen writes)."""
