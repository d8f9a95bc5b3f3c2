"""Bounds on a GraphQL request, and the one relaxed validation rule spec 7.4 asks for.

Checks run cheapest first: the size of the text, then one pass of the (iterative) lexer
that counts tokens and bracket nesting, so that the recursive-descent parser never sees
a document deep enough to exhaust Python's stack; after parsing, the depth of selection
sets and the number of fields once fragments are expanded, so that aliases and fragment
spreads cannot multiply a small document into a huge amount of work.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    ArgumentNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    NamedTypeNode,
    NonNullTypeNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableDefinitionNode,
    VariableNode,
    Visitor,
    visit,
)
from graphql.language import Lexer, Source, TokenKind
from graphql.validation import ValidationContext, specified_rules
from graphql.validation.rules.variables_in_allowed_position import (
    VariablesInAllowedPositionRule,
)

from crucible import errors
from crucible.config import GraphQLConfig

_OPENING = {TokenKind.BRACE_L, TokenKind.BRACKET_L, TokenKind.PAREN_L}
_CLOSING = {TokenKind.BRACE_R, TokenKind.BRACKET_R, TokenKind.PAREN_R}


def check_source(query: str, limits: GraphQLConfig) -> None:
    """Refuse over-long, over-long-in-tokens or over-nested text before parsing it."""
    if len(query.encode("utf-8", "surrogatepass")) > limits.max_query_bytes:
        raise errors.InvalidAPIParameters(
            f"The query is longer than {limits.max_query_bytes} bytes."
        )
    lexer = Lexer(Source(query))
    tokens = depth = 0
    # Selection sets nest braces; arguments and list values nest the other two. A
    # selection depth of N needs N braces plus some slack for arguments around them.
    max_nesting = limits.max_depth + 8
    while True:
        token = lexer.advance()  # GraphQLSyntaxError propagates: the caller makes it a 400
        if token.kind is TokenKind.EOF:
            return
        tokens += 1
        if tokens > limits.max_tokens:
            raise errors.InvalidAPIParameters(
                f"The query has more than {limits.max_tokens} tokens."
            )
        if token.kind in _OPENING:
            depth += 1
            if depth > max_nesting:
                raise errors.InvalidAPIParameters(
                    f"The query is nested deeper than {limits.max_depth} levels."
                )
        elif token.kind in _CLOSING:
            depth -= 1


def check_document(document: DocumentNode, limits: GraphQLConfig) -> None:
    """Refuse selections deeper than ``max_depth`` or wider than ``max_fields`` in total."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    budget: list[int] = [limits.max_fields]

    def walk(selection_set: SelectionSetNode | None, depth: int, seen: frozenset[str]) -> None:
        if selection_set is None:
            return
        if depth > limits.max_depth:
            raise errors.InvalidAPIParameters(
                f"The query is nested deeper than {limits.max_depth} levels."
            )
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                budget[0] -= 1
                if budget[0] < 0:
                    raise errors.InvalidAPIParameters(
                        f"The query selects more than {limits.max_fields} fields."
                    )
                walk(selection.selection_set, depth + 1, seen)
            elif isinstance(selection, InlineFragmentNode):
                walk(selection.selection_set, depth, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = fragments.get(name)
                # Unknown or cyclic spreads are validation errors reported later.
                if fragment is not None and name not in seen:
                    walk(fragment.selection_set, depth, seen | {name})

    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            walk(definition.selection_set, 1, frozenset())


class _UserIdVariables(Visitor):
    """Collects the variable nodes passed to arguments named ``user_id``."""

    def __init__(self) -> None:
        super().__init__()
        self.nodes: set[int] = set()

    def enter_argument(self, node: ArgumentNode, *_args: Any) -> None:
        if node.name.value == "user_id" and isinstance(node.value, VariableNode):
            self.nodes.add(id(node.value))


def _is_int_type(type_node: Any) -> bool:
    if isinstance(type_node, NonNullTypeNode):
        type_node = type_node.type
    return isinstance(type_node, NamedTypeNode) and type_node.name.value == "Int"


class UserIdVariablesRule(VariablesInAllowedPositionRule):
    """The standard rule, except that an ``Int``/``Int!`` variable may feed ``user_id``.

    The official client declares ``$user_id: Int!`` whenever the id looks like a number
    (spec 7.4 trap); the resolvers turn the integer into its decimal string.
    """

    def __init__(self, context: ValidationContext) -> None:
        super().__init__(context)
        self._allowed: set[int] = set()

    def enter_operation_definition(self, node: OperationDefinitionNode, *args: Any) -> None:
        super().enter_operation_definition(node, *args)
        finder = _UserIdVariables()
        visit(node, finder)
        self._allowed = finder.nodes

    def report_error(self, error: GraphQLError) -> None:
        nodes = error.nodes or []
        definitions = [n for n in nodes if isinstance(n, VariableDefinitionNode)]
        usages = [n for n in nodes if isinstance(n, VariableNode)]
        if (
            definitions
            and usages
            and _is_int_type(definitions[0].type)
            and all(id(n) in self._allowed for n in usages)
        ):
            return
        super().report_error(error)


#: The standard rules with the relaxed variable rule in place of the strict one.
VALIDATION_RULES = tuple(
    UserIdVariablesRule if rule is VariablesInAllowedPositionRule else rule
    for rule in specified_rules
)
