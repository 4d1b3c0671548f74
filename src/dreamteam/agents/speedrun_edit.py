"""Finding the model's parts by what they do, for the speedrun-playbook techniques.

The baseline's names (``GPT``, ``Block``, ``CausalSelfAttention``, ``lm_head``) are kept by
every rewrite of the built-in task, but how each part is written may change: a loop over the
blocks, the head's loss, the attention's value projection are found here by their shape (a
``for`` over a ``ModuleList`` attribute whose body calls the loop variable; the assignment of
the loss from a call that reads the targets; a tuple of three unpacked from a ``.split``),
and anything not found raises ``Skip``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import libcst as cst

from dreamteam.agents.source_edit import Skip, code_of, parsed, segment

MODEL_CLASS = "GPT"  # the task contract's model class (task.toml: model_class)


def bare(stmt: cst.CSTNode) -> str:
    """A statement's code without its leading comments and blank lines."""
    if hasattr(stmt, "leading_lines"):
        stmt = stmt.with_changes(leading_lines=[])
    return code_of(stmt).strip()


def method(src: str, qualname: str) -> ast.FunctionDef:
    """The parsed function or method ``qualname``; Skip when absent."""
    text = segment(src, qualname)
    node = parsed(text).body[0] if text else None
    if not isinstance(node, ast.FunctionDef):
        raise Skip(f"no {qualname}")
    return node


def methods(src: str, cls: str) -> list[str]:
    """The names of a top-level class's methods, in order."""
    body = parsed(segment(src, cls) or "pass").body
    inner = body[0].body if body and isinstance(body[0], ast.ClassDef) else []
    return [n.name for n in inner if isinstance(n, ast.FunctionDef)]


def classes(src: str) -> set[str]:
    """The names of the module's top-level classes."""
    return {n.name for n in parsed(src).body if isinstance(n, ast.ClassDef)}


def module_names(src: str) -> set[str]:
    """The names the module binds at top level (imports, functions, classes, constants)."""
    names: set[str] = set()
    for stmt in parsed(src).body:
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in stmt.names}
        elif isinstance(stmt, ast.FunctionDef | ast.ClassDef):
            names.add(stmt.name)
        elif isinstance(stmt, ast.Assign | ast.AnnAssign):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def params(fn: ast.FunctionDef) -> list[str]:
    """A function's positional parameter names."""
    return [a.arg for a in (*fn.args.posonlyargs, *fn.args.args)]


def local_names(fn: ast.AST) -> set[str]:
    """Every name a function reads or binds."""
    return {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)} | (
        set(params(fn)) if isinstance(fn, ast.FunctionDef) else set()
    )


def assigned(fn: ast.FunctionDef, target: str) -> str | None:
    """The code of the first top-level ``target = ...`` value in the function (None if absent)."""
    for stmt in fn.body:
        if (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and ast.unparse(stmt.targets[0]) == target
        ):
            return ast.unparse(stmt.value)
    return None


@dataclass(frozen=True)
class BlockLoop:
    """The model's loop over its blocks: in which method, over what, with which variable."""

    method: str  # e.g. `GPT.hidden`
    blocks: str  # the ModuleList attribute, e.g. `self.h`
    var: str  # the loop variable bound to one block
    header: str  # the loop's header code, e.g. `for block in self.h:`


def block_loop(model: str) -> BlockLoop:
    """The loop over a ``ModuleList`` attribute of the model class whose body calls each block
    (``for block in self.h`` or ``for i, block in enumerate(self.h)``); Skip unless one."""
    found = []
    for name in methods(model, MODEL_CLASS):
        fn = method(model, f"{MODEL_CLASS}.{name}")
        for node in ast.walk(fn):
            if not isinstance(node, ast.For):
                continue
            it, target = node.iter, node.target
            if isinstance(it, ast.Call) and ast.unparse(it.func) == "enumerate" and it.args:
                it = it.args[0]
                target = target.elts[-1] if isinstance(target, ast.Tuple) else target
            blocks = ast.unparse(it)
            if not (isinstance(target, ast.Name) and re.fullmatch(r"self\.\w+", blocks)):
                continue
            calls = [
                c
                for s in node.body
                for c in ast.walk(s)
                if isinstance(c, ast.Call) and ast.unparse(c.func) == target.id
            ]
            if calls:
                header = ast.unparse(node).splitlines()[0]
                found.append(BlockLoop(f"{MODEL_CLASS}.{name}", blocks, target.id, header))
    if len(found) != 1:
        raise Skip(f"{len(found)} loops over the model's blocks")
    return found[0]


def built_class(model: str, attribute: str, owner: str) -> str:
    """The class of the module(s) ``owner.__init__`` assigns to ``attribute`` (``self.h =
    nn.ModuleList(Block(config) ...)`` -> ``Block``): the one class of this file it calls."""
    init = method(model, f"{owner}.__init__")
    value = assigned(init, attribute)
    if value is None:
        raise Skip(f"{owner} does not assign {attribute}")
    made = {
        ast.unparse(c.func)
        for c in ast.walk(ast.parse(value))
        if isinstance(c, ast.Call) and ast.unparse(c.func) in classes(model)
    }
    if len(made) != 1:
        raise Skip(f"{attribute} is not built from one class of this file")
    return made.pop()


def attention_attribute(model: str, block: str) -> tuple[str, str]:
    """(attribute, class) of the block's attention: the submodule whose class's forward calls
    ``scaled_dot_product_attention`` or a softmax; Skip unless exactly one."""
    init = method(model, f"{block}.__init__")
    found = []
    for stmt in init.body:
        if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Call):
            cls = ast.unparse(stmt.value.func)
            forward = segment(model, f"{cls}.forward") if cls in classes(model) else ""
            if re.search(r"scaled_dot_product_attention|softmax", forward):
                found.append((ast.unparse(stmt.targets[0]), cls))
    if len(found) != 1:
        raise Skip(f"{len(found)} attention modules in {block}")
    return found[0]


def add_param(
    name: str, annotation: str, default: str
) -> Callable[[cst.FunctionDef], cst.FunctionDef]:
    """A function edit: append the parameter ``name: annotation = default``."""

    def fn(func: cst.FunctionDef) -> cst.FunctionDef:
        if func.params.star_arg != cst.MaybeSentinel.DEFAULT or func.params.kwonly_params:
            raise Skip(f"{func.name.value} takes *args or keyword-only parameters")
        new = cst.Param(
            cst.Name(name),
            annotation=cst.Annotation(cst.parse_expression(annotation)),
            default=cst.parse_expression(default),
        )
        return func.with_changes(params=func.params.with_changes(params=[*func.params.params, new]))

    return fn


class _Rename(cst.CSTTransformer):
    """Replace names (not attributes or keywords) by expressions."""

    def __init__(self, mapping: Mapping[str, str]):
        super().__init__()
        self.mapping = mapping

    def leave_Name(self, original: cst.Name, updated: cst.Name) -> cst.BaseExpression:
        code = self.mapping.get(updated.value)
        return cst.parse_expression(code) if code is not None else updated

    def leave_Attribute(self, original: cst.Attribute, updated: cst.Attribute) -> cst.Attribute:
        return updated.with_changes(attr=original.attr)

    def leave_Arg(self, original: cst.Arg, updated: cst.Arg) -> cst.Arg:
        return updated.with_changes(keyword=original.keyword)


def renamed(code: str, mapping: Mapping[str, str]) -> str:
    """The expression ``code`` with the names in ``mapping`` replaced by their expressions."""
    out = cst.parse_expression(code).visit(_Rename(mapping))
    assert isinstance(out, cst.BaseExpression)
    return code_of(out)


def rewrite_stmts(
    fn: Callable[[cst.BaseStatement], list[cst.BaseStatement] | None],
) -> Callable[[cst.FunctionDef], cst.FunctionDef]:
    """A function edit: replace each statement (at any depth) for which ``fn`` returns a list
    of statements by that list; Skip unless exactly one statement is replaced."""

    class Blocks(cst.CSTTransformer):
        hits = 0

        def leave_IndentedBlock(
            self, original: cst.IndentedBlock, updated: cst.IndentedBlock
        ) -> cst.IndentedBlock:
            body: list[cst.BaseStatement] = []
            for stmt in updated.body:
                new = fn(stmt)
                self.hits += new is not None
                body += [stmt] if new is None else new
            return updated.with_changes(body=body)

    def edit_fn(func: cst.FunctionDef) -> cst.FunctionDef:
        tool = Blocks()
        result = func.visit(tool)
        if tool.hits != 1:
            raise Skip(f"{tool.hits} statements to rewrite")
        assert isinstance(result, cst.FunctionDef)
        return result

    return edit_fn
