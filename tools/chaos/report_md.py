#!/usr/bin/env python3
"""Markdown tables from a soak report (tools/chaos/soak.py --report=...).

usage: report_md.py REPORT.json

Prints: the per-kind table (count, detection, recovery, work redone,
requests re-sent), the checks with their values, the long-lived teachers'
resources and the abusive clients' totals; docs/results.md and
docs/deploy.md quote it.
"""

import json
import sys

WHAT = {
    "teacher_kill": "teacher SIGKILLed, restarted after 0.5-2 s",
    "teacher_stop": "teacher SIGSTOPped 3-4.5 s, then SIGCONT",
    "partition": "teacher's switch port down 3-4.5 s",
    "dns_leave": "teacher out of DNS 5.5-7 s, then back",
    "dns_join": "spare teacher started, in DNS 5.5-7 s, removed, SIGTERM",
    "preempt": "SIGTERM to every rank (grace 30 s)",
    "rank_kill": "one rank SIGKILLed (half of them while a checkpoint is written)",
    "disk_full": "checkpoint filesystem filled; freed before the restart",
    "checkpoint_corrupt": "a byte of the newest checkpoint flipped before a restart",
    "client_kill": "an abusive client process (32 streams) SIGKILLed",
}


def cell(stat, digits=2):
    if not stat:
        return "-"
    return "%.*f / %.*f / %.*f" % (digits, stat["median"], digits, stat["p90"], digits, stat["max"])


def main(path):
    with open(path) as f:
        r = json.load(f)
    c = r["config"]
    print("Run: `%s`  " % r["command"])
    print("%s, %.0f s wall, %d ranks, %d teachers + %d spare, %s s of faults, %d faults "
          "injected; %s.\n" % (r["started_utc"], r["wall_seconds"], c["ranks"], c["teachers"],
                               c["elastic"], c["duration"], r["faults_injected"],
                               "all checks passed" if r["passed"] else "FAILED"))
    print("| fault | what | n | detection s (median / p90 / max) | recovery s (median / p90 / max) "
          "| steps redone (median / p90 / max) | requests re-sent (median / max) | not observable |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in sorted(r["by_kind"]):
        row = r["by_kind"][kind]
        rs = row["requests_resent"]
        print("| %s | %s | %d | %s | %s | %s | %s | %d |" % (
            kind, WHAT.get(kind, ""), row["injected"], cell(row["detection_s"]),
            cell(row["recovery_s"]), cell(row["work_redone_steps"], 0),
            "-" if not rs else "%.0f / %.0f" % (rs["median"], rs["max"]),
            row["expectations_not_applicable"]))
    print()
    print("| check | result | value |")
    print("|---|---|---|")
    for ch in r["checks"]:
        v = ch["value"]
        if ch["name"].startswith("final parameters"):
            v = "reference %s…; %d generation(s) identical" % (
                (v["reference_parameters_sha256"] or "")[:16],
                sum(1 for g in v["generations"] if g["identical"]))
        elif ch["name"].startswith("every step"):
            v = "; ".join("gen %d: %d attempts, %d steps trained, %d redone, %d in the final "
                          "metrics" % (g["generation"], g["attempts"], g["steps_trained"],
                                       g["steps_redone"], g["final_steps"]) for g in v)
        elif ch["name"].startswith("no checkpoint"):
            v = "%d restarts, %d with a corrupt or partial checkpoint present" % (
                v["restarts"], v["restarts_with_invalid_checkpoints_present"])
        elif ch["name"].startswith("long-lived"):
            v = "; ".join("%s: RSS %+.1f %%, threads %d→%d (own %s→%s), fds %d→%d" % (
                name, 100 * g["rss_kb"]["growth"], g["threads"]["baseline"],
                g["threads"]["final"], g["threads"].get("own_threads", {}).get("baseline", "?"),
                g["threads"].get("own_threads", {}).get("final", "?"),
                g["fds"]["baseline"], g["fds"]["final"])
                for name, g in v.items())
        elif ch["name"].startswith("teacher under"):
            t = v["totals"]
            v = "%d answers compared, %d mismatched; %d streams cancelled, %d past deadline, " \
                "%d disconnected" % (t.get("answers_compared", 0), t.get("answers_mismatched", 0),
                                     t.get("mode.cancel", 0), t.get("mode.deadline", 0),
                                     t.get("mode.disconnect", 0))
        else:
            v = json.dumps(v)
        print("| %s | %s | %s |" % (ch["name"], "ok" if ch["ok"] else "**FAIL**: " + ch["detail"],
                                    v))
    print()
    res = next((ch for ch in r["checks"] if ch["name"].startswith("long-lived")), None)
    if res:
        print("| teacher | RSS KiB (first window → last, median) | threads at rest | fds at rest "
              "| peak threads / fds under load |")
        print("|---|---|---|---|---|")
        for name, g in res["value"].items():
            print("| %s | %d → %d (%+.2f %%) | %d → %d | %d → %d | %d / %d |" % (
                name, g["rss_kb"]["baseline"], g["rss_kb"]["final"], 100 * g["rss_kb"]["growth"],
                g["threads"]["baseline"], g["threads"]["final"], g["fds"]["baseline"],
                g["fds"]["final"], g["threads"]["peak"], g["fds"]["peak"]))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(64)
    main(sys.argv[1])
