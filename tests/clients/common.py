"""Shared helpers of the client scripts: argument parsing, failures, JSON output."""

import argparse
import json
import sys
import time


def parser(description):
    """An argument parser with --bootstrap."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--bootstrap", required=True)
    return p


def fail(msg):
    """Exits non-zero with a clear message on stderr."""
    print(f"FAIL: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def check(cond, msg):
    """fail(msg) unless cond."""
    if not cond:
        fail(msg)


def emit(obj):
    """One JSON object per stdout line, for the Rust side to parse."""
    print(json.dumps(obj, sort_keys=True), flush=True)


def deadline(seconds):
    """A function returning True once `seconds` have passed."""
    end = time.monotonic() + seconds
    return lambda: time.monotonic() >= end
