"""A stand-in for child.py that tests the parent's walls alone: no rlimits, Landlock or seccomp.

Run by launcher.run_sandboxed (monkeypatched RUNNER) as ``python -I stub_runner.py MODE CONFIG``.
"""

import json
import os
import sys
import time
from pathlib import Path


def main() -> None:
    mode, config = sys.argv[1], json.loads(sys.argv[2])
    for path in config.get("cgroup_procs", []):  # join the cgroups, as the real runner does
        Path(path).write_text(str(os.getpid()))
    work = Path(config["work_dir"])
    if mode == "env":
        print(json.dumps(dict(os.environ)), flush=True)
    elif mode == "daemon":  # a double-forked, setsid'ed grandchild: escapes a process group
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                (work / "grandchild.started").write_text(str(os.getpid()))
                while True:
                    time.sleep(1)
            os._exit(0)
        while True:
            time.sleep(1)
    elif mode == "flood":
        for _ in range(config["megabytes"] * 16):
            sys.stdout.write("y" * 65535 + "\n")
    elif mode == "forkbomb":
        born = 0
        for _ in range(config["forks"]):
            try:
                if os.fork() == 0:
                    while True:
                        time.sleep(1)
                born += 1
            except OSError:
                pass
        os.write(config["result_fd"], (json.dumps({"born": born}) + "\n").encode())
    elif mode == "report":
        for line in config["lines"]:
            os.write(config["result_fd"], (json.dumps(line) + "\n").encode())


if __name__ == "__main__":
    main()
