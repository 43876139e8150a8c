"""Safe YAML loading that remembers the line of every key, so errors can say FILE:LINE: key.path.

PyYAML's ``safe_load`` throws line numbers away and silently keeps the last of two equal keys; this module
composes the node tree with ``SafeLoader`` and builds plain Python values plus a ``path -> line`` map, reporting
duplicate keys as problems instead of dropping data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from pdn_ops.core.errors import YamlSyntaxError

Path_ = tuple[str | int, ...]


@dataclass
class LocatedYaml:
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)
    duplicates: list[tuple[Path_, int]] = field(default_factory=list)

    def line_of(self, path: Path_) -> int:
        """The line of ``path`` or of its nearest ancestor that exists (1 for the document itself)."""
        probe = tuple(path)
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            probe = probe[:-1]
        return self.lines.get((), 1)



def load(text: str) -> LocatedYaml:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        result = LocatedYaml(data=None)
        if node is not None:
            result.lines[()] = node.start_mark.line + 1
            result.data = _convert(node, (), result, loader)
        return result
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise YamlSyntaxError(line, str(exc.problem or exc.context or "invalid YAML")) from exc
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(1, str(exc)) from exc
    finally:
        loader.dispose()


_PLAIN_TAGS: dict[type[yaml.Node], str] = {
    yaml.MappingNode: "tag:yaml.org,2002:map",
    yaml.SequenceNode: "tag:yaml.org,2002:seq",
}


def _convert(node: yaml.Node, path: Path_, out: LocatedYaml, loader: yaml.SafeLoader) -> Any:
    expected = _PLAIN_TAGS.get(type(node))
    if expected is not None and node.tag != expected:
        raise YamlSyntaxError(node.start_mark.line + 1, f"unsupported tag {node.tag!r}")
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            key = str(key)
            child = (*path, key)
            line = key_node.start_mark.line + 1
            if key in mapping:
                out.duplicates.append((child, line))
                continue
            out.lines[child] = line
            mapping[key] = _convert(value_node, child, out, loader)
        return mapping
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            child = (*path, index)
            out.lines[child] = item.start_mark.line + 1
            items.append(_convert(item, child, out, loader))
        return items
    return loader.construct_object(node, deep=True)
