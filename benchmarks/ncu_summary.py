import csv, sys, re, collections
rows = list(csv.reader(open(sys.argv[1])))
kernels = []
i = 0
while i < len(rows):
    r = rows[i]
    if r and r[0] == "Kernel Name":
        name = r[1]; header = rows[i + 1]; body = []
        i += 2
        while i < len(rows) and rows[i] and rows[i][0] != "Kernel Name":
            body.append(rows[i]); i += 1
        kernels.append((name, header, body))
    else:
        i += 1
for name, header, body in kernels:
    h = {k: j for j, k in enumerate(header)}
    ex = collections.Counter(); st = collections.Counter(); total = 0; samples = 0
    stalls = collections.Counter()
    for r in body:
        op = re.sub(r"^\s*(@!?U?P\w+\s+)?", "", r[h["Source"]]).split(" ")[0]
        base = op.split(".")[0]
        n = int(r[h["Instructions Executed"]] or 0)
        ex[base] += n; total += n
        s = int(r[h["Warp Stall Sampling (All Samples)"]] or 0); st[base] += s; samples += s
        for k in header:
            if k.startswith("stall_") and "Not Issued" not in k:
                stalls[k] += int(r[h[k]] or 0)
    print(f"== {name[:90]}  executed {total:,}  samples {samples}")
    print("  ops:", ", ".join(f"{k} {v/total:.1%}" for k, v in ex.most_common(16)))
    print("  stall samples by op:", ", ".join(f"{k} {v/samples:.0%}" for k, v in st.most_common(8)))
    print("  stall reasons:", ", ".join(f"{k[6:]} {v/samples:.0%}" for k, v in stalls.most_common(7)))
