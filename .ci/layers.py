#!/usr/bin/env python3
"""Checks that modules only use modules below them.

Each crate lists its modules bottom to top. A `crate::a::b` path (or a `use crate::{a, ..}`
group) in non-test code of module M must name a module listed below M. A path is ranked by
the longest listed prefix (`log::flush` before `log`); a file not listed takes its parent's
rank. Test code (everything from the first `#[cfg(test)]`) is not checked.
Each folder is one layer (its files are next to each other in the list).
Exit 1 with one line per violation; 0 when every import points down.
"""
import os
import re
import sys

LAYERS = {
    "storage": [
        "clock", "fault", "service",
        "format",
        "error", "config::keys", "config",
        "file::mmap", "file::disk", "file::allocate", "file::mapped_file_queue", "file",
        "checkpoint", "put",
        "log::flush", "log::scan", "log",
        "queue",
        "index",
        "dispatch", "read",
        "cleanup", "recovery", "store", "verify",
    ],
    "broker-lite/src": [
        "remoting", "remoting::tls", "config", "acl",
        "state::metrics", "state::metadata", "state::topics", "state::subscriptions", "state::consumer_offsets",
        "state::progress", "state",
        "clients",
        "delivery::queue_locks", "delivery::long_poll", "delivery::half_messages",
        "delivery::scheduled", "delivery",
        "client", "client::ops",
        "ha::master", "ha::slave", "ha",
        "broker",
        "requests", "cluster::slave_sync", "cluster::register", "cluster",
        "http", "http::exporter", "http::console", "server",
        "cli::verify", "cli",
    ],
}


def module_of(root, path):
    rel = os.path.relpath(path, root)[:-3].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    return "::".join(rel)


def rank(order, name):
    parts = name.split("::")
    while parts:
        key = "::".join(parts)
        if key in order:
            return order.index(key)
        parts.pop()
    return None


def check(root, order):
    bad = []
    for dirpath, _, files in os.walk(root):
        for f in sorted(files):
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            me = module_of(root, path)
            if me in ("lib", "main"):
                continue
            mine = rank(order, me)
            if mine is None:
                bad.append(f"{path}: module `{me}` is not in the layer list")
                continue
            src = open(path, encoding="utf-8").read().split("#[cfg(test)]")[0]
            used = set()
            for line in src.splitlines():
                if line.lstrip().startswith("//"):
                    continue
                used.update(m.group(1) for m in re.finditer(r"crate::((?:[a-z_][a-z0-9_]*)(?:::[a-z_][a-z0-9_]*)*)", line))
            for m in re.finditer(r"use\s+crate::\{([^}]*)\}", src, re.S):
                for item in m.group(1).split(","):
                    item = item.strip().split(" ")[0].rstrip(":{")
                    if item and item != "self":
                        used.add(item)
            for other in sorted(used):
                theirs = rank(order, other)
                if theirs is None:
                    continue  # a crate-root item (re-export), not a module
                if theirs > mine:
                    bad.append(f"{path}: `{me}` uses `crate::{other}`, which sits above it")
    return sorted(set(bad))


def folders_are_layers(root, order):
    """A folder is one layer: its files sit next to each other in the order, so that the
    folders themselves form no circle (a folder whose files sat below and above another
    folder would use it and be used by it)."""
    tops = [name.split("::")[0] for name in order]
    bad = []
    for top in sorted(set(tops)):
        at = [i for i, t in enumerate(tops) if t == top]
        if at[-1] - at[0] + 1 != len(at):
            bad.append(f"{root}: the files of `{top}` are not next to each other in the layer list")
    return bad


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(here)
    problems = []
    for root, order in LAYERS.items():
        problems += check(os.path.join(repo, root), order)
        problems += folders_are_layers(root, order)
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} import(s) point up; see the layer lists in .ci/layers.py")
        return 1
    print("layers: every import points down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
