"""CsvExampleGen that reads the cells real tables use for "no value" (NA, NULL, NaN, ...) as missing.

TFX's CsvExampleGen treats only an empty cell as missing: an `NA` turns a whole numeric column
into strings. This executor is TFX's own CSV executor with one step added between parsing and
type inference: cells in `mtrec.data.missing.NA_CELLS` (pandas' `read_csv` defaults) become
empty, so they are missing values with the column keeping its type.
"""
from __future__ import annotations

import apache_beam as beam
from tfx.components.example_gen.csv_example_gen import component as csv_component, executor as csv_executor
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.utils import io_utils
from tfx_bsl.coders import csv_decoder

from mtrec.data.missing import NA_CELLS

NA_VALUES = frozenset(cell.encode() for cell in NA_CELLS)  # parsed CSV cells are bytes


def blank_na(cells):
    return [b"" if cell in NA_VALUES else cell for cell in cells]


class _CsvWithMissingToExample(csv_executor._CsvToExample):  # pylint: disable=protected-access
    def expand(self, pipeline: beam.Pipeline) -> beam.pvalue.PCollection:
        csv_files = fileio.glob(self._csv_pattern)
        if not csv_files:
            raise RuntimeError(f"Split pattern {self._csv_pattern} does not match any files.")
        column_names = io_utils.load_csv_column_names(csv_files[0])
        for csv_file in csv_files[1:]:
            if io_utils.load_csv_column_names(csv_file) != column_names:
                raise RuntimeError(f"Files in the same split {self._csv_pattern} have different headers: "
                                   f"{csv_files[0]} and {csv_file}")
        cells = (pipeline
                 | "CreateFilenames" >> beam.Create(csv_files)
                 | "ReadFromText" >> beam.ParDo(csv_executor._ReadCsvRecordsFromTextFile())  # pylint: disable=protected-access
                 | "ParseCSVLine" >> beam.ParDo(csv_decoder.ParseCSVLine(delimiter=","))
                 | "ExtractParsedCSVLines" >> beam.Keys()
                 | "BlankNA" >> beam.Map(blank_na))
        column_infos = beam.pvalue.AsSingleton(
            cells | "InferColumnTypes" >> beam.CombineGlobally(
                csv_decoder.ColumnTypeInferrer(column_names, skip_blank_lines=True)))
        return cells | "ToTFExample" >> beam.ParDo(csv_executor._ParsedCsvToTfExample(), column_infos)  # pylint: disable=protected-access


class Executor(csv_executor.Executor):
    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _CsvWithMissingToExample


class CsvExampleGen(csv_component.CsvExampleGen):
    """TFX's CsvExampleGen (same parameters, id and outputs), with NA cells read as missing values."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
