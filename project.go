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

func compileProjection(field string, o EntityOptions) (projection, error) {
	var p projection
	for i, s := range o.Expand {
		if _, err := compilePath(fmt.Sprintf("%s.expand[%d]", field, i), s); err != nil {
			return p, err
		}
	}
	p.expand = o.Expand
	for i, s := range o.LoadOnly {
		if _, err := compilePath(fmt.Sprintf("%s.load-only[%d]", field, i), s); err != nil {
			return p, err
		}
		if p.only == nil {
			p.only = &node{}
		}
		p.only.insert(strings.Split(s, "."))
	}
	return p, nil
}

// insert adds a path; a field kept whole absorbs any deeper path.
func (n *node) insert(keys []string) {
	for _, k := range keys {
		if n.whole {
			return
		}
		c := n.child(k)
		if c == nil {
			c = &node{key: k}
			n.children = append(n.children, c)
		}
		n = c
	}
	n.whole, n.children = true, nil
}

func (n *node) child(key string) *node {
	for _, c := range n.children {
		if c.key == key {
			return c
		}
	}
	return nil
}

// apply returns the record as the registration sends it: expanded by the
// host, then cut down by load-only. m, when not nil, holds the member spans
// validJSON noted for rec. field names rec in the event ("data",
// "related"), for an error in the Expander's answer.
func (p *projection) apply(ctx context.Context, exp Expander, field, space, entity string, rec gjson.Result, m *members, dst []byte) ([]byte, error) {
	if len(p.expand) > 0 && exp != nil {
		// Paths is a copy: the registration's own must not change under it.
		out, err := exp.Expand(ctx, ExpandRequest{Space: space, Entity: entity,
			Record: json.RawMessage(rec.Raw), Paths: slices.Clone(p.expand)})
		if err != nil {
			return dst, fmt.Errorf("expand %s %v: %w", entity, p.expand, err)
		}
		m = nil // of the record before
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
	if out, ok := p.only.appendMembers(dst, membersCursor(rec.Raw, m)); ok {
		return out, nil
	}
	return append(dst, "{}"...), nil
}

// appendMembers appends the fields that n keeps of the object whose
// members are read from members; ok is false, and nothing is appended,
// when none is left.
func (n *node) appendMembers(dst []byte, members cursor) (out []byte, ok bool) {
	start := len(dst)
	dst = append(dst, '{')
	for k, v, more := members.next(); more; k, v, more = members.next() {
		if c := n.child(unquote(k)); c != nil {
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
