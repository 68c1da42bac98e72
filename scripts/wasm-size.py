#!/usr/bin/env python3
"""What the browser bundle is made of: the code bytes of a .wasm per function, summed by crate.

Usage: wasm-size.py FILE.wasm [--top N] [--crate NAME]
Reads the code section and the "name" section (kept by cargo's wasm builds, stripped by wasm-opt),
reads Rust's v0 and legacy symbol names enough to tell the crate, and prints the crates by bytes and
the largest functions. A stand-in for twiggy's `top`, which is not on these machines.
"""
import re
import sys
from collections import Counter


def leb(data, i):
    result = shift = 0
    while True:
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return result, i


def sections(data):
    i = 8
    while i < len(data):
        sid = data[i]
        size, j = leb(data, i + 1)
        yield sid, data[j:j + size]
        i = j + size


def imported_functions(body):
    n, i = leb(body, 0)
    funcs = 0
    for _ in range(n):
        for _ in range(2):  # module and field names
            ln, i = leb(body, i)
            i += ln
        kind = body[i]
        i += 1
        if kind == 0:
            _, i = leb(body, i)
            funcs += 1
        elif kind == 1:
            i += 1
            flags, i = leb(body, i)
            _, i = leb(body, i)
            if flags & 1:
                _, i = leb(body, i)
        elif kind == 2:
            flags, i = leb(body, i)
            _, i = leb(body, i)
            if flags & 1:
                _, i = leb(body, i)
        elif kind == 3:
            i += 2
        elif kind == 4:
            i += 1
            _, i = leb(body, i)
    return funcs


def names(body):
    out = {}
    i = 0
    ln, i = leb(body, i)
    if body[i:i + ln] != b"name":
        return out
    i += ln
    while i < len(body):
        sub = body[i]
        size, i = leb(body, i + 1)
        end = i + size
        if sub == 1:
            n, j = leb(body, i)
            for _ in range(n):
                idx, j = leb(body, j)
                ln, j = leb(body, j)
                out[idx] = body[j:j + ln].decode("utf-8", "replace")
                j += ln
        i = end
    return out


V0_CRATE = re.compile(r"C(?:s[0-9A-Za-z]*_)?(\d+)")


def crate_of(name):
    if name.startswith("_R"):
        # v0 mangling: the first crate root named (C, a disambiguator, then <length><name>).
        m = V0_CRATE.search(name, 2)
        if m:
            start = m.end()
            return name[start:start + int(m.group(1))]
    if name.startswith("_ZN"):
        m = re.match(r"_ZN(\d+)", name)
        if m:
            n = int(m.group(1))
            first = name[len(m.group(0)):len(m.group(0)) + n]
            # <impl X for Y> symbols start with an underscore segment; the type tells more.
            if first.startswith("_LT_"):
                inner = re.search(r"_LT_([a-z_][a-z0-9_]*)\.\.", first)
                return inner.group(1) if inner else "<impl>"
            return first
    m = re.match(r"<?([a-z_][a-z0-9_]*)::", name)
    return m.group(1) if m else "(other)"


def main():
    args = sys.argv[1:]
    top = int(args[args.index("--top") + 1]) if "--top" in args else 25
    only = args[args.index("--crate") + 1] if "--crate" in args else None
    data = open(args[0], "rb").read()
    imports, code, fnames, data_bytes = 0, [], {}, 0
    for sid, body in sections(data):
        if sid == 2:
            imports = imported_functions(body)
        elif sid == 10:
            n, i = leb(body, 0)
            for _ in range(n):
                size, j = leb(body, i)
                code.append(size)
                i = j + size
        elif sid == 11:
            data_bytes = len(body)
        elif sid == 0:
            fnames = names(body) or fnames
    if not fnames:
        sys.exit("no name section: use the wasm cargo built, before wasm-opt")
    by_crate, funcs = Counter(), []
    for k, size in enumerate(code):
        name = fnames.get(imports + k, f"func{imports + k}")
        crate = crate_of(name)
        by_crate[crate] += size
        if only is None or crate == only:
            funcs.append((size, name))
    total = sum(code)
    print(f"file {len(data)} bytes; code {total} bytes in {len(code)} functions; data {data_bytes} bytes")
    print("\nby crate:")
    for crate, size in by_crate.most_common(top):
        print(f"{size:>9} {100 * size / total:5.1f}%  {crate}")
    print("\nlargest functions:" if only is None else f"\nlargest functions of {only}:")
    for size, name in sorted(funcs, reverse=True)[:top]:
        print(f"{size:>9}  {name[:160]}")


if __name__ == "__main__":
    main()
