#!/usr/bin/env python3
"""Instructions per message of two callgrind profiles (scripts/instr-count.sh),
and the functions whose own instructions differ most.

    scripts/callgrind-diff.py <a.out> <b.out> <messages> [rows]

Each function's own cost (what callgrind counts in its body, inlined code
included, callees excluded), divided by the messages: columns a - b, a, b.
"""
import collections
import re
import sys


def self_costs(path):
    names = {}
    cost = collections.Counter()
    fn = None
    after_call = False

    def name(v):
        m = re.match(r"\((\d+)\)(?: (.*))?", v)
        if not m:
            return v
        if m.group(2):
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), v)

    for line in open(path):
        line = line.rstrip("\n")
        if line.startswith("fn="):
            fn = name(line[3:])
        elif line.startswith("cfn="):
            name(line[4:])
        elif line.startswith("calls="):
            after_call = True  # the next cost line is the call's, not fn's
        elif line and (line[0].isdigit() or line[0] in "+-*"):
            parts = line.split()
            if len(parts) >= 2:
                if after_call:
                    after_call = False
                else:
                    cost[fn] += int(parts[1])
    return cost


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    a, b = self_costs(sys.argv[1]), self_costs(sys.argv[2])
    n = int(sys.argv[3])
    rows = int(sys.argv[4]) if len(sys.argv) > 4 else 30
    ta, tb = sum(a.values()), sum(b.values())
    print(f"instructions per message: {ta / n:.0f} (a) vs {tb / n:.0f} (b): b is {tb / ta - 1:+.1%}")
    for k in sorted(set(a) | set(b), key=lambda k: -abs(a[k] - b[k]))[:rows]:
        print(f"{(a[k] - b[k]) / n:9.1f} {a[k] / n:9.1f} {b[k] / n:9.1f}  {k[:140]}")


if __name__ == "__main__":
    main()
