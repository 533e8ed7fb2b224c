#!/usr/bin/env python3
"""Checks that the documents and the code say the same thing, and that rules stay written once.

1. Config keys declared once: every key of a `config_keys!` declaration (the store's and
   the broker's) appears as a string literal at most once per crate outside tests: in its
   declaration, or in the one place the store reads brokerIP1/listenPort. A few keys share
   their name with a wire field of RocketMQ's protocol (a request header, a runtime-info
   entry); those are listed in WIRE_FIELDS with where they occur.
2. README's Layout names every source file and test file (by file or folder name).
3. FORMAT.md names only paths that exist.
4. The crates' version has a CHANGELOG section.
Exit 1 with one line per problem.
"""
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRATES = {"mqstore": "storage", "broker-lite": "broker-lite/src"}
DECLARATIONS = ["storage/config/mod.rs", "broker-lite/src/config/mod.rs"]
# Wire fields of RocketMQ's remoting protocol that happen to be spelled like a config key:
# (crate, literal) -> files allowed to use it besides the declaration.
WIRE_FIELDS = {
    # REGISTER_BROKER / route headers and GET_BROKER_RUNTIME_INFO entries.
    ("broker-lite", "brokerName"): {"requests/replication.rs", "requests/route.rs", "requests/mod.rs", "cluster/register.rs"},
    ("broker-lite", "brokerId"): {"requests/replication.rs", "cluster/register.rs"},
    ("broker-lite", "brokerRole"): {"requests/replication.rs"},
    ("broker-lite", "haMasterAddress"): {"requests/replication.rs"},
    # SEND_MESSAGE's header field (V1 name).
    ("broker-lite", "defaultTopicQueueNums"): {"requests/send.rs"},
}


def read(path):
    with open(os.path.join(REPO, path), encoding="utf-8") as f:
        return f.read()


def non_test(text):
    return text.split("#[cfg(test)]")[0]


def sources(root):
    for dirpath, _, files in os.walk(os.path.join(REPO, root)):
        for f in sorted(files):
            if f.endswith(".rs"):
                path = os.path.join(dirpath, f)
                yield os.path.relpath(path, os.path.join(REPO, root)), path


def check_keys():
    problems = []
    keys = set()
    for decl in DECLARATIONS:
        found = re.findall(r'^\s*"([A-Za-z0-9.]+)" \[[a-z ]*\] =>', read(decl), re.M)
        if not found:
            problems.append(f"{decl}: no config_keys! declarations found")
        keys.update(found)
    for crate, root in CRATES.items():
        for key in sorted(keys):
            places = []
            for rel, path in sources(root):
                n = non_test(open(path, encoding="utf-8").read()).count(f'"{key}"')
                allowed = WIRE_FIELDS.get((crate, key), set())
                if n and rel not in allowed:
                    places += [rel] * n
            if len(places) > 1:
                problems.append(
                    f"{crate}: the key \"{key}\" is spelled out {len(places)} times ({', '.join(sorted(set(places)))}); "
                    "use the declaration's key constant"
                )
    return problems


def check_layout():
    readme = read("README.md")
    start = readme.index("## Layout")
    layout = readme[start:]
    problems = []
    roots = ["storage", "broker-lite/src", "broker-lite/tests", "broker-lite/benches", "tests", "benches", "crashfs/src"]
    for root in roots:
        for rel, _ in sources(root):
            if rel.startswith("common" + os.sep):
                continue  # test helpers, named as common/
            name = os.path.basename(rel)
            stem = name[:-3]
            parts = rel.split(os.sep)
            # A file is named by its name, its stem (tests list `crash`), or, for mod.rs,
            # its folder (`queue/`).
            if name == "mod.rs":
                named = parts[-2] + "/" in layout
            elif name in ("lib.rs", "main.rs"):
                named = True
            else:
                named = re.search(r"(?<![\w.])" + re.escape(stem) + r"(\.rs)?(?!\w)", layout) is not None
            if not named:
                problems.append(f"README Layout does not name {root}/{rel}")
    return problems


def check_format_paths():
    text = read("FORMAT.md")
    problems = []
    for path in sorted(set(re.findall(r"`((?:storage|broker-lite|tests|benches|crashfs|fuzz|compat)/[\w./-]+)`", text))):
        if not os.path.exists(os.path.join(REPO, path.rstrip("/"))):
            problems.append(f"FORMAT.md names {path}, which does not exist")
    return problems


def check_changelog():
    version = re.search(r'^version = "([^"]+)"', read("Cargo.toml"), re.M).group(1)
    if not re.search(r"^## \[?" + re.escape(version) + r"\b", read("CHANGELOG.md"), re.M):
        return [f"CHANGELOG.md has no section for version {version} (Cargo.toml)"]
    return []


def main():
    problems = check_keys() + check_layout() + check_format_paths() + check_changelog()
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} problem(s): documents and code disagree")
        return 1
    print("docs: config keys declared once, README Layout complete, FORMAT.md paths exist, CHANGELOG has this version")
    return 0


if __name__ == "__main__":
    sys.exit(main())
