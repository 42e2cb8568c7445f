#!/usr/bin/env python3
"""bench/report.py OUT_DIR — turns bench/run.sh's raw snapshots into one table
(stdout) and OUT_DIR/results.json. See docs/performance.md."""
import json, os, re, statistics, sys

PROTO = {"laizhou": "lu-xml", "zhaoyuan": "lu-xml", "wujiang": "yue-json"}
LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+([-+0-9.eEInfa]+)')


def metrics(path):
    out = []
    for ln in open(path, encoding="utf-8"):
        if ln.startswith("#"):
            continue
        m = LINE.match(ln)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        out.append((m.group(1), labels, float(m.group(4))))
    return out


def msum(ms, name, **want):
    return sum(v for n, l, v in ms if n == name and all(l.get(k) == x for k, x in want.items()))


def by_label(ms, name, key):
    d = {}
    for n, l, v in ms:
        if n == name and key in l:
            d[l[key]] = d.get(l[key], 0) + v
    return d


def cpu_ticks(path):
    f = open(path).read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])  # utime + stime (fields 14, 15)


def status_kb(path, key):
    for ln in open(path):
        if ln.startswith(key + ":"):
            return int(ln.split()[1])
    return 0


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def main():
    out = sys.argv[1]
    raw = os.path.join(out, "raw")
    machine = dict(l.rstrip("\n").split("=", 1) for l in open(os.path.join(raw, "machine.txt")) if "=" in l)
    tck = int(machine.get("clk_tck", "100"))
    limit = json.load(open(os.path.join(out, "limit.json")))
    runs = sorted(int(m.group(1)) for f in os.listdir(raw) if (m := re.match(r"post(\d+)\.wrk\.json$", f)))

    per_run = []
    for r in runs:
        b, a = metrics(f"{raw}/post{r}.before.metrics"), metrics(f"{raw}/post{r}.after.metrics")
        w = json.load(open(f"{raw}/post{r}.wrk.json"))
        secs = w["duration_us"] / 1e6
        acc = msum(a, "tbgw_cases_accepted_total") - msum(b, "tbgw_cases_accepted_total")
        codes = {}
        for code in set(by_label(a, "tbgw_http_requests_total", "code")):
            d = msum(a, "tbgw_http_requests_total", route="/v1/cases", code=code) - \
                msum(b, "tbgw_http_requests_total", route="/v1/cases", code=code)
            if d:
                codes[code] = int(d)
        deliv_a, deliv_b = by_label(a, "tbgw_cases_delivered_total", "partner"), by_label(b, "tbgw_cases_delivered_total", "partner")
        delivered = {}
        for p, v in deliv_a.items():
            proto = PROTO.get(p, p)
            delivered[proto] = delivered.get(proto, 0) + (v - deliv_b.get(p, 0)) / secs
        cpu_s = (cpu_ticks(f"{raw}/post{r}.after.stat") - cpu_ticks(f"{raw}/post{r}.before.stat")) / tck
        conns = msum(a, "tbgw_partner_connections_opened_total") - msum(b, "tbgw_partner_connections_opened_total")
        reqs = msum(a, "tbgw_partner_requests_total") - msum(b, "tbgw_partner_requests_total")
        ndeliv = sum(deliv_a.values()) - sum(deliv_b.values())
        per_run.append({
            "run": r,
            "wrk_requests": w["requests"],
            "wrk_errors": w["errors"],
            "http_codes": codes,
            "accepted": int(acc),
            "accepted_per_s": acc / secs,
            "latency_ms": {k: v / 1000 for k, v in w["latency_us"].items()},
            "delivered_per_s": delivered,
            "cpu_s": cpu_s,
            "cpu_us_per_accepted": cpu_s * 1e6 / acc if acc else None,
            "cpu_us_per_delivered": cpu_s * 1e6 / ndeliv if ndeliv else None,
            "partner_connections_opened": int(conns),
            "partner_requests_sent": int(reqs),
            "rss_kb": status_kb(f"{raw}/post{r}.after.status", "VmRSS"),
            "rss_peak_kb": status_kb(f"{raw}/post{r}.after.status", "VmHWM"),
        })

    def hz(name, before, after):
        w = json.load(open(f"{raw}/{name}.wrk.json"))
        secs = w["duration_us"] / 1e6
        cpu = (cpu_ticks(after) - cpu_ticks(before)) / tck
        return {"requests_per_s": w["requests"] / secs, "p50_ms": w["latency_us"]["p50"] / 1000,
                "p99_ms": w["latency_us"]["p99"] / 1000, "cpu_us_per_request": cpu * 1e6 / w["requests"],
                "errors": w["errors"]}

    hz_tbgw = hz("hz", f"{raw}/hz.before.stat", f"{raw}/hz.after.stat")
    hz_nginx = hz("nginx", f"{raw}/nginx.before.stat", f"{raw}/nginx.after.stat")

    store_lim = max(limit.get("accept_store", [{}]), key=lambda x: x.get("cases_per_s", 0), default={})
    S = {
        "accepted_per_s": med([x["accepted_per_s"] for x in per_run]),
        "p50_ms": med([x["latency_ms"]["p50"] for x in per_run]),
        "p99_ms": med([x["latency_ms"]["p99"] for x in per_run]),
        "p999_ms": med([x["latency_ms"]["p999"] for x in per_run]),
        "cpu_us_per_accepted": med([x["cpu_us_per_accepted"] for x in per_run]),
        "cpu_us_per_delivered": med([x["cpu_us_per_delivered"] for x in per_run]),
        "rss_kb": max((x["rss_kb"] for x in per_run), default=0),
        "rss_peak_kb": max((x["rss_peak_kb"] for x in per_run), default=0),
        "partner_connections_opened": sum(x["partner_connections_opened"] for x in per_run),
        "partner_requests_sent": sum(x["partner_requests_sent"] for x in per_run),
    }
    protos = sorted({p for x in per_run for p in x["delivered_per_s"]} | {"lu-xml", "yue-json"})
    S["delivered_per_s"] = {p: med([x["delivered_per_s"].get(p, 0.0) for x in per_run]) for p in protos}
    ratios = {
        "accepted_vs_limit_with_store": S["accepted_per_s"] / store_lim["cases_per_s"] if store_lim else None,
        "accepted_vs_limit_parse_validate": S["accepted_per_s"] / limit["accept_prepare"]["cases_per_s"],
        "cpu_per_accepted_vs_limit_with_store": (S["cpu_us_per_accepted"] / store_lim["cpu_us_per_case"]) if store_lim and S["cpu_us_per_accepted"] else None,
        "healthz_tbgw_vs_nginx": hz_tbgw["requests_per_s"] / hz_nginx["requests_per_s"],
    }
    for p in protos:
        lim = limit.get("delivery", {}).get(p)
        if lim:
            ratios[f"delivered_{p}_vs_limit"] = S["delivered_per_s"][p] / lim["cases_per_s"]

    f = lambda v, fmt="{:.0f}": "n/a" if v is None else fmt.format(v)
    rows = [
        ("accepted cases/s (median of %d runs)" % len(per_run), f(S["accepted_per_s"]),
         "limit %s/s (store, %s in flight, 1 thread) = %s" % (f(store_lim.get("cases_per_s")), store_lim.get("inflight"), f(ratios["accepted_vs_limit_with_store"], "{:.2f}x"))),
        ("accept latency p50 / p99 / p99.9 (ms)", "%s / %s / %s" % (f(S["p50_ms"], "{:.1f}"), f(S["p99_ms"], "{:.1f}"), f(S["p999_ms"], "{:.1f}")), ""),
    ]
    for p in protos:
        lim = limit.get("delivery", {}).get(p, {})
        rows.append((f"delivered cases/s, {p}", f(S["delivered_per_s"][p], "{:.1f}"),
                     "limit %s/s per core (encode+classify)" % f(lim.get("cases_per_s"))))
    rows += [
        ("gateway CPU us / accepted case", f(S["cpu_us_per_accepted"]),
         "limit %s us (stage fns + store)" % f(store_lim.get("cpu_us_per_case"))),
        ("gateway CPU us / delivered case", f(S["cpu_us_per_delivered"]), "no partner answers in this run"),
        ("RSS after load / peak (MiB)", "%s / %s" % (f(S["rss_kb"] / 1024, "{:.1f}"), f(S["rss_peak_kb"] / 1024, "{:.1f}")), ""),
        ("partner connections opened / requests sent", "%d / %d" % (S["partner_connections_opened"], S["partner_requests_sent"]), "partners unreachable (closed port)"),
        ("GET /healthz req/s: tbgw / nginx", "%s / %s" % (f(hz_tbgw["requests_per_s"]), f(hz_nginx["requests_per_s"])),
         "ratio %s; CPU us/req %s / %s" % (f(ratios["healthz_tbgw_vs_nginx"], "{:.2f}"), f(hz_tbgw["cpu_us_per_request"], "{:.1f}"), f(hz_nginx["cpu_us_per_request"], "{:.1f}"))),
    ]
    print()
    print(f"tongban-gateway bench — {machine.get('cpu')} x{machine.get('nproc')}, kernel {machine.get('kernel')}, runs={machine.get('runs')}")
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    for a, b, c in rows:
        print(f"  {a:<{w0}}  {b:>{w1}}  {c}")
    for x in per_run:
        bad = {k: v for k, v in x["http_codes"].items() if k != "202"}
        print(f"  run {x['run']}: {x['accepted']} accepted (202) of {x['wrk_requests']} wrk responses, "
              f"other codes {bad or 'none'}, wrk errors {x['wrk_errors']}")
    res = {"machine": machine, "summary": S, "ratios": ratios, "healthz": {"tbgw": hz_tbgw, "nginx": hz_nginx},
           "runs": per_run, "limit": limit}
    with open(os.path.join(out, "results.json"), "w") as fh:
        json.dump(res, fh, indent=2)
    print(f"\nwrote {os.path.join(out, 'results.json')}")


if __name__ == "__main__":
    main()
