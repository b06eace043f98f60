import subprocess
import sys

import pytest

from pixforge.core.cli import output_dir, require_file
from pixforge.export.errors import PixforgeError

SCRIPT = """
import sys
from pixforge.core.cli import run
from pixforge.export.errors import PixforgeError

class Tool:
    def ok(self, x=1):
        return x * 2
    def bad(self, path='somewhere.png'):
        raise PixforgeError(f'{path} is not an image')
    def bug(self):
        raise RuntimeError('a real bug')

run(Tool, name='pixforge-t')
"""


@pytest.fixture
def _run(tmp_path):
    script = tmp_path / "tool.py"
    script.write_text(SCRIPT)
    return lambda *args: subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True)


def test_success(_run):
    result = _run("ok", "--x", "4")
    assert result.returncode == 0 and result.stdout.strip() == "8"


def test_user_error_is_one_line_and_exit_2(_run):
    result = _run("bad")
    assert result.returncode == 2
    assert result.stderr.strip() == "pixforge-t: error: somewhere.png is not an image"


def test_verbose_shows_traceback(_run):
    result = _run("bad", "--verbose")
    assert result.returncode == 2 and "Traceback" in result.stderr


def test_bug_keeps_traceback(_run):
    result = _run("bug")
    assert result.returncode == 1 and "RuntimeError: a real bug" in result.stderr


def test_path_helpers(tmp_path):
    with pytest.raises(PixforgeError, match="does not exist"):
        require_file(tmp_path / "x.png")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "a").write_text("x")
    with pytest.raises(PixforgeError, match="not empty"):
        output_dir(tmp_path / "full")
    assert output_dir(tmp_path / "full", overwrite=True).is_dir()
    assert output_dir(tmp_path / "new").is_dir()
