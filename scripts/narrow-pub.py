#!/usr/bin/env python3
"""Narrows the library's `pub` items to `pub(crate)` except where the binary, tests, benches or
examples need them: converts every `pub` item line under src/ (not main.rs or cli/), then reverts
the lines the compiler names until `cargo check --all-targets` is clean of privacy errors."""
import json, os, re, subprocess, sys, pathlib

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else '.').resolve()
os.chdir(root)
PUB = re.compile(r'^(\s*)pub(\s+)(?=(?:async |unsafe |const |fn |struct |enum |static |type |trait |mod |use |extern |[A-Za-z_][A-Za-z0-9_]*\s*:))')
converted = set()
RESUME = os.environ.get('RESUME') == '1'
files = {}
for p in sorted(root.glob('src/**/*.rs')):
    rel = str(p.relative_to(root))
    if rel == 'src/main.rs' or rel.startswith('src/cli/'):
        continue
    lines = p.read_text().split('\n')
    if RESUME:
        head = subprocess.run(['git', 'show', 'HEAD:' + rel], capture_output=True, text=True).stdout.split('\n')
        for i, l in enumerate(lines):
            if i < len(head) and 'pub(crate)' in l and 'pub(crate)' not in head[i] and PUB.match(head[i]):
                converted.add((rel, i + 1))
        files[rel] = lines
        continue
    changed = False
    for i, l in enumerate(lines):
        m = PUB.match(l)
        if m and 'pub(crate)' not in l:
            lines[i] = PUB.sub(r'\1pub(crate)\2', l, count=1)
            converted.add((rel, i + 1))
            changed = True
    files[rel] = lines
    if changed:
        p.write_text('\n'.join(lines))
print('converted', len(converted), file=sys.stderr)

def revert(rel, line):
    if (rel, line) not in converted and rel in files:
        # A span inside a multi-line `use` list: the statement starts a few lines up.
        lines = files[rel]
        for back in range(1, 15):
            j = line - back
            if j < 1 or lines[j - 1].rstrip().endswith(';'):
                return False
            if (rel, j) in converted and re.match(r'\s*pub\(crate\)\s+use\b', lines[j - 1]):
                line = j
                break
        else:
            return False
    if (rel, line) not in converted:
        return False
    lines = files[rel]
    l = lines[line - 1]
    if 'pub(crate)' not in l:
        return False
    lines[line - 1] = l.replace('pub(crate)', 'pub', 1)
    converted.discard((rel, line))
    (root / rel).write_text('\n'.join(lines))
    return True

def struct_field(struct, field):
    out = []
    for rel, lines in files.items():
        for i, l in enumerate(lines):
            if re.search(r'\b(struct|union)\s+' + re.escape(struct) + r'\b', l):
                ind = len(l) - len(l.lstrip())
                for j in range(i + 1, min(i + 400, len(lines))):
                    lj = lines[j]
                    if lj.strip() == '}' and len(lj) - len(lj.lstrip()) == ind:
                        break
                    if re.match(r'\s*pub\(crate\)\s+' + re.escape(field) + r'\s*:', lj):
                        out.append((rel, j + 1))
    return out

def spans(msg):
    for s in msg.get('spans', []):
        yield s
        e = s.get('expansion')
        while e:
            yield e['span']
            e = e['span'].get('expansion')
    for c in msg.get('children', []):
        yield from spans(c)

for it in range(60):
    r = subprocess.run(['cargo', 'check', '--all-targets', '-p', 'pagecast', '--message-format=json'],
                       capture_output=True, text=True)
    n = 0
    errors = 0
    for line in r.stdout.splitlines():
        try:
            m = json.loads(line)
        except ValueError:
            continue
        if m.get('reason') != 'compiler-message':
            continue
        msg = m['message']
        code = (msg.get('code') or {}).get('code') or ''
        text = msg['message']
        relevant = msg['level'] == 'error' or code in ('private_interfaces', 'private_bounds') \
            or 'private' in text or 'cannot be re-exported' in text
        if not relevant:
            continue
        if msg['level'] == 'error':
            errors += 1
        for s in spans(msg):
            if revert(s['file_name'], s['line_start']):
                n += 1
        fm = re.search(r'field `(\w+)` of struct `([\w:]+)', text)
        if fm:
            for rel, ln in struct_field(fm.group(2).split('::')[-1], fm.group(1)):
                if revert(rel, ln):
                    n += 1
        fm = re.search(r'^`(\w+)` is (?:private|only public within the crate), and cannot be re-exported', text) \
            or re.search(r'^(?:struct|enum|function|constant|trait|type alias|module|static|union|unit struct|tuple struct|re-export) (?:import )?`(\w+)` is private', text)
        if fm:
            name = re.escape(fm.group(1))
            pat = re.compile(r'\s*pub\(crate\)\s+(?:(?:async|unsafe|const)\s+)*(?:fn|struct|enum|const|static|type|trait|mod)\s+' + name + r'\b|\s*pub\(crate\)\s+use\s.*\b' + name + r'\b')
            for rel, lines in files.items():
                for i, l in enumerate(lines):
                    if pat.match(l) and revert(rel, i + 1):
                        n += 1
        fm = re.search(r'fields? (.*) (?:of struct|of variant) `([\w:]+)[^`]*` (?:is|are) private', text)
        if fm and not n:
            for f in re.findall(r'`(\w+)`', fm.group(1)):
                for rel, ln in struct_field(fm.group(2).split('::')[-1], f):
                    if revert(rel, ln):
                        n += 1
    print(f'iteration {it}: errors {errors}, reverted {n}', file=sys.stderr, flush=True)
    if errors == 0 and n == 0:
        break
    if n == 0:
        print(r.stderr[-4000:], file=sys.stderr)
        for line in r.stdout.splitlines():
            try:
                m = json.loads(line)
            except ValueError:
                continue
            if m.get('reason') == 'compiler-message' and m['message']['level'] == 'error':
                print(m['message']['rendered'], file=sys.stderr)
        sys.exit(1)
print('remaining converted', len(converted), file=sys.stderr)
