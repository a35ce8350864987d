#!/usr/bin/env python3
"""Reads the `madvd::diag` lines of a diagnostic lab_reclaim run (target/lab_reclaim.log after
`MADVD_LOG=info,madvd::diag=debug MADVD_VS_KERNEL_SIDES=d MADVD_VS_KERNEL_REPS=1 ... benches/lab_reclaim.sh`)
and prints, per scheme, the page-out time it spent, the bytes it advised, and how the idle cut's
first contacts were judged: the outcomes of ranges (or parts of them) that the cut had kept wholly
in (`applied=0`, some `not_idle`) in the round before — follow-ups or ranges matched again, the log
does not tell them apart — and how many of those advised something, and how much.

    benches/lab_reclaim_diag.py target/lab_reclaim.log
"""
import re
import sys


def main(path):
    out_re = re.compile(r"DEBUG t=(\d+) esz=\[[0-9, ]+\] outcomes (.*)")
    tok_re = re.compile(r"s(\d+):([0-9a-f]+)-([0-9a-f]+):applied=(\d+)K,ns=(\d+)(.*)")
    spent, advised = {}, {}
    prev, again, again_adv, again_bytes = set(), 0, 0, 0
    with open(path, errors="replace") as f:
        for line in f:
            m = out_re.match(line.strip())
            if not m:
                continue
            cur = set()
            for tok in m.group(2).split():
                t = tok_re.match(tok)
                if not t:
                    continue
                s, a, b, kib, ns, rest = t.groups()
                a, b, kib = int(a, 16), int(b, 16), int(kib)
                spent[s] = spent.get(s, 0) + int(ns)
                advised[s] = advised.get(s, 0) + kib
                if any(ps == s and pa <= a and b <= pb for ps, pa, pb in prev):
                    again += 1
                    if kib > 0:
                        again_adv += 1
                        again_bytes += kib
                if kib == 0 and "not_idle" in rest:
                    cur.add((s, a, b))
            prev = cur
    for s in sorted(spent):
        print(f"scheme {s}: advised {advised[s] / 1024:.1f} MiB in {spent[s] / 1e9:.2f} s of page-out")
    print(f"ranges kept wholly in, advised again the round after: {again} outcomes, "
          f"{again_adv} advised {again_bytes / 1024:.1f} MiB")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/lab_reclaim.log")
