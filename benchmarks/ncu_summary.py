"""Per kernel of an Nsight Compute SASS source page: the opcode mix and where warps stall.

Research aid for docs/inductor.md (not part of the package). Reads the CSV that
``ncu -i REPORT --page source --print-source sass --csv`` writes (a report taken with the
SourceCounters section, as ``--set full`` does) and prints, per kernel, the executed
instructions by opcode (share of all), the stall samples by opcode and the stall reasons:

    python benchmarks/ncu_summary.py prof.source.csv
"""

import collections
import csv
import re
import sys


def kernels(rows):
    """(kernel name, header, body rows) of each kernel's block in the CSV."""
    i = 0
    while i < len(rows):
        if rows[i] and rows[i][0] == "Kernel Name":
            name, header, body = rows[i][1], rows[i + 1], []
            i += 2
            while i < len(rows) and not (rows[i] and rows[i][0] == "Kernel Name"):
                body.append(rows[i])
                i += 1
            yield name, header, body
        else:
            i += 1


def summarize(name, header, body):
    column = {key: j for j, key in enumerate(header)}
    executed, stalled, reasons = collections.Counter(), collections.Counter(), collections.Counter()
    reason_columns = [k for k in header if k.startswith("stall_") and "Not Issued" not in k]
    for row in body:
        opcode = re.sub(r"^\s*(@!?U?P\w+\s+)?", "", row[column["Source"]]).split(" ")[0].split(".")[0]
        executed[opcode] += int(row[column["Instructions Executed"]] or 0)
        stalled[opcode] += int(row[column["Warp Stall Sampling (All Samples)"]] or 0)
        for key in reason_columns:
            reasons[key[len("stall_"):]] += int(row[column[key]] or 0)
    total, samples = sum(executed.values()) or 1, sum(stalled.values()) or 1
    print(f"== {name[:100]}  executed {total:,} warp instructions, {samples} stall samples")
    print("  opcodes:", ", ".join(f"{k} {v / total:.1%}" for k, v in executed.most_common(16)))
    print("  stall samples by opcode:", ", ".join(f"{k} {v / samples:.0%}" for k, v in stalled.most_common(8)))
    print("  stall reasons:", ", ".join(f"{k} {v / samples:.0%}" for k, v in reasons.most_common(7)))


def main():
    with open(sys.argv[1], newline="") as handle:
        rows = list(csv.reader(handle))
    for name, header, body in kernels(rows):
        summarize(name, header, body)


if __name__ == "__main__":
    main()
