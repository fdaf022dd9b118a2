package lint

import (
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// lineIn is the line of the field at path (findings' form: a.b[0].c) under
// node: the line of the deepest part of the path that exists, 0 if not even
// the first part does. A key segment met on a list looks in the list's first
// element that has that key (encoding/json's type errors name the path
// without indices).
func lineIn(node *yaml.Node, path string) int {
	line, _ := fieldLine(node, path)
	return line
}

// fieldLine is lineIn, and whether the whole path exists.
func fieldLine(node *yaml.Node, path string) (line int, whole bool) {
	cur := resolve(node)
	segs := splitPath(path)
	for n, seg := range segs {
		if cur == nil {
			return line, false
		}
		var next *yaml.Node
		var keyLine int
		switch {
		case seg.index >= 0 && cur.Kind == yaml.SequenceNode:
			if seg.index < len(cur.Content) {
				next = resolve(cur.Content[seg.index])
				keyLine = next.Line
			}
		case seg.index < 0 && cur.Kind == yaml.MappingNode:
			next, keyLine = mapValue(cur, seg.key)
		case seg.index < 0 && cur.Kind == yaml.SequenceNode:
			for _, item := range cur.Content {
				if v, l := mapValue(resolve(item), seg.key); v != nil {
					next, keyLine = v, l
					break
				}
			}
		}
		if next == nil {
			return line, false
		}
		line = keyLine
		cur = next
		if n == len(segs)-1 {
			return line, true
		}
	}
	return line, false
}

// mapValue is the value under key in a mapping node, and the key's line.
func mapValue(m *yaml.Node, key string) (*yaml.Node, int) {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil, 0
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return resolve(m.Content[i+1]), m.Content[i].Line
		}
	}
	return nil, 0
}

// resolve follows aliases and unwraps a document node.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil {
		switch {
		case n.Kind == yaml.AliasNode:
			n = n.Alias
		case n.Kind == yaml.DocumentNode && len(n.Content) == 1:
			n = n.Content[0]
		default:
			return n
		}
	}
	return nil
}

type pathSegment struct {
	key   string
	index int // -1 for a key
}

// splitPath parses "spec.ports[0].name" into spec, ports, [0], name.
func splitPath(path string) []pathSegment {
	var segs []pathSegment
	for _, part := range strings.Split(path, ".") {
		for part != "" {
			open := strings.IndexByte(part, '[')
			if open < 0 {
				segs = append(segs, pathSegment{key: part, index: -1})
				break
			}
			if open > 0 {
				segs = append(segs, pathSegment{key: part[:open], index: -1})
			}
			end := strings.IndexByte(part[open:], ']')
			if end < 0 {
				segs = append(segs, pathSegment{key: part[open:], index: -1})
				break
			}
			if n, err := strconv.Atoi(part[open+1 : open+end]); err == nil && n >= 0 {
				segs = append(segs, pathSegment{index: n})
			}
			part = part[open+end+1:]
		}
	}
	return segs
}
