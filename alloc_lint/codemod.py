"""A LibCST codemod command, for codebases that run their rewrites through
`python -m libcst.tool codemod`:

    python -m libcst.tool codemod -x --no-format alloc_lint.codemod.AllocInLoopMergeCommand PATH

(`-x`: the command lives outside libcst's configured modules; `--no-format`:
the codemod keeps the file's formatting itself. Add
`--unsafe-fixes` to apply the upstream swap where only ping-pong is safe.)
"""
from __future__ import annotations

import argparse

import libcst as cst
from libcst.codemod import CodemodCommand, CodemodContext, SkipFile

from .api import fix_source
from .config import discover


class AllocInLoopMergeCommand(CodemodCommand):
    DESCRIPTION = "Allocate ALC001 merge buffers once (lazy init, then swap or ping-pong)."

    def __init__(self, context: CodemodContext, unsafe_fixes: bool = False) -> None:
        super().__init__(context)
        self.unsafe_fixes = unsafe_fixes

    @staticmethod
    def add_args(arg_parser: argparse.ArgumentParser) -> None:
        arg_parser.add_argument("--unsafe-fixes", action="store_true",
                                help="apply the upstream swap where only ping-pong is provably safe")

    def transform_module_impl(self, tree: cst.Module) -> cst.Module:
        result = fix_source(tree.code, self.context.filename or "<string>", discover("."),
                            unsafe_fixes=self.unsafe_fixes)
        if not result.changed:
            raise SkipFile("no ALC001 finding with a fix")
        return cst.parse_module(result.text)
