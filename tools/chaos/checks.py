"""The end-of-soak checks. Each returns {"name", "ok", "value", "detail"}.

Contract: every check reads primary evidence, not Retort's claims alone:
parameters by result.json's parameters_sha256 *and* the SHA-256 of the
exported model.safetensors; steps from metrics.jsonl snapshots; checkpoints
by re-hashing their files; teacher resources from /proc samples; faults from
the stamped log lines and exit codes. ``resource_growth`` compares resident
memory under load (median of a window after warm-up vs the last window: the
allocator keeps what the first minutes needed, a leak keeps growing) and
threads and open descriptors at rest (before any client connected vs after
every client has gone: they swing with the number of live streams under
load, but whatever the run opened must be closed again; gRPC's on-demand
pools are held to their bounds instead, see grpc_pool_bounds).
"""

import os
import statistics

import checkpoints
import metrics

GROWTH_LIMIT = 0.05

# gRPC 1.51's on-demand thread pools (by /proc comm name, 15 characters) and
# the most threads each keeps once idle: the executors start threads as work
# queues up, up to 2 x cores each (src/core/lib/iomgr/executor/executor.cc);
# the timer manager starts one when every timer thread is busy and lets one
# exit only once more than MAX_WAITERS (3) wait, so up to 4 stay
# (src/core/lib/iomgr/timer_manager.cc; 4 observed after SIGSTOPs, which
# leave timers overdue). They grow to what the load needs and stay; the
# threads check holds them to these bounds and the rest of the process's
# threads to the 5 % limit. The 30-minute soak is the evidence that they
# stop there.
def grpc_pool_bounds(cpus):
    return {"default-executo": 2 * cpus, "resolver-execut": 2 * cpus, "grpc_global_tim": 4}


def check(name, ok, value=None, detail=""):
    return {"name": name, "ok": bool(ok), "value": value, "detail": detail}


def parameters(reference, generations, model_sha):
    """Every finished generation ends with the reference's parameters."""
    ref_sha = (reference.result or {}).get("parameters_sha256")
    ref_file = model_sha(reference.out_dir)
    rows, ok = [], ref_sha is not None and ref_file is not None
    for g in generations:
        sha = (g.result or {}).get("parameters_sha256")
        f = model_sha(g.out_dir)
        same = sha == ref_sha and f == ref_file and sha is not None
        ok = ok and same
        rows.append({"generation": g.index, "parameters_sha256": sha,
                     "model_safetensors_sha256": f, "identical": same})
    ok = ok and bool(generations)
    return check("final parameters bit-identical to the undisturbed run", ok,
                 {"reference_parameters_sha256": ref_sha,
                  "reference_model_safetensors_sha256": ref_file, "generations": rows},
                 "" if generations else "no generation finished")


def steps(generations, total_steps):
    rows, ok = [], bool(generations)
    for g in generations:
        acc = metrics.account(
            [{"resumed_from": a.resumed_from, "metrics_text": a.metrics_text} for a in g.attempts],
            g.final_metrics_text, total_steps)
        acc["generation"] = g.index
        acc["attempts"] = len(g.attempts)
        ok = ok and acc["ok"]
        rows.append(acc)
    return check("every step trained exactly once (metrics.jsonl)", ok, rows)


def resumes(generations):
    """No resume from a checkpoint that fails verification; always the newest valid."""
    rows, problems = [], []
    for g in generations:
        for a in g.attempts:
            newest = checkpoints.newest_valid(a.valid_before)
            entry = a.valid_before.get(a.resumed_from)
            valid = a.resumed_from == 0 or (entry is not None and entry["valid"])
            rows.append({"generation": g.index, "attempt": a.index,
                         "resumed_from": a.resumed_from, "valid": valid,
                         "newest_valid": newest,
                         "invalid_present": sorted(s for s, v in a.valid_before.items()
                                                   if not v["valid"])})
            if not valid:
                problems.append("gen %d attempt %d resumed from step %d, which fails verification"
                                % (g.index, a.index, a.resumed_from))
            elif a.resumed_from != newest and a.first_step_at is not None:
                problems.append("gen %d attempt %d resumed from %d, newest valid was %d"
                                % (g.index, a.index, a.resumed_from, newest))
    n_invalid = sum(1 for r in rows if r["invalid_present"])
    return check("no checkpoint that fails verification was resumed from", not problems,
                 {"restarts": len(rows), "restarts_with_invalid_checkpoints_present": n_invalid,
                  "attempts": rows}, "; ".join(problems))


def resource_growth(teacher, t_begin, t_end):
    """Growth of one process's RSS, threads and fds between two windows.

    Baseline: samples in [t_begin, t_begin + w); final: [t_end - w, t_end],
    w = 10 % of the span (at least 5 s). Only samples of the process that was alive at
    t_begin count (a restarted teacher is not long-lived)."""
    span = t_end - t_begin
    w = max(5.0, 0.1 * span)
    first = [s for s in teacher.samples if t_begin <= s[0] < t_begin + w]
    if not first:
        return None
    pid = first[0][1]
    if any(s[1] != pid for s in teacher.samples if s[0] >= t_begin):
        return None
    last = [s for s in teacher.samples if t_end - w <= s[0] <= t_end and s[1] == pid]
    if not last:
        return None
    out = {"pid": pid, "baseline_window": [round(t_begin, 1), round(t_begin + w, 1)],
           "final_window": [round(t_end - w, 1), round(t_end, 1)]}
    rest = teacher.idle_before is not None and teacher.idle_after is not None and \
        teacher.idle_before[0] == pid == teacher.idle_after[0]
    for key in ("rss_kb", "threads", "fds"):
        peak = max(s[2][key] for s in teacher.samples if s[0] >= t_begin and s[1] == pid)
        if key == "rss_kb" or not rest:
            # Under load after warm-up: medians of the two windows.
            b = statistics.median(s[2][key] for s in first)
            e = statistics.median(s[2][key] for s in last)
            measure = "median under load, first vs last window"
        else:
            # At rest, before any client and after every client has gone:
            # every thread and descriptor the run opened must be gone.
            b, e = teacher.idle_before[1][key], teacher.idle_after[1][key]
            measure = "at rest, before the run vs after it"
        out[key] = {"measure": measure, "baseline": b, "final": e, "peak": peak,
                    "growth": round(e / b - 1.0, 4) if b else None}
    if rest:
        before, after = teacher.idle_before[2], teacher.idle_after[2]
        bounds = grpc_pool_bounds(os.cpu_count() or 1)
        own_b = sum(n for k, n in before.items() if k not in bounds)
        own_a = sum(n for k, n in after.items() if k not in bounds)
        out["threads"]["own_threads"] = {"baseline": own_b, "final": own_a,
                                         "growth": round(own_a / own_b - 1.0, 4) if own_b else None}
        out["threads"]["grpc_pools"] = {k: {"before": before.get(k, 0), "after": after.get(k, 0),
                                            "bound": b} for k, b in bounds.items()}
        out["threads"]["growth_checked"] = out["threads"]["own_threads"]["growth"]
        out["threads"]["pools_within_bounds"] = all(after.get(k, 0) <= b
                                                    for k, b in bounds.items())
        out["thread_names_at_rest"] = {"before": before, "after": after}
    return out


def teacher_resources(teachers, t_begin, t_end):
    rows, ok, problems = {}, True, []
    for t in teachers:
        g = resource_growth(t, t_begin, t_end)
        if g is None:
            continue
        rows[t.name] = g
        for key in ("rss_kb", "threads", "fds"):
            growth = g[key].get("growth_checked", g[key]["growth"])
            if growth is None or growth >= GROWTH_LIMIT:
                ok = False
                problems.append("%s %s grew %s" % (t.name, key, growth))
        if g["threads"].get("pools_within_bounds") is False:
            ok = False
            problems.append("%s: a gRPC thread pool exceeds its bound: %s"
                            % (t.name, g["threads"]["grpc_pools"]))
    if not rows:
        ok = False
        problems.append("no long-lived teacher to measure")
    return check("long-lived teachers' RSS, threads and fds grow < 5 %", ok, rows,
                 "; ".join(problems))


def faults_observed(faults):
    problems = []
    for f in faults:
        if f.injected_at is None:
            continue
        if not f.done:
            problems.append("fault %d (%s) never finished" % (f.id, f.kind))
        for e in f.expected:
            if e["seen"] is False:
                problems.append("fault %d (%s on %s): %s not seen %s"
                                % (f.id, f.kind, f.target, e["what"], e["detail"]))
    n_expect = sum(len(f.expected) for f in faults if f.injected_at is not None)
    n_na = sum(1 for f in faults for e in f.expected if e["seen"] is None)
    return check("every fault produced its documented log line and exit code", not problems,
                 {"expectations": n_expect, "not_applicable": n_na, "failed": len(problems)},
                 "; ".join(problems[:20]))


def fault_counts(faults, kinds, minimum):
    counts = {k: 0 for k in kinds}
    for f in faults:
        if f.injected_at is not None and f.target is not None and f.kind in counts:
            counts[f.kind] += 1
    short = {k: n for k, n in counts.items() if n < minimum}
    return check("at least %d faults of every kind injected" % minimum, not short, counts,
                 "too few: %s" % short if short else "")


def stress(reports, final_probe):
    """No mismatched answer, all digests agree, answers flowed."""
    totals, digests, problems = {}, {}, []
    for name, r in reports:
        for k, v in (r or {}).get("counts", {}).items():
            totals[k] = totals.get(k, 0) + v
        for k, v in (r or {}).get("digests", {}).items():
            if digests.setdefault(k, v) != v:
                problems.append("%s: answer to input %s differs from another client's" % (name, k))
    if final_probe is None:
        problems.append("the final probe got no answer")
    else:
        for k, v in final_probe.get("digests", {}).items():
            if digests.get(k, v) != v:
                problems.append("after the soak, input %s answers differently" % k)
        if final_probe.get("counts", {}).get("answers_ok", 0) == 0:
            problems.append("the final probe got no answer")
    if totals.get("answers_mismatched", 0):
        problems.append("%d answers mismatched" % totals["answers_mismatched"])
    if totals.get("answers_ok", 0) == 0:
        problems.append("no answers at all under stress")
    return check("teacher under 64 abusive streams answers identically throughout", not problems,
                 {"totals": totals, "final_probe": (final_probe or {}).get("counts")},
                 "; ".join(problems))
