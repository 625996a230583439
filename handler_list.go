package webhook

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
)

// The list call: GET /entities/Webhooks with Relay-style cursor paging,
// order-by, filter / filter-op and load-only (pipeliner/reference.md).

const (
	defaultPageSize = 30  // Pipeliner's default of first
	maxPageSize     = 100 // Pipeliner's most for first and last
)

// orderKeys are the fields a list can be ordered by, each with its sort
// key: a text that orders as the field does (times are written as
// "2006-01-02T15:04:05", booleans false before true).
var orderKeys = map[string]func(*Webhook) string{
	"id":           func(w *Webhook) string { return w.ID },
	"url":          func(w *Webhook) string { return w.URL },
	"created":      func(w *Webhook) string { return w.Created.UTC().Format(timeLayout) },
	"modified":     func(w *Webhook) string { return w.Modified.UTC().Format(timeLayout) },
	"insecure_ssl": func(w *Webhook) string { return strconv.FormatBool(w.InsecureSSL) },
}

// defaultOrder is the order when a list has no order-by: oldest first.
const defaultOrder = "created"

// listQuery is a list call's query, parsed.
type listQuery struct {
	order  []orderBy // its last field is id, which no two registrations share
	spec   string    // order as a cursor carries it
	first  int       // the page size counted from the start ...
	last   int       // ... or from the end, when > 0
	after  []string  // cursor positions, nil when not given
	before []string
	filter *entityRules // nil: every registration
	only   *projection  // nil: the whole registration
}

type orderBy struct {
	field string
	desc  bool
}

// pageInfo is the page_info of a list answer.
type pageInfo struct {
	StartCursor     *string `json:"start_cursor"` // null on an empty page
	EndCursor       *string `json:"end_cursor"`
	HasPreviousPage bool    `json:"has_previous_page"`
	HasNextPage     bool    `json:"has_next_page"`
}

// listed is a registration of the list: its sort keys, and its JSON once
// it is needed (to filter it, or to answer with it).
type listed struct {
	hook *Webhook
	keys []string
	raw  json.RawMessage
}

func (c *restCall) list() {
	q, e := c.listQuery()
	if e != nil {
		c.fail(e)
		return
	}
	hooks, err := c.h.reg.List(c.r.Context(), c.space)
	if err != nil {
		c.fail(c.registryError(err, ""))
		return
	}
	rows := make([]listed, 0, len(hooks))
	var rec, none fields // of one registration at a time
	for i := range hooks {
		row := listed{hook: &hooks[i]}
		if q.filter != nil {
			if row.raw, err = webhookAnswer(hooks[i]); err != nil {
				c.fail(c.internal(err))
				return
			}
			if rec.reset(gjson.ParseBytes(row.raw)); !q.filter.holds(&rec, &none, false) {
				continue
			}
		}
		row.keys = q.keys(row.hook)
		rows = append(rows, row)
	}
	slices.SortFunc(rows, func(a, b listed) int { return q.compare(a.keys, b.keys) })
	lo, hi := q.window(rows)
	data := make([]json.RawMessage, hi-lo)
	for i, row := range rows[lo:hi] {
		if data[i] = row.raw; data[i] == nil {
			if data[i], err = webhookAnswer(*row.hook); err != nil {
				c.fail(c.internal(err))
				return
			}
		}
		if q.only != nil {
			data[i], _ = q.only.apply(c.r.Context(), nil, "", c.space, entityName, gjson.ParseBytes(data[i]), nil, nil)
		}
	}
	info := &pageInfo{HasPreviousPage: lo > 0, HasNextPage: hi < len(rows)}
	if lo < hi {
		start, end := q.cursor(rows[lo].keys), q.cursor(rows[hi-1].keys)
		info.StartCursor, info.EndCursor = &start, &end
	}
	c.answer(http.StatusOK, answer{Success: true, Data: data, PageInfo: info})
}

// window returns the page's part of rows, sorted: after the after
// cursor, before the before cursor, then the first or last of them.
func (q *listQuery) window(rows []listed) (lo, hi int) {
	hi = len(rows)
	if q.after != nil {
		lo = sort.Search(len(rows), func(i int) bool { return q.compare(rows[i].keys, q.after) > 0 })
	}
	if q.before != nil {
		hi = sort.Search(len(rows), func(i int) bool { return q.compare(rows[i].keys, q.before) >= 0 })
	}
	hi = max(hi, lo)
	if q.last > 0 {
		return max(lo, hi-q.last), hi
	}
	return lo, min(hi, lo+q.first)
}

func (q *listQuery) keys(w *Webhook) []string {
	keys := make([]string, len(q.order))
	for i, o := range q.order {
		keys[i] = orderKeys[o.field](w)
	}
	return keys
}

func (q *listQuery) compare(a, b []string) int {
	for i, o := range q.order {
		if n := strings.Compare(a[i], b[i]); n != 0 {
			if o.desc {
				return -n
			}
			return n
		}
	}
	return 0
}

// cursor is the opaque position of a registration in the list: the
// base64 of a JSON list of the order and the registration's sort keys.
// It holds nothing a client may not see, and a forged one only positions
// the page among the client's own registrations: it needs no signature.
func (q *listQuery) cursor(keys []string) string {
	b, _ := json.Marshal(append([]string{q.spec}, keys...)) // strings: it cannot fail
	return base64.RawURLEncoding.EncodeToString(b)
}

// position reads a cursor that q.cursor made.
func (q *listQuery) position(name, s string) ([]string, *apiError) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	var keys []string
	if err != nil || json.Unmarshal(b, &keys) != nil || len(keys) != len(q.order)+1 {
		return nil, newError(errBadParameter, "%s: not a cursor of this list", name)
	}
	if keys[0] != q.spec {
		return nil, newError(errBadParameter, "%s: the cursor is of another order-by (%s)", name, shortText(keys[0]))
	}
	return keys[1:], nil
}

// listQuery reads a list call's query parameters. Parameters it does not
// know are ignored; include-deleted finds nothing more (deletes are final)
// and expand nothing to expand (registrations have no relations), so both
// are read only to refuse a malformed value.
func (c *restCall) listQuery() (*listQuery, *apiError) {
	q := &listQuery{}
	var e *apiError
	if e = c.parseOrder(q); e != nil {
		return nil, e
	}
	if e = c.parsePage(q); e != nil {
		return nil, e
	}
	if q.filter, e = c.parseFilter(); e != nil {
		return nil, e
	}
	if q.only, e = c.parseLoadOnly(); e != nil {
		return nil, e
	}
	if s, ok, e := c.param("include-deleted"); e != nil {
		return nil, e
	} else if _, err := strconv.ParseBool(s); ok && err != nil {
		return nil, newError(errBadParameter, "include-deleted=%s: want true or false", shortText(s))
	}
	_, _, e = c.param("expand")
	return q, e
}

// parseOrder reads order-by: field names, "-" before one for descending.
// id ends every order, so that registrations that tie on the rest keep
// one order and a page never loses or repeats one.
func (c *restCall) parseOrder(q *listQuery) *apiError {
	s, ok, e := c.param("order-by")
	if e != nil {
		return e
	}
	if !ok {
		s = defaultOrder
	}
	for _, name := range strings.Split(s, ",") {
		o := orderBy{field: strings.TrimPrefix(name, "-"), desc: strings.HasPrefix(name, "-")}
		if orderKeys[o.field] == nil {
			return newError(errBadParameter, "order-by=%s: cannot order by %q; fields: created, id, insecure_ssl, modified, url",
				shortText(s), shortText(o.field))
		}
		if !slices.ContainsFunc(q.order, func(p orderBy) bool { return p.field == o.field }) {
			q.order = append(q.order, o)
		}
		if o.field == "id" {
			break // unique: nothing after it orders anything
		}
	}
	if q.order[len(q.order)-1].field != "id" {
		q.order = append(q.order, orderBy{field: "id"})
	}
	spec := make([]string, len(q.order))
	for i, o := range q.order {
		spec[i] = o.field
		if o.desc {
			spec[i] = "-" + o.field
		}
	}
	q.spec = strings.Join(spec, ",")
	return nil
}

// parsePage reads first and after, or last and before (Relay's
// connections): giving both first and last is refused.
func (c *restCall) parsePage(q *listQuery) *apiError {
	var e *apiError
	if q.first, e = c.intParam("first", 0, 1, maxPageSize); e != nil {
		return e
	}
	if q.last, e = c.intParam("last", 0, 1, maxPageSize); e != nil {
		return e
	}
	switch {
	case q.first > 0 && q.last > 0:
		return newError(errBadParameter, "first and last: give one of them")
	case q.first == 0 && q.last == 0:
		q.first = defaultPageSize
	}
	for _, p := range []struct {
		name string
		pos  *[]string
	}{{"after", &q.after}, {"before", &q.before}} {
		s, ok, e := c.param(p.name)
		if e == nil && ok {
			*p.pos, e = q.position(p.name, s)
		}
		if e != nil {
			return e
		}
	}
	return nil
}

// parseFilter compiles filter[field]=value and filter-op[field]=op into a
// filter as a registration's options would have it, so that a list is
// filtered exactly as events are. A field given several values holds when
// one of them does (not-eq: none); between takes two values, or one
// "low,high"; null, not-null, empty and not-empty need no filter[field].
func (c *restCall) parseFilter() (*entityRules, *apiError) {
	values, ops := map[string][]string{}, map[string]string{}
	for key, vals := range c.query {
		if field, ok, e := bracketed("filter-op", key); e != nil || ok {
			if e == nil {
				ops[field], _, e = c.param(key)
			}
			if e != nil {
				return nil, e
			}
			continue
		}
		field, ok, e := bracketed("filter", key)
		if e != nil {
			return nil, e
		}
		if ok {
			values[field] = vals
		}
	}
	if len(values) == 0 && len(ops) == 0 {
		return nil, nil
	}
	for field, op := range ops {
		vals, given := values[field]
		switch {
		case !given && (op == "null" || op == "not-null" || op == "empty" || op == "not-empty"):
			values[field] = nil // these operators ignore the value
		case op == "between" && len(vals) == 1:
			if lo, hi, ok := strings.Cut(vals[0], ","); ok {
				values[field] = []string{lo, hi}
			}
		}
	}
	opts := EntityOptions{Filter: make(map[string]json.RawMessage, len(values)), FilterOp: ops}
	for field, vals := range values {
		opts.Filter[field] = filterValues(vals)
	}
	rules, err := compileEntity("query", opts)
	if err != nil {
		return nil, queryError(err)
	}
	return rules, nil
}

// filterValues is the JSON of a filter[field]'s values, null for none:
// REST filters arrive as text, which the filter compares with numbers and
// booleans as their text (pipeliner/reference.md).
func filterValues(vals []string) json.RawMessage {
	var b []byte
	if len(vals) == 1 {
		b, _ = json.Marshal(vals[0])
	} else {
		b, _ = json.Marshal(vals)
	}
	return b
}

// bracketed reads a deepObject parameter, name[field]: ok is false for
// another parameter, and a name without a field is an error.
func bracketed(name, key string) (field string, ok bool, e *apiError) {
	rest, found := strings.CutPrefix(key, name)
	switch {
	case !found || rest != "" && rest[0] != '[':
		return "", false, nil
	case len(rest) < 3 || rest[len(rest)-1] != ']':
		return "", false, newError(errBadParameter, "%s: want %s[field]", shortText(key), name)
	}
	return rest[1 : len(rest)-1], true, nil
}

// parseLoadOnly reads load-only=a,b.c: the dot paths each listed
// registration is cut down to, as a registration's load-only cuts a record.
func (c *restCall) parseLoadOnly() (*projection, *apiError) {
	s, ok, e := c.param("load-only")
	if e != nil || !ok {
		return nil, e
	}
	p, err := compileProjection("query", EntityOptions{LoadOnly: strings.Split(s, ",")})
	if err != nil {
		return nil, queryError(err)
	}
	return &p, nil
}

// queryError is the 400 for a filter or load-only that does not compile,
// its fields named as the query names them.
func queryError(err error) *apiError {
	fes := fieldErrorsOf(err)
	if len(fes) == 0 {
		return newError(errBadParameter, "%s", shortText(err.Error()))
	}
	msgs := make([]string, len(fes))
	for i, fe := range fes {
		msgs[i] = queryParam(fe.Field) + ": " + fe.Reason
	}
	return newError(errBadParameter, "%s", strings.Join(msgs, "; "))
}

func queryParam(field string) string {
	for _, name := range []string{"filter-op", "filter"} {
		if f, ok := strings.CutPrefix(field, "query."+name+"."); ok {
			return name + "[" + f + "]"
		}
	}
	if strings.HasPrefix(field, "query.load-only") {
		return "load-only"
	}
	return strings.TrimPrefix(field, "query.")
}
