package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/tidwall/gjson"
)

// Expander loads related records into a record, for the "expand" option:
// only the host has them. A Dispatcher calls it from Dispatch, with the
// call's ctx, before load-only applies; Dispatch may be called from several
// goroutines at once, so an Expander must be safe for simultaneous use.
// Record is the Expander's own copy.
type Expander interface {
	Expand(ctx context.Context, req ExpandRequest) (json.RawMessage, error)
}

// ExpanderFunc is a function that is an Expander, as http.HandlerFunc is
// a Handler: a host whose records and Dispatcher refer to each other makes
// one from a method value.
type ExpanderFunc func(ctx context.Context, req ExpandRequest) (json.RawMessage, error)

// Expand calls f.
func (f ExpanderFunc) Expand(ctx context.Context, req ExpandRequest) (json.RawMessage, error) {
	return f(ctx, req)
}

// ExpandRequest asks for Record with Paths expanded. Entity is the record's
// entity ("Contact", a custom entity's API name, or Event.RelatedEntity for
// the related record) and Space its team space. The answer must be a JSON
// object.
type ExpandRequest struct {
	Space, Entity string
	Record        json.RawMessage
	Paths         []string
}

// projection is the compiled expand and load-only of one entity.
type projection struct {
	expand []string
	only   *node // nil keeps the whole record
}

// node is a field of a load-only tree: kept whole, or cut down to its
// children.
type node struct {
	key      string
	whole    bool
	children []*node
}

// loadOnlyTree builds the tree of load-only paths, which the compiler
// checked (compiler.path): a field kept whole absorbs any deeper path. It is linear in the
// paths: children are found through a map while the tree grows, and
// sorted once it is built, for child.
func loadOnlyTree(paths []string) *node {
	type edge struct {
		parent *node
		key    string
	}
	root := &node{}
	kids := make(map[edge]*node, len(paths))
	for _, s := range paths {
		n := root
		for k := range strings.SplitSeq(s, ".") {
			if n.whole {
				break
			}
			c := kids[edge{n, k}]
			if c == nil {
				c = &node{key: k}
				kids[edge{n, k}] = c
				n.children = append(n.children, c)
			}
			n = c
		}
		n.whole, n.children = true, nil
	}
	root.sort()
	return root
}

// sort orders the children of n and of its descendants by key.
func (n *node) sort() {
	slices.SortFunc(n.children, func(a, b *node) int { return strings.Compare(a.key, b.key) })
	for _, c := range n.children {
		c.sort()
	}
}

// child returns the child of n named key, or nil. It scans, and is small
// enough to be inlined; appendMembers searches a node of many children
// instead.
func (n *node) child(key string) *node {
	for _, c := range n.children {
		if c.key == key {
			return c
		}
	}
	return nil
}

// search is child for many children, which are sorted, so that a
// record's member costs the same whatever the paths. It searches by hand:
// a comparison through a func value would make the key, and the record it
// points into, escape to the heap.
func (n *node) search(key string) *node {
	lo, hi := 0, len(n.children)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if n.children[mid].key < key {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < len(n.children) && n.children[lo].key == key {
		return n.children[lo]
	}
	return nil
}

// apply returns the record as the registration sends it: expanded by the
// host, then cut down by load-only. spans, when not nil, are where rec's
// members are (see members.spans). field names rec in the event ("data",
// "related"), for an error in the Expander's answer.
func (p *projection) apply(ctx context.Context, exp Expander, field, space, entity string, rec gjson.Result, spans []memberSpan, dst []byte) ([]byte, error) {
	if len(p.expand) > 0 && exp != nil {
		// Paths is a copy: the registration's own must not change under it.
		out, err := exp.Expand(ctx, ExpandRequest{Space: space, Entity: entity,
			Record: json.RawMessage(rec.Raw), Paths: slices.Clone(p.expand)})
		if err != nil {
			return dst, fmt.Errorf("expand %s %v: %w", entity, p.expand, err)
		}
		spans = nil // of the record before
		// The answer is a record like the host's own, under the same rules.
		rec = gjson.ParseBytes(out)
		if fault := checkJSON(out, nil, "", nil); fault != jsonOK {
			return dst, fmt.Errorf("expand %s %v: the Expander's answer: %w", entity, p.expand, recordError(field, out, fault))
		}
		if !rec.IsObject() {
			return dst, fmt.Errorf("expand %s %v: the Expander's answer: %w", entity, p.expand,
				invalid(field, "the Expander returned %s, not a JSON object", shorten(out)))
		}
	}
	if p.only == nil {
		return append(dst, rec.Raw...), nil
	}
	if out, ok := p.only.appendMembers(dst, membersCursor(rec.Raw, spans)); ok {
		return out, nil
	}
	return append(dst, "{}"...), nil
}

// appendMembers appends the fields that n keeps of the object whose
// members are read from members; ok is false, and nothing is appended,
// when none is left. A record's objects have no key twice (see keys.go),
// so the members after the last one n names are not read.
func (n *node) appendMembers(dst []byte, members cursor) (out []byte, ok bool) {
	start := len(dst)
	dst = append(dst, '{')
	left := len(n.children)
	for k, v, more := members.next(); more && left > 0; k, v, more = members.next() {
		var c *node
		if key := unquote(k); len(n.children) > 8 {
			c = n.search(key)
		} else {
			c = n.child(key)
		}
		if c != nil {
			left--
			var kept bool
			dst, kept = c.appendMember(dst, ok, k, valueOf(v))
			ok = ok || kept
		}
	}
	if !ok {
		return dst[:start], false
	}
	return append(dst, '}'), true
}

// appendValue applies n to one value: through an array it applies to each
// element, and elements left empty (or not objects) are left out.
func (n *node) appendValue(dst []byte, v gjson.Result) (out []byte, ok bool) {
	switch {
	case n.whole:
		return append(dst, v.Raw...), true
	case v.IsObject():
		return n.appendMembers(dst, newCursor(v.Raw))
	case !v.IsArray():
		return dst, false
	}
	start := len(dst)
	dst = append(dst, '[')
	elems := newCursor(v.Raw)
	for _, elem, more := elems.next(); more; _, elem, more = elems.next() {
		if elem[0] == '{' {
			var kept bool
			dst, kept = n.appendMember(dst, ok, "", valueOf(elem))
			ok = ok || kept
		}
	}
	if !ok {
		return dst[:start], false
	}
	return append(dst, ']'), true
}

// appendMember appends one member of an object (key is its raw JSON key)
// or of an array (key is ""), after a comma when sep; when n keeps
// nothing of v it appends nothing at all.
func (n *node) appendMember(dst []byte, sep bool, key string, v gjson.Result) ([]byte, bool) {
	mark := len(dst)
	if sep {
		dst = append(dst, ',')
	}
	if key != "" {
		dst = append(dst, key...)
		dst = append(dst, ':')
	}
	dst, kept := n.appendValue(dst, v)
	if !kept {
		return dst[:mark], false
	}
	return dst, true
}
