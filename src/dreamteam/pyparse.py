"""`ast.parse` behind one process-wide lock.

CPython 3.11's AST constructor keeps its recursion depth in interpreter-wide state, so two
threads parsing at once can fail with "AST constructor recursion depth mismatch"
(gh-106905). The research loop asks agents and runs trials from threads; every parse in the
package goes through here.
"""

from __future__ import annotations

import ast
import threading

_LOCK = threading.Lock()


def parse(source: str, filename: str = "<unknown>") -> ast.Module:
    """Parse Python source into a module, one thread at a time."""
    with _LOCK:
        return ast.parse(source, filename=filename)


def dump(node: ast.AST) -> str:
    """`ast.dump` without field names (a normalised form to hash), one thread at a time."""
    with _LOCK:
        return ast.dump(node, annotate_fields=False)
