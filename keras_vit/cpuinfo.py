"""The CPU's model name and feature flags, as Linux reports them in /proc/cpuinfo.

One reader for everything that depends on the CPU: the training precision (`training.strategy`),
the export report's int8 verdict (`export.cpu_features`) and the benchmarks' machine record.
"""

import platform


def read_cpuinfo(path="/proc/cpuinfo"):
    """`(model name, set of flags)`: x86 `flags` and ARM `Features` alike; where the file cannot be
    read, `platform.processor()` (or "unknown") and no flags."""
    model, flags = platform.processor() or "unknown", set()
    try:
        with open(path) as file:
            for line in file:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "hardware", "cpu model") and value.strip():
                    model = value.strip()
                elif key in ("flags", "features"):
                    flags |= set(value.split())
    except OSError:
        pass
    return model, flags
