"""Run every benchmark and refresh BENCHMARKS.md (``make bench``; about an hour on 2 CPU cores).

Each benchmark is its own module with its own flags (see its docstring); this runs them in turn,
each in a fresh process so one's compilation cache and memory never colour another's timings.
"""

import subprocess
import sys

BENCHMARKS = [
    ("benchmarks.tsmc_overhead", ["--write"]),
    ("benchmarks.tsmc_vs_nuts", ["--write"]),
    ("benchmarks.tsmc_vs_blackjax", ["--write"]),
    ("benchmarks.mode_retention", ["--write"]),
    ("benchmarks.reference_costs", ["--write"]),
    ("benchmarks.compare_algorithms", ["--write"]),
    ("benchmarks.policy_brax", ["--write"]),
    ("benchmarks.mpc", ["--write"]),
    ("benchmarks.policy_noise", ["--write"]),
    ("benchmarks.pusher_slider", ["--write"]),
    ("benchmarks.rddl_vs_jaxplan", ["--write"]),  # needs the rddl extra (make bench installs it)
    ("benchmarks.scaling", ["--write"]),
    ("benchmarks.cpu_batching", ["--brax", "--write"]),
]


def main() -> int:
    failed = []
    for module, args in BENCHMARKS:
        print(f"== {module} {' '.join(args)}", flush=True)
        if subprocess.call([sys.executable, "-m", module, *args]) != 0:
            failed.append(module)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
