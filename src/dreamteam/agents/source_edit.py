"""Source editing for the technique catalogue: read Python with ``ast``, rewrite it with libcst.

Reading finds things by structure (a module-level constant, the source of a class or a method,
which names the imports bind); editing rewrites one function, method, class or constant and
keeps the rest of the file, comments and layout included. An edit that cannot find the code
it needs raises ``Skip``: the technique that asked does not apply, and nothing is half-edited.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Callable, Mapping

import libcst as cst

from dreamteam import pyparse


class Skip(Exception):
    """A technique cannot be applied to these files (structure missing or already there)."""


# --- reading source ------------------------------------------------------------------------


def code_of(node: cst.CSTNode) -> str:
    """The source code of one libcst node."""
    return cst.Module([]).code_for_node(node)


def arg_code(call: cst.Call, i: int = 0) -> str:
    """The source code of a call's ``i``-th argument."""
    return code_of(call.args[i].value)


@functools.lru_cache(maxsize=64)
def parsed(src: str) -> ast.Module:
    """The parsed module (cached: every ``applies`` reads the same few files; never mutated)."""
    return pyparse.parse(src)


def constant(src: str, name: str) -> object | None:
    """The literal value of the first module-level ``name = <literal>``, else None."""
    for stmt in parsed(src).body:
        if (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
            and stmt.targets[0].id == name
        ):
            try:
                return ast.literal_eval(stmt.value)
            except (ValueError, TypeError, SyntaxError, RecursionError):
                return None
    return None


def number(src: str, name: str) -> float:
    """The module-level numeric constant ``name`` as a float; Skip if it is not one."""
    value = constant(src, name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Skip(f"{name} is not a numeric constant")
    return float(value)


@functools.lru_cache(maxsize=256)
def segment(src: str, qualname: str) -> str:
    """The source of a top-level class or function, or a method as ``Class.method`` ('' if absent)."""
    body: list[ast.stmt] = parsed(src).body
    node: ast.AST | None = None
    for part in qualname.split("."):
        node = next(
            (n for n in body if isinstance(n, ast.ClassDef | ast.FunctionDef) and n.name == part),
            None,
        )
        if node is None:
            return ""
        body = node.body  # type: ignore[attr-defined]
    return (ast.get_source_segment(src, node) or "") if node is not None else ""


def binds(src: str, name: str) -> bool:
    """Whether a top-level import binds ``name`` (e.g. ``nn``, ``F``)."""
    return any(
        (a.asname or a.name.split(".")[0]) == name
        for stmt in parsed(src).body
        if isinstance(stmt, ast.Import | ast.ImportFrom)
        for a in stmt.names
    )


def fmt(value: float) -> str:
    """A float as short code that stays a float: 0.0, 0.003, 1e-05 -> 1e-5."""
    text = f"{value:g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        return f"{mantissa}e{int(exponent)}"
    return text if "." in text else f"{text}.0"


# --- editing source ------------------------------------------------------------------------


def _stmts(code: str) -> list[cst.BaseStatement]:
    module = cst.parse_module(code)
    body: list[cst.BaseStatement] = list(module.body)
    comments = [line for line in module.header if line.comment is not None]
    if body and comments:  # a leading comment parses into the module header: keep it
        body[0] = body[0].with_changes(leading_lines=[*comments, *_leading(body[0])])
    return body


statements = _stmts  # the public name, for the other edit modules


def _leading(node: cst.BaseStatement) -> list[cst.EmptyLine]:
    return list(getattr(node, "leading_lines", ()))


def _split_leading(node: cst.BaseStatement) -> tuple[list[cst.EmptyLine], list[cst.EmptyLine]]:
    """A statement's leading lines as (section lines up to the last blank, attached comments)."""
    lines = _leading(node)
    blanks = [i for i, line in enumerate(lines) if line.comment is None]
    cut = blanks[-1] + 1 if blanks else 0
    return lines[:cut], lines[cut:]


def insert_top(src: str, code: str, before: tuple[str, ...]) -> str:
    """Insert top-level ``code`` before the first def/class named in ``before`` (else the end).

    Section comments above the anchor move up with the new code; a comment attached to the
    anchor itself stays with it.
    """
    module = cst.parse_module(src)
    body = list(module.body)
    names = [getattr(getattr(s, "name", None), "value", None) for s in body]
    index = next((names.index(n) for n in before if n in names), len(body))
    new = _stmts(code)
    if index < len(body):
        section, attached = _split_leading(body[index])
        new[0] = new[0].with_changes(leading_lines=section)
        gap = [cst.EmptyLine()] * 2
        body[index] = body[index].with_changes(leading_lines=gap + attached)
    else:
        new[0] = new[0].with_changes(leading_lines=[cst.EmptyLine()] * 2)
    return module.with_changes(body=body[:index] + new + body[index:]).code


def ensure_import(src: str, module_name: str) -> str:
    if re.search(rf"^import {module_name}\b", src, re.MULTILINE):
        return src
    module = cst.parse_module(src)
    body = list(module.body)
    index = next(
        (i for i, s in enumerate(body) if re.match(r"(import|from) ", code_of(s).lstrip())), 0
    )
    new = cst.parse_statement(f"import {module_name}\n")
    if body:
        new = new.with_changes(leading_lines=body[index].leading_lines)
        body[index] = body[index].with_changes(leading_lines=[])
    return module.with_changes(body=[*body[:index], new, *body[index:]]).code


def set_constants(src: str, values: Mapping[str, str], comments: Mapping[str, str] = {}) -> str:
    """Set module-level ``name = value`` (value as code); add missing ones to the config block."""
    module = cst.parse_module(src)
    body = list(module.body)
    todo = dict(values)
    last_config = -1
    for i, stmt in enumerate(body):
        if isinstance(stmt, cst.FunctionDef | cst.ClassDef):
            break
        small = stmt.body[0] if isinstance(stmt, cst.SimpleStatementLine) else None
        if isinstance(small, cst.Assign) and isinstance(small.targets[0].target, cst.Name):
            name = small.targets[0].target.value
            if name in todo and len(small.targets) == 1:
                value = cst.parse_expression(todo.pop(name))
                body[i] = stmt.with_changes(body=[small.with_changes(value=value)])
            last_config = i
    for name, code in todo.items():
        comment = f"  # {comments[name]}" if name in comments else ""
        last_config += 1
        body.insert(last_config, cst.parse_statement(f"{name} = {code}{comment}\n"))
    return module.with_changes(body=body).code


class _Edit(cst.CSTTransformer):
    """Apply ``fn`` to the function or method ``qualname`` (e.g. ``GPT.forward``)."""

    def __init__(self, qualname: str, fn: Callable[[cst.FunctionDef], cst.FunctionDef]):
        super().__init__()
        self.qualname, self.fn, self.found = qualname, fn, False
        self.stack: list[str] = []

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self.stack.append(node.name.value)

    def leave_ClassDef(self, original: cst.ClassDef, updated: cst.ClassDef) -> cst.ClassDef:
        self.stack.pop()
        return updated

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.stack.append(node.name.value)

    def leave_FunctionDef(
        self, original: cst.FunctionDef, updated: cst.FunctionDef
    ) -> cst.FunctionDef:
        name = ".".join(self.stack)
        self.stack.pop()
        if name == self.qualname:
            self.found = True
            return self.fn(updated)
        return updated


def edit(src: str, qualname: str, fn: Callable[[cst.FunctionDef], cst.FunctionDef]) -> str:
    """Rewrite one function or method with ``fn``; Skip when it does not exist."""
    editor = _Edit(qualname, fn)
    out = cst.parse_module(src).visit(editor)
    if not editor.found:
        raise Skip(f"no {qualname}")
    return out.code


class _Blocks(cst.CSTTransformer):
    """Rewrite the statement lists of every indented block with ``fn``."""

    def __init__(self, fn: Callable[[list[cst.BaseStatement]], list[cst.BaseStatement]]):
        super().__init__()
        self.fn = fn

    def leave_IndentedBlock(
        self, original: cst.IndentedBlock, updated: cst.IndentedBlock
    ) -> cst.IndentedBlock:
        return updated.with_changes(body=self.fn(list(updated.body)))


def around(
    pattern: str, code: str, where: str = "before", count: int = 1
) -> Callable[[cst.FunctionDef], cst.FunctionDef]:
    """A function edit: put ``code`` before/after (or ``instead`` of) one-line statements
    matching the regex ``pattern``; Skip unless exactly ``count`` match."""

    def fn(func: cst.FunctionDef) -> cst.FunctionDef:
        hits = 0

        def block(body: list[cst.BaseStatement]) -> list[cst.BaseStatement]:
            nonlocal hits
            out: list[cst.BaseStatement] = []
            for stmt in body:
                if isinstance(stmt, cst.SimpleStatementLine) and re.search(pattern, code_of(stmt)):
                    hits += 1
                    new = _stmts(code) if code else []
                    out += {"before": [*new, stmt], "after": [stmt, *new], "instead": new}[where]
                else:
                    out.append(stmt)
            return out

        result = func.visit(_Blocks(block))
        if hits != count:
            raise Skip(f"{hits} statements match {pattern!r}")
        assert isinstance(result, cst.FunctionDef)
        return result

    return fn


def append_to(
    code: str, after: str | None = None, instead: str | None = None
) -> Callable[[cst.FunctionDef], cst.FunctionDef]:
    """A function edit on the body's top-level statements: replace the first one matching the
    regex ``instead``, else insert after the last one matching ``after``, else at the end."""

    def fn(func: cst.FunctionDef) -> cst.FunctionDef:
        block = func.body
        if not isinstance(block, cst.IndentedBlock):
            raise Skip("one-line function")
        body, new = list(block.body), _stmts(code)
        codes = [code_of(stmt) for stmt in body]
        swap = [i for i, c in enumerate(codes) if instead and re.search(instead, c)]
        last = [i + 1 for i, c in enumerate(codes) if after and re.search(after, c)]
        if swap:
            body[swap[0] : swap[0] + 1] = new
        else:
            at = last[-1] if last else len(body)
            body[at:at] = new
        return func.with_changes(body=block.with_changes(body=body))

    return fn


class _Exprs(cst.CSTTransformer):
    def __init__(self, fn: Callable[[cst.BaseExpression], cst.BaseExpression | None]):
        super().__init__()
        self.fn, self.hits = fn, 0

    def on_leave(self, original, updated):  # type: ignore[no-untyped-def, override]
        if isinstance(updated, cst.BaseExpression):
            new = self.fn(updated)
            if new is not None:
                self.hits += 1
                return new
        return updated


def exprs(
    fn: Callable[[cst.BaseExpression], cst.BaseExpression | None],
) -> Callable[[cst.FunctionDef], cst.FunctionDef]:
    """A function edit: replace every expression for which ``fn`` returns a new one; Skip if none."""

    def edit_fn(func: cst.FunctionDef) -> cst.FunctionDef:
        tool = _Exprs(fn)
        result = func.visit(tool)
        if not tool.hits:
            raise Skip("no expression matched")
        assert isinstance(result, cst.FunctionDef)
        return result

    return edit_fn


def replace_exprs(src: str, fn: Callable[[cst.BaseExpression], cst.BaseExpression | None]) -> str:
    """Replace, anywhere in the module, every expression for which ``fn`` returns a new one."""
    tool = _Exprs(fn)
    out = cst.parse_module(src).visit(tool)
    if not tool.hits:
        raise Skip("no expression matched")
    return out.code


def call_to(
    names: tuple[str, ...], build: Callable[[cst.Call], str]
) -> Callable[[cst.BaseExpression], cst.BaseExpression | None]:
    """An expression rewrite: calls of ``names`` become the code ``build(call)`` returns."""

    def fn(node: cst.BaseExpression) -> cst.BaseExpression | None:
        if isinstance(node, cst.Call) and code_of(node.func) in names:
            return cst.parse_expression(build(node))
        return None

    return fn


def replace_top(src: str, name: str, code: str) -> str:
    """Replace the top-level class or function ``name`` with ``code``, keeping its leading lines."""
    module = cst.parse_module(src)
    body = list(module.body)
    for i, stmt in enumerate(body):
        if getattr(getattr(stmt, "name", None), "value", None) == name:
            new = _stmts(code)
            new[0] = new[0].with_changes(leading_lines=stmt.leading_lines)
            return module.with_changes(body=body[:i] + new + body[i + 1 :]).code
    raise Skip(f"no {name}")


def add_fields(src: str, cls: str, lines: str) -> str:
    """Append annotated fields (code) at the end of a top-level class body, e.g. a dataclass."""
    module = cst.parse_module(src)
    body = list(module.body)
    for i, stmt in enumerate(body):
        if isinstance(stmt, cst.ClassDef) and stmt.name.value == cls:
            inner = stmt.body
            assert isinstance(inner, cst.IndentedBlock)
            body[i] = stmt.with_changes(body=inner.with_changes(body=[*inner.body, *_stmts(lines)]))
            return module.with_changes(body=body).code
    raise Skip(f"no class {cls}")


def add_model_arg(src: str, name: str) -> str:
    """Pass the constant ``name`` through ``model_args`` (so it reaches GPTConfig and the ckpt)."""

    def fn(node: cst.BaseExpression) -> cst.BaseExpression | None:
        if isinstance(node, cst.Call) and code_of(node.func) == "dict":
            kws = {a.keyword.value for a in node.args if a.keyword is not None}
            if {"block_size", "n_embd"} <= kws and name not in kws:
                args = list(node.args)
                # the new argument takes the last one's comma (and line break); the last one
                # takes its neighbour's, so a one-per-line layout stays one per line
                comma = (
                    args[-2].comma
                    if len(args) > 1
                    else cst.Comma(cst.SimpleWhitespace(""), cst.SimpleWhitespace(" "))
                )
                new = cst.Arg(cst.Name(name), keyword=cst.Name(name), comma=args[-1].comma)
                new = new.with_changes(equal=args[-1].equal)
                return node.with_changes(args=[*args[:-1], args[-1].with_changes(comma=comma), new])
        return None

    return edit(src, "train", exprs(fn))
