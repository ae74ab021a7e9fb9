"""Benchmarks of keras-vit.

    python -m bench all --quick        # ~5 min: CIFAR config, ViT-Ti/16 compiled paths
    python -m bench all --full         # ViT-Ti/16, ViT-S/16, CIFAR (~30 min on 2 cores)
    python -m bench report results_perf.json   # re-make the Markdown and chart from raw results

`all --full` writes bench/results_perf.md, bench/results_perf.json and bench/ratios.png;
`--quick` writes the same files under /tmp/keras_vit_bench unless `--out` says otherwise.
"""

import argparse
import json
import os
import sys
import time

DEFAULT_ARTIFACTS = os.path.join("/tmp", "keras_vit_bench", "artifacts")


def _machine_with_matmul():
    from bench.machine import MatmulProbe, machine_info

    info = machine_info()
    probe = MatmulProbe(4096)
    info["matmul_gflops_start"] = max(probe(1) for _ in range(3))
    return info, probe


def _write(out, results, machine, command, elapsed):
    from bench.report import chart, markdown, summarize, write_text

    os.makedirs(out, exist_ok=True)
    rows = summarize(results)
    write_text(os.path.join(out, "results_perf.json"),
               json.dumps({"machine": machine, "command": command, "elapsed_s": elapsed,
                           "results": results, "rows": rows}, indent=1))
    text = markdown(rows, machine, command, elapsed)
    write_text(os.path.join(out, "results_perf.md"), text + "\n")
    chart(rows, os.path.join(out, "ratios.png"))
    return text


def _all(args):
    from bench.suite import run_plan

    plan = "quick" if args.quick else "full"
    out = args.out or ("bench" if plan == "full" else os.path.join("/tmp", "keras_vit_bench"))
    command = "python -m bench " + " ".join(sys.argv[1:])
    start = time.perf_counter()
    machine, probe = _machine_with_matmul()
    print(f"{machine['cpu']}, {machine['cores']} cores, TF {machine['tensorflow']}, "
          f"matmul {machine['matmul_gflops_start']:.0f} GFLOP/s; plan {plan}", flush=True)
    results = run_plan(plan, args.artifacts, log=lambda m: print(m, flush=True),
                       configs=args.configs, modes=args.modes)
    machine["matmul_gflops_end"] = max(probe(1) for _ in range(3))
    machine["matmul_gflops"] = (
        f"{machine['matmul_gflops_start']:.0f}/{machine['matmul_gflops_end']:.0f}"
    )
    text = _write(out, results, machine, command, time.perf_counter() - start)
    print(text)
    print(f"wrote {out}/results_perf.md, results_perf.json, ratios.png")
    failed = [r for r in results if "error" in r]
    return 1 if failed else 0


def _report(args):
    with open(args.results) as f:
        data = json.load(f)
    out = args.out or os.path.dirname(os.path.abspath(args.results))
    print(_write(out, data["results"], data["machine"], data["command"], data["elapsed_s"]))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("all", help="run the throughput plan, ours vs keras-hub")
    size = run.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="the ~5 minute plan")
    size.add_argument("--full", action="store_true", help="the whole plan (default)")
    run.add_argument("--configs", nargs="+", help="only these configs (vit_ti16 vit_s16 cifar)")
    run.add_argument("--modes", nargs="+", help="only these modes (see bench/throughput.py)")
    run.add_argument("--out", help="folder of results_perf.md/.json and ratios.png")
    run.add_argument("--artifacts", default=DEFAULT_ARTIFACTS,
                     help="where each run makes (and then removes) its SavedModel/TFLite files")
    run.set_defaults(func=_all)
    report = sub.add_parser("report", help="re-make Markdown and chart from results_perf.json")
    report.add_argument("results")
    report.add_argument("--out")
    report.set_defaults(func=_report)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        return args.func(args)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
