#!/usr/bin/env python3
"""Adds lockfile entries for other platforms' optional binary packages.

npm 11 records only the host platform's optional packages (biome, turbo, sharp … ship one per
platform), and the registry reachable here has no copies of the others; `npm ci` then refuses the
lock ("Missing: @turbo/darwin-64@ from lock file"). An entry naming the package's os/cpu lets
`npm ci` skip it on other platforms without fetching anything. Run after every `npm install`
that changes such a dependency: python3 scripts/complete-lockfile.py
"""
import json
import re

OS = {"darwin": "darwin", "linux": "linux", "win32": "win32", "windows": "win32", "android": "android", "freebsd": "freebsd"}
CPU = {"x64": "x64", "64": "x64", "arm64": "arm64", "arm": "arm", "ia32": "ia32", "s390x": "s390x", "ppc64": "ppc64", "riscv64": "riscv64"}

# Optional binaries whose names carry no platform: the os they are for (cpu left open).
KNOWN = {"napi-windows-process-start-time": "win32", "fsevents": "darwin"}

lock = json.load(open("package-lock.json"))
pkgs = lock["packages"]
for path, entry in list(pkgs.items()):
    for name, version in (entry.get("optionalDependencies") or {}).items():
        where = "node_modules/" + name
        if where in pkgs:
            continue
        if name in KNOWN:
            new = {"version": re.sub(r"^[~^]", "", version), "optional": True, "os": [KNOWN[name]]}
            if entry.get("dev"):
                new["dev"] = True
            pkgs[where] = new
            print(f"added {where}@{version} {new['os']}")
            continue
        m = re.search(r"(darwin|linux|win32|windows|android|freebsd)-(x64|64|arm64|arm|ia32|s390x|ppc64|riscv64)(-(musl|gnu|msvc))?$", name)
        if not m:
            raise SystemExit(f"cannot tell the platform of {name}; add its entry by hand")
        new = {"version": version, "cpu": [CPU[m.group(2)]]}
        if entry.get("dev"):
            new["dev"] = True
        if m.group(4) == "musl":
            new["libc"] = ["musl"]
        new["optional"] = True
        new["os"] = [OS[m.group(1)]]
        pkgs[where] = new
        print(f"added {where}@{version} {new['os']} {new['cpu']}")
lock["packages"] = dict(sorted(pkgs.items(), key=lambda kv: (kv[0] != "", kv[0])))
with open("package-lock.json", "w") as f:
    json.dump(lock, f, indent=2)
    f.write("\n")
