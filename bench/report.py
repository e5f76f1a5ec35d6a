"""Printing helpers shared by the benchmarks."""

from __future__ import annotations


def line(label: str, value: str, note: str = "") -> None:
    """One aligned result line."""
    print(f"   {label:<52} {value:>18}  {note}")


def verdict(label: str, ok: bool, detail: str) -> bool:
    """Print a budget verdict and return it."""
    print(f"   {'PASS' if ok else 'FAIL'}  {label}: {detail}")
    return ok
