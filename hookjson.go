package webhook

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"

	"github.com/tidwall/gjson"
)

// The JSON of a registration and of a change to one: Pipeliner's Webhook
// entity, read with every problem reported at once.

// timeLayout is how Pipeliner writes created and modified.
const timeLayout = "2006-01-02T15:04:05"

type webhookJSON struct {
	ID          string          `json:"id,omitempty"`
	URL         string          `json:"url"`
	Events      []string        `json:"events"`
	Options     json.RawMessage `json:"options"`
	InsecureSSL bool            `json:"insecure_ssl"`
	Signature   string          `json:"signature,omitempty"`
	Created     string          `json:"created,omitempty"`
	Modified    string          `json:"modified,omitempty"`
	Disabled    *disabledJSON   `json:"disabled,omitempty"`
}

type disabledJSON struct {
	At     string `json:"at"`
	Reason string `json:"reason"`
}

// MarshalJSON writes w in Pipeliner's shape.
func (w Webhook) MarshalJSON() ([]byte, error) {
	opts, err := json.Marshal(w.Options)
	if err != nil {
		return nil, err
	}
	return w.marshal(opts)
}

// marshal writes w with opts, the JSON of its options, in place of
// w.Options.
func (w *Webhook) marshal(opts json.RawMessage) ([]byte, error) {
	j := webhookJSON{ID: w.ID, URL: w.URL, Events: w.Events, Options: opts,
		InsecureSSL: w.InsecureSSL, Signature: w.Signature}
	if j.Events == nil {
		j.Events = []string{}
	}
	if !w.Created.IsZero() {
		j.Created = w.Created.UTC().Format(timeLayout)
	}
	if !w.Modified.IsZero() {
		j.Modified = w.Modified.UTC().Format(timeLayout)
	}
	if w.Disabled != nil {
		j.Disabled = &disabledJSON{At: w.Disabled.At.UTC().Format(timeLayout), Reason: w.Disabled.Reason}
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads Pipeliner's shape, as a host stores it: the fields
// of a Patch, and id, created, modified and disabled. Fields Pipeliner has
// and this package does not model (is_deleted, client_id, ...) are
// ignored; null is the same as absent. A field of the wrong JSON type, or
// a time in another format, is a *FieldError: UnmarshalJSON returns
// FieldErrors with every such field, which it leaves zero, and decodes the
// others. Space keeps its value: it is never part of the JSON.
func (w *Webhook) UnmarshalJSON(b []byte) error {
	d := decoder{errs: &problems{}}
	out := Webhook{Space: w.Space}
	var p Patch
	d.body(b, func(key string, v gjson.Result) {
		switch key {
		case "id":
			out.ID, _ = d.string(key, v)
		case "created":
			out.Created = d.time(key, v)
		case "modified":
			out.Modified = d.time(key, v)
		case "disabled":
			out.Disabled = d.disabled(key, v)
		default:
			p.field(&d, key, v)
		}
	})
	p.apply(&out)
	*w = out
	return d.errs.err()
}

// UnmarshalJSON reads the body of Pipeliner's PATCH, or of a create: url,
// events, options, insecure_ssl and signature. The fields a client must
// never set (id, created, modified, disabled, is_delete_protected,
// is_deleted, application(_id), client(_id)) and unknown fields are
// ignored, and null is the same as absent: the field keeps its value. A
// field of the wrong JSON type is a *FieldError: UnmarshalJSON returns
// FieldErrors with every such field, which it leaves nil, and decodes the
// others.
func (p *Patch) UnmarshalJSON(b []byte) error {
	d := decoder{errs: &problems{}}
	*p = Patch{}
	d.body(b, func(key string, v gjson.Result) { p.field(&d, key, v) })
	return d.errs.err()
}

// field decodes the member key of a body into p, if it is one of p's.
// null, or a value of the wrong type, leaves the field nil: of a key given
// twice, the last counts, as in encoding/json.
func (p *Patch) field(d *decoder, key string, v gjson.Result) {
	switch key {
	case "url":
		p.URL = ptr(d.string(key, v))
	case "events":
		p.Events = ptr(d.strings(key, v))
	case "options":
		p.Options = ptr(d.optionsObject(key, v))
	case "insecure_ssl":
		p.InsecureSSL = ptr(d.bool(key, v))
	case "signature":
		p.Signature = ptr(d.string(key, v))
	}
}

// ptr returns &v when ok, else nil.
func ptr[T any](v T, ok bool) *T {
	if !ok {
		return nil
	}
	return &v
}

// decoder reads JSON with gjson: the JSON of a client, whose every type
// error it collects in errs, or the JSON a Registry stored, which it reads
// in place (errs nil). What it returns points into the text it reads (but
// for strings with escapes, which gjson copies), so a client's JSON is
// copied once as a whole, never per string.
type decoder struct {
	errs *problems // nil for stored JSON, which has no error
}

// fail records a problem of a client's JSON.
func (d *decoder) fail(field, format string, args ...any) {
	if d.errs != nil {
		d.errs.add(invalid(field, format, args...))
	}
}

// body reads b, a client's JSON object, calling each with its members in
// order.
func (d *decoder) body(b []byte, each func(key string, v gjson.Result)) {
	v, ok := d.parse("webhook", b)
	if !ok {
		return
	}
	if !v.IsObject() {
		d.fail("webhook", "want an object, got %s", shorten([]byte(v.Raw)))
		return
	}
	d.object("webhook", v, each)
}

// object calls each with the members of v, in order, and reports whether v
// is an object; null is nothing, without an error.
func (d *decoder) object(field string, v gjson.Result, each func(key string, v gjson.Result)) bool {
	if !v.IsObject() {
		if v.Type != gjson.Null {
			d.fail(field, "want an object, got %s", shorten([]byte(v.Raw)))
		}
		return false
	}
	v.ForEach(func(k, v gjson.Result) bool {
		each(k.Str, v)
		return true
	})
	return true
}

func (d *decoder) string(field string, v gjson.Result) (string, bool) {
	switch v.Type {
	case gjson.String:
		return v.Str, true
	case gjson.Null:
	default:
		d.fail(field, "want a string, got %s", shorten([]byte(v.Raw)))
	}
	return "", false
}

func (d *decoder) bool(field string, v gjson.Result) (bool, bool) {
	switch v.Type {
	case gjson.True, gjson.False:
		return v.Type == gjson.True, true
	case gjson.Null:
	default:
		d.fail(field, "want a boolean, got %s", shorten([]byte(v.Raw)))
	}
	return false, false
}

// strings reads a list of strings; [] is an empty list, not nil.
func (d *decoder) strings(field string, v gjson.Result) ([]string, bool) {
	if !v.IsArray() {
		if v.Type != gjson.Null {
			d.fail(field, "want a list of strings, got %s", shorten([]byte(v.Raw)))
		}
		return nil, false
	}
	list := make([]string, 0, countElements(v))
	ok := true
	v.ForEach(func(_, s gjson.Result) bool {
		if ok = s.Type == gjson.String; ok {
			list = append(list, s.Str)
		}
		return ok
	})
	if !ok {
		d.fail(field, "want a list of strings, got %s", shorten([]byte(v.Raw)))
		return nil, false
	}
	return list, true
}

// countElements counts the elements of an array without reading them.
func countElements(v gjson.Result) int {
	n := 0
	v.ForEach(func(_, _ gjson.Result) bool {
		n++
		return true
	})
	return n
}

func (d *decoder) number(field string, v gjson.Result) (int, bool) {
	if v.Type == gjson.Null {
		return 0, false
	}
	n, err := strconv.Atoi(v.Raw)
	if v.Type != gjson.Number || err != nil {
		d.fail(field, "want a whole number, got %s", shorten([]byte(v.Raw)))
		return 0, false
	}
	return n, true
}

// time reads Pipeliner's zoneless UTC times, and RFC 3339 times for
// clients that add a zone.
func (d *decoder) time(field string, v gjson.Result) time.Time {
	s, ok := d.string(field, v)
	if !ok || s == "" {
		return time.Time{}
	}
	t, err := time.Parse(timeLayout, s)
	if err != nil {
		if t, err = time.Parse(time.RFC3339Nano, s); err != nil {
			d.fail(field, "%q is not a time like 2019-01-01T00:00:00", shorten([]byte(s)))
			return time.Time{}
		}
	}
	return t.UTC()
}

func (d *decoder) disabled(field string, v gjson.Result) *Disabled {
	var dis Disabled
	if !d.object(field, v, func(key string, v gjson.Result) {
		switch key {
		case "at":
			dis.At = d.time(field+".at", v)
		case "reason":
			dis.Reason, _ = d.string(field+".reason", v)
		}
	}) {
		return nil
	}
	return &dis
}

// problems collects the field errors of one registration or one body.
type problems struct {
	list FieldErrors
}

func (p *problems) add(fe *FieldError) {
	if fe != nil {
		p.list = append(p.list, fe)
	}
}

// err returns nil, or the problems as FieldErrors in the order of their
// fields, where the numbers of list elements count as numbers
// (events[2] before events[10]).
func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	slices.SortStableFunc(p.list, func(a, b *FieldError) int { return compareFields(a.Field, b.Field) })
	return p.list
}

// compareFields orders field names as text, but for runs of digits, which
// it orders by their numbers.
func compareFields(a, b string) int {
	for a != "" && b != "" {
		if isDigit(a[0]) && isDigit(b[0]) {
			i, j := digits(a), digits(b)
			na, nb := trimZeros(a[:i]), trimZeros(b[:j])
			if len(na) != len(nb) {
				return len(na) - len(nb)
			}
			if na != nb {
				if na < nb {
					return -1
				}
				return 1
			}
			a, b = a[i:], b[j:]
			continue
		}
		if a[0] != b[0] {
			return int(a[0]) - int(b[0])
		}
		a, b = a[1:], b[1:]
	}
	return len(a) - len(b)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func digits(s string) int {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i
}

func trimZeros(s string) string {
	for len(s) > 1 && s[0] == '0' {
		s = s[1:]
	}
	return s
}
