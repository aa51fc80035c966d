"""Running a tool in a process group of its own, killed whole on timeout.

At the bottom layer (beside :mod:`sparsehw.params`) because the simulation runner
(:mod:`sparsehw.verif.runner`) and the place-and-route wrapper (:mod:`sparsehw.synth.fmax`) are
sibling layers that may not import each other, and both need it.
"""

import os
import signal
import subprocess


__all__ = ["run_in_process_group"]


def run_in_process_group(argv, *, cwd, stdout, timeout=None, env=None):
    """Run ``argv`` (stderr into ``stdout``) in a session of its own; return its exit status.

    On timeout the whole process group is killed (a tool's children too, and only what this
    call started) and :class:`subprocess.TimeoutExpired` is raised.
    """
    process = subprocess.Popen(argv, cwd=cwd, stdout=stdout, stderr=subprocess.STDOUT,
                               env=env, start_new_session=True)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
        raise
