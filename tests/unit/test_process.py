import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kaiwo.devcluster.process import ComponentError, Process, pid_alive


def test_stop_terminates_the_process(tmp_path: Path) -> None:
    p = Process("sleeper", ["sleep", "60"], tmp_path / "sleeper.log")
    p.start()
    assert p.alive()
    p.stop(grace=5)
    assert not p.alive()


def test_stop_kills_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    p = Process("stubborn", ["sh", "-c", "trap '' TERM; sleep 60"], tmp_path / "s.log")
    p.start()
    time.sleep(0.2)
    started = time.monotonic()
    p.stop(grace=0.5)
    assert not p.alive() and time.monotonic() - started < 5


def test_failure_names_component_and_shows_log_tail(tmp_path: Path) -> None:
    p = Process("broken", ["sh", "-c", "echo cannot bind port 1234; exit 3"], tmp_path / "b.log")
    p.start()
    assert p.popen is not None
    p.popen.wait()
    with pytest.raises(ComponentError) as e:
        p.check()
    assert "broken: exited with code 3" in str(e.value)
    assert "cannot bind port 1234" in str(e.value)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_children_die_when_the_parent_is_killed(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from kaiwo.devcluster.process import Process
        p = Process("child", ["sleep", "300"], Path({str(tmp_path / "c.log")!r}))
        p.start()
        print(p.pid, flush=True)
        time.sleep(300)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert pid_alive(child)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 5
    while pid_alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(child), "child outlived its SIGKILLed parent"
