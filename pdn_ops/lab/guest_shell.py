"""The lab guest's "shell": sshd's ForceCommand, answering the commands collectors and playbooks send.

    python -m pdn_ops.lab.guest_shell STATEFILE      (the command comes in SSH_ORIGINAL_COMMAND)

The command line is split with :mod:`shlex` and never given to a shell. ``;``, ``&&`` and ``||`` between commands
are honoured (a collector may batch reads into one round trip); pipes and redirections are refused. Every
program emulates the Debian tool's output format for the guest's state file (see pdn_ops/lab/README.md).
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from pdn_ops.lab.guest_state import (
    APP_VERSION_FILE,
    GiB,
    StateFile,
    disk_used,
    memory_used_ratio,
    unit_blocked,
)

Out = tuple[int, str, str]  # exit status, stdout, stderr
HANG_POLL = 0.1
HANG_MAX = 3600.0


def _units_arg(args: list[str]) -> list[str]:
    return [a if "." in a else f"{a}.service" for a in args if not a.startswith("-")]


def _since(ts: float) -> str:
    return time.strftime("%a %Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


class Guest:
    def __init__(self, state_file: StateFile) -> None:
        self.file = state_file

    # ------------------------------------------------------------- systemctl
    def systemctl(self, args: list[str]) -> Out:
        opts = [a for a in args if a.startswith("-")]
        rest = [a for a in args if not a.startswith("-")]
        if "--failed" in opts or (rest and rest[0] == "list-units" and "--state=failed" in opts):
            return self._failed(plain="--no-legend" in opts)
        if not rest:
            return 1, "", "Too few arguments.\n"
        verb, units = rest[0], _units_arg(rest[1:])
        if verb in ("is-active", "is-failed", "status") and not units:
            return 1, "", "Too few arguments.\n"
        if verb == "is-active":
            return self._is(units, "active")
        if verb == "is-failed":
            return self._is(units, "failed")
        if verb == "status":
            return self._status(units)
        if verb in ("restart", "start", "stop", "reload", "try-restart", "reload-or-restart"):
            if not units:
                return 1, "", "Too few arguments.\n"
            return self._change(verb, units)
        if verb == "list-units":
            return self._failed(plain="--no-legend" in opts, all_units=True)
        return 1, "", f'Unknown command verb "{verb}".\n'

    def _is(self, units: list[str], wanted: str) -> Out:
        state = self.file.read()
        lines, ok = [], True
        for unit in units:
            value = state["units"].get(unit, {}).get("state", "inactive")
            lines.append(value)
            ok = ok and value == wanted
        return (0 if ok else (1 if wanted == "failed" else 3)), "".join(f"{v}\n" for v in lines), ""

    def _status(self, units: list[str]) -> Out:
        state = self.file.read()
        out, err, status = [], [], 0
        for unit in units:
            info = state["units"].get(unit)
            if info is None:
                err.append(f"Unit {unit} could not be found.\n")
                status = max(status, 4)
                continue
            value = info["state"]
            mark = {"active": "●", "failed": "×"}.get(value, "○")
            if value == "active":
                line = f"active (running) since {_since(info['since'])}"
            elif value == "failed":
                result = "oom-kill" if unit_blocked(state, unit) == "oom" else "exit-code"
                line = f"failed (Result: {result}) since {_since(info['since'])}"
            else:
                line = "inactive (dead)"
            out.append(f"{mark} {unit}\n     Loaded: loaded (/lib/systemd/system/{unit}; enabled; preset: enabled)\n"
                       f"     Active: {line}\n")
            if value != "active":
                status = max(status, 3)
        return status, "\n".join(out), "".join(err)

    def _change(self, verb: str, units: list[str]) -> Out:
        now = time.time()
        with self.file.update() as state:
            for unit in units:
                if unit not in state["units"]:
                    action = {"try-restart": "try-restart", "reload-or-restart": "reload-or-restart"}.get(verb, verb)
                    self.file.record(state, ["systemctl", verb, *units], 5)
                    return 5, "", f"Failed to {action} {unit}: Unit {unit} not found.\n"
            for unit in units:
                info = state["units"][unit]
                if verb == "stop":
                    info.update(state="inactive", since=now)
                    continue
                if verb == "try-restart" and info["state"] != "active":
                    continue
                if verb == "reload" and info["state"] != "active":
                    self.file.record(state, ["systemctl", verb, *units], 1)
                    return 1, "", f"Job for {unit} failed.\n"
                blocked = unit_blocked(state, unit)
                if blocked:
                    info.update(state="failed", since=now)
                    self.file.record(state, ["systemctl", verb, *units], 1)
                    why = ("a fatal signal was delivered to the control process" if blocked == "oom"
                           else "the control process exited with error code")
                    return 1, "", (f"Job for {unit} failed because {why}.\n"
                                   f'See "systemctl status {unit}" and "journalctl -xeu {unit}" for details.\n')
                if verb in ("start",) and info["state"] == "active":
                    continue
                info.update(state="active", since=now)
            self.file.record(state, ["systemctl", verb, *units], 0)
        return 0, "", ""

    def _failed(self, plain: bool, all_units: bool = False) -> Out:
        state = self.file.read()
        rows = [(u, i) for u, i in sorted(state["units"].items()) if all_units or i["state"] == "failed"]
        lines = []
        for unit, info in rows:
            sub = {"active": "running", "failed": "failed"}.get(info["state"], "dead")
            active = info["state"] if info["state"] in ("active", "failed") else "inactive"
            lines.append(f"{unit:<24} loaded {active:<8} {sub:<7} {unit}")
        text = "\n".join(lines) + ("\n" if lines else "")
        if plain:
            return 0, text, ""
        header = "  UNIT                     LOAD   ACTIVE   SUB     DESCRIPTION\n"
        legend = f"\n{len(rows)} loaded units listed.\n"
        return 0, header + "".join(f"  {line}\n" for line in lines) + legend, ""

    # -------------------------------------------------------------- readings
    def df(self, args: list[str]) -> Out:
        state = self.file.read()
        disk = state["disk"]
        block = 1024
        paths: list[str] = []
        for arg in args:
            if arg in ("-B1", "--block-size=1"):
                block = 1
            elif arg.startswith("--block-size="):
                try:
                    block = max(int(arg.split("=", 1)[1]), 1)
                except ValueError:
                    return 1, "", f"df: invalid --block-size argument '{arg.split('=', 1)[1]}'\n"
            elif arg in ("-k", "-P", "--portability"):
                continue
            elif not arg.startswith("-"):
                paths.append(arg)
            else:
                return 1, "", f"df: invalid option -- '{arg.lstrip('-')}'\n"
        size, used = int(disk["size"]), disk_used(state)
        avail = size - used
        pct = -(-used * 100 // size) if size else 0
        head = "1024-blocks" if block == 1024 else f"{block}-blocks" if block != 1 else "1B-blocks"
        rows = [
            (disk["device"], size, used, avail, pct, disk["mount"]),
            ("tmpfs", 400 * 1024**2, 1024**2, 399 * 1024**2, 1, "/run"),
            ("/dev/sda15", 124 * 1024**2, 12 * 1024**2, 112 * 1024**2, 10, "/boot/efi"),
        ]
        if paths:
            # As df does: for each path, the filesystem it lives on (the longest mount point that contains it).
            chosen = []
            for path in paths:
                if not path.startswith("/"):
                    path = "/root/" + path
                row = max((r for r in rows if path == r[5] or path.startswith(r[5].rstrip("/") + "/")),
                          key=lambda r: len(r[5]))
                chosen.append(row)
            rows = chosen
        out = f"Filesystem     {head:>11} {'Used':>9} {'Available':>9} Capacity Mounted on\n"
        for dev, s, u, a, p, mount in rows:
            out += f"{dev:<14} {-(-s // block):>11} {-(-u // block):>9} {a // block:>9} {p:>7}% {mount}\n"
        return 0, out, ""

    def free(self, args: list[str]) -> Out:
        state = self.file.read()
        div = {"-b": 1, "--bytes": 1, "-k": 1024, "--kibi": 1024, "-m": 1024**2, "--mebi": 1024**2,
               "-g": 1024**3, "--gibi": 1024**3}
        unit = 1024
        for arg in args:
            if arg not in div:
                return 1, "", f"free: invalid option -- '{arg.lstrip('-')}'\n"
            unit = div[arg]
        total = int(state["memory"]["total"])
        used = int(total * memory_used_ratio(state))
        shared, cache = 12 * 1024**2, int(total * 0.2)
        free = max(total - used - cache, 0)
        avail = total - used
        swap = 1 * GiB
        out = ("               total        used        free      shared  buff/cache   available\n"
               f"Mem:    {total // unit:>12} {used // unit:>11} {free // unit:>11} {shared // unit:>11} "
               f"{cache // unit:>11} {avail // unit:>11}\n"
               f"Swap:   {swap // unit:>12} {0:>11} {swap // unit:>11}\n")
        return 0, out, ""

    def _uptime_secs(self, state: dict[str, Any]) -> float:
        return max(time.time() - float(state["booted_at"]), 0.0)

    def uptime(self, args: list[str]) -> Out:
        state = self.file.read()
        secs = self._uptime_secs(state)
        if "-s" in args or "--since" in args:
            return 0, time.strftime("%Y-%m-%d %H:%M:%S\n", time.gmtime(state["booted_at"])), ""
        days, rem = divmod(int(secs), 86400)
        hours, mins = rem // 3600, rem % 3600 // 60
        if "-p" in args or "--pretty" in args:
            parts = [f"{days} day{'s' * (days != 1)}"] if days else []
            parts += [f"{hours} hour{'s' * (hours != 1)}"] if hours else []
            parts += [f"{mins} minute{'s' * (mins != 1)}"]
            return 0, "up " + ", ".join(parts) + "\n", ""
        span = f"{days} day{'s' * (days != 1)}, " if days else ""
        span += f"{hours:2d}:{mins:02d}" if hours else f"{mins} min"
        load = ", ".join(f"{x:.2f}" for x in state["load"])
        return 0, f" {time.strftime('%H:%M:%S', time.gmtime())} up {span},  1 user,  load average: {load}\n", ""

    def cat(self, args: list[str]) -> Out:
        state = self.file.read()
        out, err, status = "", "", 0
        for path in args:
            if path == "/proc/loadavg":
                a, b, c = state["load"]
                out += f"{a:.2f} {b:.2f} {c:.2f} 1/123 4567\n"
            elif path == "/proc/uptime":
                secs = self._uptime_secs(state)
                out += f"{secs:.2f} {secs * 1.8:.2f}\n"
            elif path == "/proc/meminfo":
                total = int(state["memory"]["total"]) // 1024
                avail = int(total * (1 - memory_used_ratio(state)))
                out += (f"MemTotal:       {total:>8} kB\nMemFree:        {avail // 2:>8} kB\n"
                        f"MemAvailable:   {avail:>8} kB\nSwapTotal:       1048572 kB\nSwapFree:        1048572 kB\n")
            elif path == APP_VERSION_FILE:
                out += str(state.get("release", {}).get("version", "")) + "\n"
            elif path == "/etc/hostname":
                out += state["hostname"] + "\n"
            elif path == "/etc/os-release":
                out += ('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
                        'VERSION_ID="12"\nID=debian\n')
            else:
                err += f"cat: {path}: No such file or directory\n"
                status = 1
        return status, out, err

    def journalctl(self, args: list[str]) -> Out:
        sizes = [a.split("=", 1)[1] for a in args if a.startswith("--vacuum-size=")]
        if not sizes:
            if "--disk-usage" in args:
                state = self.file.read()
                return 0, f"Archived and active journals take up {_human(state['journal_bytes'])} in the file " \
                          "system.\n", ""
            return 1, "", "journalctl: only --vacuum-size=SIZE and --disk-usage are emulated in the lab\n"
        limit = _parse_size(sizes[-1])
        if limit is None:
            return 1, "", f"Failed to parse size value: {sizes[-1]}\n"
        with self.file.update() as state:
            current = int(state["journal_bytes"])
            freed = max(current - limit, 0)
            state["journal_bytes"] = current - freed
            self.file.record(state, ["journalctl", *args], 0)
        msg = (f"Vacuuming done, freed {_human(freed)} of archived journals from /var/log/journal/"
               f"{'0' * 32}.\n")
        return 0, "", msg  # journalctl reports vacuuming on stderr

    def hostname(self, args: list[str]) -> Out:
        return 0, self.file.read()["hostname"] + "\n", ""


def _parse_size(text: str) -> int | None:
    units = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    text = text.strip().upper().removesuffix("B")
    number, suffix = (text[:-1], text[-1]) if text and text[-1] in units else (text, "")
    try:
        return int(float(number) * units[suffix])
    except ValueError:
        return None


def _human(n: int) -> str:
    for unit in ("B", "K", "M", "G", "T"):
        if n < 1024 or unit == "T":
            return f"{n:.1f}{unit}" if unit != "B" else f"{n}B"
        n = n / 1024  # type: ignore[assignment]
    return f"{n}B"


PROGRAMS: dict[str, Callable[[Guest, list[str]], Out]] = {
    "systemctl": Guest.systemctl, "df": Guest.df, "free": Guest.free, "uptime": Guest.uptime,
    "cat": Guest.cat, "journalctl": Guest.journalctl, "hostname": Guest.hostname,
    "true": lambda g, a: (0, "", ""), "false": lambda g, a: (1, "", ""),
    "echo": lambda g, a: (0, " ".join(a) + "\n", ""),
}
OPERATORS = (";", "&&", "||")


def split_commands(line: str) -> list[tuple[str, list[str]]]:
    """``[(operator before, argv), ...]``; raises ValueError for syntax the lab does not emulate."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    commands: list[tuple[str, list[str]]] = []
    op, argv = ";", list[str]()
    for token in lexer:
        if token in OPERATORS:
            if not argv:
                raise ValueError(f"syntax error near unexpected token `{token}'")
            commands.append((op, argv))
            op, argv = token, []
        elif token and set(token) <= set(";&|<>"):
            raise ValueError(f"'{token}' (pipes and redirections) is not emulated in the lab guest")
        else:
            argv.append(token)
    if argv:
        commands.append((op, argv))
    return commands


def run_one(guest: Guest, argv: list[str]) -> Out:
    if argv[:2] == ["sudo", "-n"]:
        argv = argv[2:]
    elif argv[:1] == ["sudo"]:
        argv = argv[1:]
    if not argv:
        return 0, "", ""
    name = argv[0].rsplit("/", 1)[-1] if argv[0].startswith(("/usr/bin/", "/bin/", "/usr/sbin/", "/sbin/")) \
        else argv[0]
    program = PROGRAMS.get(name)
    if program is None:
        return 127, "", f"bash: line 1: {argv[0]}: command not found\n"
    return program(guest, argv[1:])


def hang_while_asked(state_file: StateFile) -> None:
    """The "sshd hangs after authentication" fault: say nothing until the fault is cleared or power goes."""
    deadline = time.monotonic() + HANG_MAX
    while time.monotonic() < deadline:
        state = state_file.read()
        if not state.get("ssh_hang") or state.get("power") != "running":
            return
        time.sleep(HANG_POLL)


def main(argv: list[str], stdout: TextIO = sys.stdout, stderr: TextIO = sys.stderr) -> int:
    if len(argv) != 1:
        stderr.write("usage: python -m pdn_ops.lab.guest_shell STATEFILE\n")
        return 2
    state_file = StateFile(Path(argv[0]))
    if not state_file.path.exists():
        stderr.write("lab guest: the guest's state is gone (was the lab stopped?)\n")
        return 255
    hang_while_asked(state_file)
    line = os.environ.get("SSH_ORIGINAL_COMMAND", "")
    if not line.strip():
        stderr.write("This lab guest accepts commands only (no interactive shell).\n")
        return 1
    try:
        commands = split_commands(line)
    except ValueError as exc:
        stderr.write(f"bash: {exc}\n")
        return 2
    status = 0
    for op, args in commands:
        if (op == "&&" and status != 0) or (op == "||" and status == 0):
            continue
        status, out, err = run_one(Guest(state_file), args)
        stdout.write(out)
        stderr.write(err)
    stdout.flush()
    stderr.flush()
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
