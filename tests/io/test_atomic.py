"""One atomic write: the file is the old one or the new one, never half of one."""

from __future__ import annotations

import os
import stat

import pytest

from nag.io.atomic import atomic_write, write_text_atomically


def test_the_file_appears_complete_with_ordinary_permissions(tmp_path):
    path = tmp_path / "deep" / "out.csv"
    with atomic_write(path, newline="") as f:
        f.write("a,b\n")
        assert not path.exists(), "nothing at the target until the block ends"
    assert path.read_text() == "a,b\n"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in path.parent.iterdir()] == ["out.csv"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = write_text_atomically(tmp_path / "out.json", "old")
    with pytest.raises(RuntimeError), atomic_write(path, "wb") as f:
        f.write(b"half")
        raise RuntimeError("killed")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_only_write_modes():
    with pytest.raises(ValueError, match="mode 'a'"), atomic_write("x", "a"):
        pass
