"""A user's device table: good ones load; each kind of bad one fails in one line naming the
file, the row and the fix."""

from __future__ import annotations

import numpy as np
import pytest

from nag.errors import ConfigError, DataFileError
from nag.hardware import parse_budget, read_device_table
from nag.spaces.nb201 import NB201Space

SPACE = NB201Space()
CELLS = [SPACE.to_string(a) for a in dict.fromkeys(SPACE.sample(40, np.random.default_rng(1)))][:12]


def write(tmp_path, lines: list[str], name: str = "device.csv"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def rows(n: int = 12) -> list[str]:
    return ["arch,latency", *(f"{c},{1.0 + i / 10:.2f}" for i, c in enumerate(CELLS[:n]))]


def error_of(path, **kwargs) -> str:
    with pytest.raises(DataFileError) as info:
        read_device_table(path, SPACE, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_a_good_table_loads_with_its_line_numbers(tmp_path):
    table = read_device_table(write(tmp_path, rows()), SPACE)
    assert len(table) == 12 and table.lines[0] == 2
    assert table.measured(SPACE.from_string(CELLS[3])) == pytest.approx(1.3)
    assert np.isnan(table.measured(SPACE.from_string("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")))


def test_duplicates_name_both_rows(tmp_path):
    lines = rows()
    lines.append(f"{CELLS[2]},9.9")
    message = error_of(write(tmp_path, lines))
    assert "rows 4 and 14" in message and "keep one row per architecture" in message


def test_an_unparsable_arch_names_its_row_and_the_expected_form(tmp_path):
    lines = rows()
    lines[5] = "|conv~0|+|bad|,2.0"
    message = error_of(write(tmp_path, lines))
    assert "row 6" in message and "does not parse" in message and "string form" in message


@pytest.mark.parametrize("value", ["0", "-3.5", "abc", "", "nan", "inf"])
def test_non_positive_or_missing_latencies_name_their_row(tmp_path, value):
    lines = rows()
    lines[3] = f"{CELLS[2]},{value}"
    message = error_of(write(tmp_path, lines))
    assert "row 4" in message and "not a positive finite number" in message and "re-measure" in message


def test_too_few_rows_say_how_many_are_needed(tmp_path):
    message = error_of(write(tmp_path, rows(4)))
    assert "4 measured" in message and "line 5" in message and "at least 5" in message
    assert len(read_device_table(write(tmp_path, rows(6)), SPACE)) == 6


def test_missing_columns_and_files(tmp_path):
    message = error_of(write(tmp_path, ["network,ms", f"{CELLS[0]},1.0"]))
    assert "line 1" in message and "'arch,latency'" in message
    missing = tmp_path / "nope.csv"
    assert "no such file" in error_of(missing)


def test_budgets_parse_and_bad_ones_say_the_form():
    assert parse_budget("latency<=5.0").value == 5.0
    assert parse_budget("latency < 2").value == 2.0
    assert parse_budget("3.5").value == 3.5
    for bad in ("latency<=-1", "latency<=x", "energy<=3", ""):
        with pytest.raises(ConfigError, match="latency<="):
            parse_budget(bad)
