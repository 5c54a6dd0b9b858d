import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "-m", "spineplan", *args], capture_output=True, text=True)


def test_unknown_option_is_one_line_exit_2():
    r = run("info")
    assert r.returncode == 2
    assert r.stderr.startswith("spineplan: error:") and "Traceback" not in r.stderr
