"""One line describing where a benchmark ran, for BENCHMARKS.md."""

import datetime
import os
import platform

import jax


def describe() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    device = jax.devices()[0]
    return (f"{os.cpu_count()} CPU cores ({cpu}), JAX {jax.__version__} on {device.platform}"
            f" ({device.device_kind}), {datetime.date.today().isoformat()}")


def replace_section(path: str, heading: str, body: str) -> None:
    """Write ``body`` under ``heading`` in the markdown file ``path``, replacing that section only."""
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    start = text.find(heading)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + heading + "\n" + body.rstrip("\n") + "\n"
    else:
        end = text.find("\n## ", start + len(heading))
        end = len(text) if end < 0 else end + 1
        text = text[:start] + heading + "\n" + body.rstrip("\n") + "\n\n" + text[end:].lstrip("\n")
    with open(path, "w") as f:
        f.write(text)


def publish(lines: list[str], heading: str, write: bool, path: str = "BENCHMARKS.md") -> None:
    """Print a benchmark's section, and write it under ``heading`` in ``path`` when ``write``."""
    text = "\n".join(lines)
    print(text)
    if write:
        replace_section(path, heading, text)
