"""Static checks on a candidate's files, before anything runs.

Pure: files (strings) and the task in, a CheckReport out; each violation names its rule, file
and line. The first wall, not the only one: the sandbox contains what slips past them.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dreamteam import pyparse
from dreamteam.tasks import Task

# Names a candidate may not call or touch, whatever it imports: they reach around the checks.
FORBIDDEN_CALLS = frozenset(
    {"exec", "eval", "compile", "__import__", "globals", "vars", "breakpoint", "input"}
)
_HINTS = {"vars": " (for a dataclass's fields, dataclasses.asdict(obj))"}
FORBIDDEN_ATTRS = frozenset(
    {
        "system",
        "popen",
        "fork",
        "forkpty",
        "execv",
        "execve",
        "execl",
        "execlp",
        "execvp",
        "execvpe",
        "spawnv",
        "spawnl",
        "spawnve",
        "posix_spawn",
        "kill",
        "killpg",
        "_exit",
        "remove",
        "unlink",
        "rmdir",
        "removedirs",
        "rename",
        "replace",
        "symlink",
        "link",
        "chmod",
        "chown",
        "chdir",
        "chroot",
        "setuid",
        "setgid",
        "putenv",
        "unsetenv",
        "hub",
        "cpp_extension",
        "load_library",
        "modules",
        "__globals__",
        "__builtins__",
        "__code__",
        "__subclasses__",
        "f_globals",
        "f_locals",
        "f_back",
        "_global_forward_pre_hooks",
        "_global_forward_hooks",
        "_global_optimizer_pre_hooks",
        "_global_optimizer_post_hooks",
        "settrace",
        "setprofile",
        # writes module globals behind the checks' back; numpy's door to ctypes
        "__dict__",
        "ctypeslib",
    }
)
# Builtins that take an attribute's name as a string: the name is checked like `.name`.
_NAMED_ATTR_CALLS = frozenset({"getattr", "setattr", "delattr", "hasattr"})
_RETURN_HINT = "return a tuple like `return best_vloss, elapsed_min`"


@dataclass(frozen=True)
class Violation:
    """One reason a candidate is rejected."""

    rule: str
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.rule}: {self.message}"


@dataclass(frozen=True)
class CheckReport:
    """The outcome of the static checks: ok, or the violations found."""

    violations: tuple[Violation, ...]

    @property
    def ok(self) -> bool:
        return not self.violations

    def reason(self) -> str:
        """A one-line summary for the store and the CLI."""
        if self.ok:
            return ""
        first = str(self.violations[0])
        more = len(self.violations) - 1
        return first + (f" (+{more} more)" if more else "")


def _literal(node: ast.AST) -> tuple[bool, Any]:
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def _const_str(node: ast.AST) -> str | None:
    """The value of a string the source spells in pieces ("fo" + "rk", f"{'val'}.bin")."""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _const_str(node.left), _const_str(node.right)
        return left + right if left is not None and right is not None else None
    if isinstance(node, ast.JoinedStr):
        parts = [
            _const_str(v.value if isinstance(v, ast.FormattedValue) else v) for v in node.values
        ]
        return "".join(p for p in parts if p is not None) if None not in parts else None
    return None


def _targets(node: ast.AST) -> list[ast.expr]:
    if isinstance(node, ast.Assign):
        return list(node.targets)
    if isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        return [node.target]
    if isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
        return [node.target]
    if isinstance(node, (ast.With, ast.AsyncWith)):
        return [item.optional_vars for item in node.items if item.optional_vars is not None]
    if isinstance(node, ast.NamedExpr):
        return [node.target]
    return []


def _names(target: ast.expr) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [n for elt in target.elts for n in _names(elt)]
    if isinstance(target, ast.Starred):
        return _names(target.value)
    return []


def _line(node: ast.AST) -> int:
    return int(getattr(node, "lineno", 1))


def _check_protected(tree: ast.Module, file: str, protected: Mapping[str, Any]) -> list[Violation]:
    out: list[Violation] = []
    seen: dict[str, int] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            names = _names(stmt.targets[0])
            if len(names) == 1 and names[0] in protected and names[0] not in seen:
                name = names[0]
                seen[name] = stmt.lineno
                ok, value = _literal(stmt.value)
                if not ok or value != protected[name] or type(value) is not type(protected[name]):
                    msg = f"{name} must be the literal {protected[name]!r}"
                    out.append(Violation("protected-constant", file, stmt.lineno, msg))
    for name, want in protected.items():
        if name not in seen:
            msg = f"protected constant `{name} = {want!r}` must be assigned at module level"
            out.append(Violation("protected-constant", file, 1, msg))
    for node in ast.walk(tree):
        if isinstance(node, ast.Global | ast.Nonlocal):
            for name in set(node.names) & set(protected):
                out.append(Violation("protected-constant", file, node.lineno, f"{name} rebound"))
        for target in _targets(node):
            for name in _names(target):
                if name in protected and seen.get(name) != getattr(node, "lineno", -1):
                    msg = f"{name} is protected and may not be reassigned"
                    out.append(Violation("protected-constant", file, _line(node), msg))
    return out


def _imported_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names |= {a.asname or a.name for a in node.names}
    return names


def _rooted_at_self(node: ast.expr) -> bool:
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name) and node.id == "self"


def _check_protected_stores(
    tree: ast.Module, file: str, protected: Mapping[str, Any]
) -> list[Violation]:
    """Protected constants changed through a module (`train.batch_size = 16`, setattr).

    `self.n_head = config.n_head` is a model's own field, and `cfg.n_layer = n_layer` or the
    protected literal itself restate the value: both pass.
    """
    out = []
    modules = _imported_names(tree)
    for node in ast.walk(tree):
        stores: list[tuple[ast.expr, str, ast.expr | None]] = []
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            value = None if isinstance(node, ast.AugAssign) else node.value
            stores = [
                (t.value, t.attr, value) for t in _targets(node) if isinstance(t, ast.Attribute)
            ]
        elif isinstance(node, ast.Delete):
            stores = [(t.value, t.attr, None) for t in node.targets if isinstance(t, ast.Attribute)]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"setattr", "delattr"}
            and len(node.args) >= 2
        ):
            name = _const_str(node.args[1])
            value = node.args[2] if node.func.id == "setattr" and len(node.args) > 2 else None
            if name is not None:
                stores = [(node.args[0], name, value)]
            if isinstance(node.args[0], ast.Name) and node.args[0].id in modules:
                msg = f"{node.func.id}() on the module {node.args[0].id!r} is not allowed"
                out.append(Violation("forbidden-call", file, node.lineno, msg))
        for base, attr, value in stores:
            if attr not in protected or _rooted_at_self(base):
                continue
            restated = isinstance(value, ast.Name) and value.id == attr
            ok, literal = _literal(value) if value is not None else (False, None)
            if restated or (
                ok and literal == protected[attr] and type(literal) is type(protected[attr])
            ):
                continue
            msg = f"{attr} is protected and may not be changed through another object"
            out.append(Violation("protected-constant", file, _line(node), msg))
    return out


def _check_imports(tree: ast.Module, file: str, allowed: frozenset[str]) -> list[Violation]:
    out = []
    for node in ast.walk(tree):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        for module in modules:
            top = module.split(".")[0]
            if module not in allowed and top not in allowed:
                msg = f"import of {module!r} is not allowed (allowed: {', '.join(sorted(allowed))})"
                out.append(Violation("import", file, _line(node), msg))
    return out


def _check_calls(tree: ast.Module, file: str, hidden: tuple[str, ...]) -> list[Violation]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in FORBIDDEN_CALLS:
                msg = f"call to {node.func.id}() is not allowed{_HINTS.get(node.func.id, '')}"
                out.append(Violation("forbidden-call", file, node.lineno, msg))
            if node.func.id in {"setattr", "delattr"} and node.args:
                first = node.args[0]
                if not (isinstance(first, ast.Name) and first.id in {"self", "module", "m"}):
                    msg = f"{node.func.id}() is only allowed on `self` or a module variable"
                    out.append(Violation("forbidden-call", file, node.lineno, msg))
            if node.func.id in _NAMED_ATTR_CALLS and len(node.args) >= 2:
                name = _const_str(node.args[1])
                if name in FORBIDDEN_ATTRS:
                    msg = f"{node.func.id}(..., {name!r}) reaches a forbidden attribute"
                    out.append(Violation("forbidden-attribute", file, node.lineno, msg))
            if node.func.id == "open" and node.args:
                value = _const_str(node.args[0])
                if value is not None and (value.startswith("/") or ".." in value):
                    msg = f"open({value!r}): files outside the work directory are off limits"
                    out.append(Violation("file-access", file, node.lineno, msg))
        if isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRS:
            msg = f"attribute `.{node.attr}` is not allowed"
            out.append(Violation("forbidden-attribute", file, node.lineno, msg))
        # whole strings only: a piece of a joined string is checked with the whole
        if isinstance(node, (ast.Constant, ast.BinOp, ast.JoinedStr)):
            text = _const_str(node)
            named = [name for name in hidden if text is not None and name in text]
            if named:
                msg = f"{named[0]}: the validation split is the harness's, not the candidate's"
                out.append(Violation("file-access", file, node.lineno, msg))
    return sorted(set(out), key=out.index)


def _find_function(tree: ast.Module, name: str) -> ast.FunctionDef | None:
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef) and stmt.name == name:
            return stmt
    return None


def _check_entry(tree: ast.Module, file: str, task: Task) -> list[Violation]:
    c = task.contract
    func = _find_function(tree, c.entry_point)
    if func is None:
        return [Violation("contract", file, 1, f"no top-level `def {c.entry_point}(` in {file}")]
    out = []
    params = {a.arg for a in func.args.args + func.args.kwonlyargs}
    if func.args.kwarg is None:
        for arg in c.arguments:
            if arg not in params:
                msg = f"{c.entry_point}() must accept the keyword argument {arg!r}"
                out.append(Violation("contract", file, func.lineno, msg))
    returns = [n for n in ast.walk(func) if isinstance(n, ast.Return)]
    # nested functions' returns are theirs, not train()'s
    nested = [n for n in ast.walk(func) if isinstance(n, (ast.FunctionDef, ast.Lambda))]
    inner = {
        id(r) for f in nested if f is not func for r in ast.walk(f) if isinstance(r, ast.Return)
    }
    returns = [r for r in returns if id(r) not in inner]
    if c.returns and not returns:
        msg = f"{c.entry_point}() never returns: {_RETURN_HINT}"
        out.append(Violation("contract", file, func.lineno, msg))
    for ret in returns:
        if isinstance(ret.value, ast.Tuple) and len(ret.value.elts) != len(c.returns):
            msg = f"{c.entry_point}() must return {len(c.returns)} values ({', '.join(c.returns)})"
            out.append(Violation("contract", file, ret.lineno, msg))
        elif ret.value is None or isinstance(ret.value, ast.Constant):
            out.append(Violation("contract", file, ret.lineno, _RETURN_HINT))
    return out


def _check_model(tree: ast.Module, file: str, task: Task) -> list[Violation]:
    defined = {s.name for s in tree.body if isinstance(s, ast.ClassDef)}
    defined |= {
        n for s in tree.body if isinstance(s, ast.Assign) for t in s.targets for n in _names(t)
    }
    defined |= {
        a.asname or a.name for s in tree.body if isinstance(s, ast.ImportFrom) for a in s.names
    }
    c = task.contract
    built = f"{c.config_class}(**model_args)" if c.config_class else "**model_args"
    why = f"of task.toml (the evaluator builds {c.model_class}({built}))"
    names = {"model_class": c.model_class, "config_class": c.config_class}
    msg = "{} must define {}, the [contract] {} {}"
    return [
        Violation("contract", file, 1, msg.format(file, name, key, why))
        for key, name in names.items()
        if name and name not in defined
    ]


def check_candidate(files: Mapping[str, str], task: Task) -> CheckReport:
    """Run every static check on a candidate's files and collect the violations."""
    violations: list[Violation] = []
    allowed = task.allowed_imports | {name.removesuffix(".py") for name in task.editable}
    trees: dict[str, ast.Module] = {}
    for name in task.editable:
        source = files.get(name)
        if source is None:
            violations.append(Violation("missing-file", name, 1, f"{name} is missing"))
            continue
        try:
            trees[name] = pyparse.parse(source, filename=name)
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            line = getattr(exc, "lineno", None) or 1
            violations.append(Violation("syntax", name, line, str(exc).splitlines()[0]))
    for name, tree in trees.items():
        violations += _check_imports(tree, name, frozenset(allowed))
        violations += _check_calls(tree, name, task.hidden_names())
        violations += _check_protected_stores(tree, name, task.protected)
        if name == task.contract.entry_file:
            violations += _check_protected(tree, name, task.protected)
            violations += _check_entry(tree, name, task)
        elif any(n in task.protected for n in _assigned_names(tree)):
            for stmt in tree.body:
                for target in _targets(stmt):
                    for n in set(_names(target)) & set(task.protected):
                        msg = f"{n} is protected and belongs to {task.contract.entry_file}"
                        violations.append(Violation("protected-constant", name, stmt.lineno, msg))
        if name == task.contract.model_file:
            violations += _check_model(tree, name, task)
    return CheckReport(tuple(violations))


def _assigned_names(tree: ast.Module) -> set[str]:
    return {n for stmt in tree.body for t in _targets(stmt) for n in _names(t)}
