"""Crash durability (SPEC §4: "A 202 means the case is committed to durable
storage: a crash, kill -9 ... after the answer loses nothing").

Eight clients post distinct valid cases on keep-alive connections; the
daemon is SIGKILLed while requests are in flight; after a restart on the same
directory every case that got 202 is there (GET + its queued event in the
feed), every case whose answer was lost is either wholly present or wholly
absent, and re-posting every case answers 200 (present, same body) or 202
(absent), never 409. Three kills at different moments, on one store."""

import http.client
import random
import threading
import time

from tbgw_harness import ROUTES, case_with_id, sample

THREADS = 8
CASES_PER_ROUND = 400
KILL_AFTER = (40, 100, 170)  # number of 202s seen before the SIGKILL, per round

CONN_ERRORS = (ConnectionError, http.client.HTTPException, OSError)


def make_cases(round_no):
    out = []
    for i in range(CASES_PER_ROUND):
        c = case_with_id("crash-r%d-%04d" % (round_no, i), base_index=i % 5)
        out.append(c)
    return out


def blast(gw, cases, kill_after, rng):
    """Posts cases from THREADS clients; SIGKILLs the daemon once kill_after
    202s were seen (after a small random extra delay). Returns
    {case_id: status int | "no-answer" | "not-sent"}."""
    outcome = {c["case_id"]: "not-sent" for c in cases}
    lock = threading.Lock()
    accepted = [0]
    killed = threading.Event()
    go_kill = threading.Event()

    def client(chunk):
        conn = gw.conn(timeout=20)
        try:
            for c in chunk:
                if killed.is_set():
                    return
                with lock:
                    outcome[c["case_id"]] = "no-answer"
                try:
                    r = gw.post_case(c, conn=conn)
                except CONN_ERRORS:
                    return  # the daemon is gone; this case stays "no-answer"
                with lock:
                    outcome[c["case_id"]] = r.status
                    if r.status == 202:
                        accepted[0] += 1
                        if accepted[0] >= kill_after:
                            go_kill.set()
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(cases[i::THREADS],))
               for i in range(THREADS)]
    for t in threads:
        t.start()
    go_kill.wait(120)
    assert go_kill.is_set(), "never reached %d accepted cases: %r" % (kill_after, outcome)
    time.sleep(rng.uniform(0.0, 0.05))
    gw.kill9()
    killed.set()
    for t in threads:
        t.join(60)
        assert not t.is_alive(), "a client hung after the daemon was killed"
    return outcome


def repost_all(gw, cases):
    answers = {}
    lock = threading.Lock()

    def client(chunk):
        conn = gw.conn(timeout=60)
        try:
            for c in chunk:
                r = gw.post_case(c, conn=conn)
                with lock:
                    answers[c["case_id"]] = r
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(cases[i::THREADS],))
               for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return answers


def check_round(gw, cases, outcome):
    feed, _ = gw.all_events()
    queued = {}
    for e in feed:
        if e["status"] == "queued":
            queued[e["case_id"]] = queued.get(e["case_id"], 0) + 1
    seqs = [e["seq"] for e in feed]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "feed seqs not increasing"
    assert all(n == 1 for n in queued.values()), \
        "a case has several queued events: %r" % {k: v for k, v in queued.items() if v != 1}

    present = set()
    conn = gw.conn()
    try:
        for c in cases:
            cid = c["case_id"]
            o = outcome[cid]
            r = gw.get_case(cid, conn=conn)
            if o == 202:
                assert r.status == 200, "case %s got 202 before the crash, now %r" % (cid, r)
            if o == "not-sent":
                assert r.status == 404, "case %s was never sent but exists: %r" % (cid, r)
            if o not in (202, "no-answer", "not-sent"):
                raise AssertionError("case %s got an unexpected answer %r" % (cid, o))
            if r.status == 200:
                v = r.json()
                assert v["status"] == "queued", v
                assert v["partner"] == ROUTES[c["target_region"]], v
                assert len(v["timeline"]) == 1 and v["timeline"][0]["status"] == "queued", v
                assert queued.get(cid) == 1, "case %s is stored but has no queued event" % cid
                assert v["timeline"][0]["seq"] in seqs
                present.add(cid)
            else:
                assert r.status == 404, r
                assert cid not in queued, "case %s is absent but has an event" % cid
    finally:
        conn.close()
    return present


def test_sigkill_loses_no_accepted_case_and_leaves_no_half_written_case(gateway_factory):
    # A crash test hammers the gateway far beyond what one hall client may
    # send; the per-client rate limit would turn its load into 429s.
    gw = gateway_factory({"local_api": {"rate_limit": {"requests_per_s": 0}}}, name="crash")
    rng = random.Random(20240506)
    all_cases = []
    totals = {"accepted": 0, "no-answer": 0, "present-no-answer": 0}
    for round_no, kill_after in enumerate(KILL_AFTER):
        cases = make_cases(round_no)
        all_cases.extend(cases)
        outcome = blast(gw, cases, kill_after, rng)
        n202 = sum(1 for o in outcome.values() if o == 202)
        assert n202 >= kill_after, outcome
        lost = [cid for cid, o in outcome.items() if o == "no-answer"]
        totals["accepted"] += n202
        totals["no-answer"] += len(lost)

        gw.start()
        present = check_round(gw, cases, outcome)
        totals["present-no-answer"] += len(set(lost) & present)

        answers = repost_all(gw, all_cases)
        for c in all_cases:
            cid = c["case_id"]
            r = answers[cid]
            assert r.status in (200, 202), "re-posting %s answered %r" % (cid, r)
            if cid in present or outcome.get(cid) == 202:
                assert r.status == 200, "case %s was present; re-post answered %r" % (cid, r)
        # Everything is there now, each with exactly one queued event.
        feed, _ = gw.all_events()
        ids = [e["case_id"] for e in feed if e["status"] == "queued"]
        assert sorted(ids) == sorted(c["case_id"] for c in all_cases)
    gw.stop()
    # The daemon was really killed mid-stream at least once in three rounds.
    print("crash rounds:", totals)
    assert totals["no-answer"] > 0, totals


def test_sigkill_right_after_202_keeps_that_case(gateway_factory):
    # One case, one answer, kill at once: the durability promise in its
    # simplest form, repeated with a fresh store each time.
    for i in range(3):
        gw = gateway_factory({"local_api": {"rate_limit": {"requests_per_s": 0}}},
                             name="crash-one")
        c = sample(i)
        assert gw.post_case(c).status == 202
        gw.kill9()
        gw.start()
        r = gw.get_case(c["case_id"])
        assert r.status == 200, r
        assert r.json()["status"] == "queued"
        assert [e["case_id"] for e in gw.events(after=0).json()["events"]] == [c["case_id"]]
        gw.stop()
