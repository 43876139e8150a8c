"""ForceCommand of the test guest's sshd: emulates systemctl, df and cleanup programs, and logs every command.

Run by sshd as ``python3 guest_command.py STATE_DIR``; the requested command arrives in SSH_ORIGINAL_COMMAND.
State files in STATE_DIR: ``units.json`` ({unit: state}), ``disk.json`` ({"used": KiB, "avail": KiB,
"freeable": KiB}), ``hang`` (holds '*' or a part of the command line that hangs), ``commands.log`` (one raw command line per line).
Standard library only: it runs under the system python3, outside the project's virtualenv.
"""

import fcntl
import json
import os
import shlex
import sys
import time
from pathlib import Path


def main() -> int:
    state = Path(sys.argv[1])
    line = os.environ.get("SSH_ORIGINAL_COMMAND", "")
    with open(state / "commands.log", "a", encoding="utf-8") as log:
        fcntl.flock(log, fcntl.LOCK_EX)
        log.write(json.dumps(line) + "\n")
    deadline = time.monotonic() + 60
    hang = state / "hang"
    if hang.exists() and (hang.read_text().strip() in ("*", "") or hang.read_text().strip() in line):
        # Authenticated, then silent: until the test lifts the hang (so no sleeper outlives the test). The work
        # itself happens when the hang is lifted, as a slow command that completes after we gave up.
        while hang.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    argv = shlex.split(line)
    units_file, disk_file = state / "units.json", state / "disk.json"
    units = json.loads(units_file.read_text()) if units_file.exists() else {}
    if argv[:2] == ["systemctl", "is-active"] and len(argv) == 3:
        current = units.get(argv[2], "inactive")
        print(current)
        return 0 if current == "active" else 3
    if argv[:2] == ["systemctl", "restart"] and len(argv) == 3:
        if argv[2] not in units:
            print(f"Failed to restart {argv[2]}: Unit {argv[2]} not found.", file=sys.stderr)
            return 5
        units[argv[2]] = "active"
        units_file.write_text(json.dumps(units))
        return 0
    if argv == ["df", "-P", "-k", "/"]:
        disk = json.loads(disk_file.read_text())
        total = disk["used"] + disk["avail"]
        print("Filesystem     1024-blocks      Used Available Capacity Mounted on")
        print(f"/dev/sda1 {total} {disk['used']} {disk['avail']} {100 * disk['used'] // total}% /")
        return 0
    if argv and argv[0].startswith("/usr/bin/") and disk_file.exists():
        disk = json.loads(disk_file.read_text())
        disk["used"] -= disk["freeable"]
        disk["avail"] += disk["freeable"]
        disk["freeable"] = 0
        disk_file.write_text(json.dumps(disk))
        print(f"cleaned with {argv[0]}")
        return 0
    print(f"{argv[0] if argv else ''}: command not found", file=sys.stderr)
    return 127


if __name__ == "__main__":
    sys.exit(main())
