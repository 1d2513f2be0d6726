"""What this machine has to give a job, read without torch (the commands check it before anything loads)."""

from __future__ import annotations

import os


def available_ram() -> int | None:
    """Bytes of memory the system can give a new process without swapping (Linux: MemAvailable), None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None
