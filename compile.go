package webhook

import (
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

// Validating a registration and compiling it into the rules that Match and
// the Dispatcher apply, every problem reported at once.

// compile validates w and builds its compiled form, which keeps nothing of
// the caller's but strings. It returns every problem of w at once, as
// FieldErrors in the order of their fields.
//
// trusted is for a registration that a Registry validated before, such as
// one another replica stored: it skips what may change between replicas
// or releases (the event catalogue, the limits and the address policy), so
// that a registration once accepted is never lost. What the compiled form
// needs (URLs, UUIDs, options that parse) is still checked.
//
// compile takes no lock (the catalogue never changes): a Registry
// compiles before it takes its write lock, which it holds for the swap
// only.
func (r *Registry) compile(w Webhook, trusted bool) (*registration, error) {
	var errs problems
	var lim *Limits // NewRegistry set every limit
	if !trusted {
		lim = &r.limits
	}
	r.checkHook(&errs, &w, lim)
	reg := &registration{hook: w}
	reg.hook.Options = Options{}
	reg.hook.Events = slices.Clone(w.Events)
	if w.Disabled != nil {
		dis := *w.Disabled
		reg.hook.Disabled = &dis
	}
	c := compiler{lim: lim, errs: &errs, reg: reg}
	if !lossless(&w.Options) {
		// What JSON cannot keep: the options as given name the problems.
		c.options(&w.Options)
		if len(errs.list) == 0 {
			errs.add(invalid("options", "cannot be kept as JSON"))
		}
		return nil, errs.err()
	}
	// The rules are compiled from the JSON the registration keeps, so that
	// they point into it and nowhere else; its names are those of the
	// options as given, since every string of them is UTF-8.
	opts, err := encodeOptions(w.Options)
	if err != nil {
		errs.add(invalid("options", "%v", err))
		return nil, errs.err()
	}
	if lim != nil && len(opts) > lim.OptionsBytes {
		errs.add(tooLong("options", "as JSON", len(opts), lim.OptionsBytes))
	}
	reg.shared = &shared{options: opts}
	o := viewOptions(opts)
	if len(o.Entity) > 1 {
		c.raw = entityJSON(opts)
	}
	c.options(&o)
	if err := errs.err(); err != nil {
		return nil, err
	}
	return reg, nil
}

// check validates w as compile does, without storing anything: the REST
// handler merges its errors with those of decoding the body.
func (r *Registry) check(w Webhook) error {
	_, err := r.compile(w, false)
	return err
}

// checkHook checks the fields of w but its options; lim is nil for a
// trusted registration.
func (r *Registry) checkHook(errs *problems, w *Webhook, lim *Limits) {
	if w.ID != "" && !isUUID(w.ID) {
		errs.add(invalid("id", "%q is not a UUID", clip(w.ID)))
	}
	r.checkURL(errs, w.URL, lim)
	if w.Signature != "" && !isUUID(w.Signature) {
		errs.add(invalid("signature", "%q is not a UUID", clip(w.Signature)))
	}
	r.checkEvents(errs, w.Events, lim)
}

// checkURL checks that s is an absolute http or https URL within the
// limit, whose host the address policy allows.
func (r *Registry) checkURL(errs *problems, s string, lim *Limits) {
	if lim != nil && len(s) > lim.URLBytes {
		errs.add(tooLong("url", "", len(s), lim.URLBytes))
		return
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		errs.add(invalid("url", "%q is not a URL: %v", s, err))
		return
	case (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		errs.add(invalid("url", "%q is not an absolute http or https URL", s))
		return
	}
	if lim == nil {
		return
	}
	if err := r.addresses.CheckURL(s); err != nil {
		fe := invalid("url", "%s", strings.TrimPrefix(err.Error(), "webhook: "))
		fe.cause = err
		errs.add(fe)
	}
}

// checkEvents refuses an empty list, too many names and, unless the
// registration is trusted (lim nil), names not in the catalogue.
func (r *Registry) checkEvents(errs *problems, events []string, lim *Limits) {
	if len(events) == 0 {
		errs.add(invalid("events", "empty; give at least one event name"))
		return
	}
	if lim == nil {
		return
	}
	if fe := tooMany("events", len(events), "names", lim.Events); fe != nil {
		errs.add(fe)
		return
	}
	for i, name := range events {
		if !r.known(name) {
			errs.add(invalid(indexed("events", i), "%q is not in the event catalogue", clip(name)))
		}
	}
}

// entityJSON returns the JSON of each entity's options in options that
// encodeOptions wrote, pointing into it.
func entityJSON(opts string) map[string]string {
	m := map[string]string{}
	gjson.Get(opts, "entity").ForEach(func(name, e gjson.Result) bool {
		m[name.Str] = e.Raw
		return true
	})
	return m
}

// Compiling: checking every option against the format and the limits, and
// building the rules that Match and the Dispatcher apply.

// compiler compiles the options of one registration, collecting every
// problem.
type compiler struct {
	lim  *Limits // nil for a trusted registration, whose limits are not checked
	errs *problems
	reg  *registration
	// rules and entity are the entity being compiled and its field.
	rules  *entityRules
	entity string
	// raw holds the JSON of each entity's options, when the options are
	// read from the JSON a Registry stores: entities whose JSON is the
	// same share their compiled rules.
	raw map[string]string
}

// compileObject checks each option of x within its limit and compiles it.
// An option over its limit is one error, and is not looked into further.
func compileObject[T any](c *compiler, field string, format []option[T], x *T) {
	for i := range format {
		opt := &format[i]
		f := field + "." + opt.name
		if c.lim != nil && opt.limit != nil {
			if fe := tooMany(f, opt.size(x), opt.unit, opt.limit(c.lim)); fe != nil {
				c.errs.add(fe)
				continue
			}
		}
		opt.compile(c, f, x)
	}
}

// options compiles o into c.reg.
func (c *compiler) options(o *Options) {
	compileObject(c, "options", optionsFormat[:], o)
}

func (c *compiler) chunkSize(field string, o *Options) {
	switch n := o.ChunkSize; {
	case n < 0 || n > maxChunkSize:
		c.errs.add(invalid(field, "%d is not between 1 and %d (0 means %[2]d)", n, maxChunkSize))
	case n == 0:
		c.reg.chunkSize = maxChunkSize
	default:
		c.reg.chunkSize = n
	}
}

const maxChunkSize = 100

func (c *compiler) chunkDelay(field string, o *Options) {
	if o.ChunkDelay < 0 {
		c.errs.add(invalid(field, "%d is negative", o.ChunkDelay))
	}
	c.reg.chunkDelay = chunkDelay(o.ChunkDelay)
}

// names checks a list of names and returns it.
func (c *compiler) names(field string, list []string) []string {
	for i, s := range list {
		switch {
		case s == "":
			c.errs.add(invalid(indexed(field, i), "empty"))
		case !utf8.ValidString(s):
			c.errs.add(notUTF8(indexed(field, i), s))
		case c.lim != nil && len(s) > c.lim.NameBytes:
			c.errs.add(tooLong(indexed(field, i), "", len(s), c.lim.NameBytes))
		}
	}
	return list
}

// entities compiles options.entity into c.reg.rules, sorted by entity name.
func (c *compiler) entities(field string, o *Options) {
	names := sortedKeys(o.Entity)
	if len(names) == 0 {
		return
	}
	rules := make([]entityRules, len(names))
	// Entities with the same options share their compiled rules, which
	// never change: a registration often filters all its entities alike.
	var same map[string]int
	if c.raw != nil && len(names) > 1 {
		same = make(map[string]int, len(names))
	}
	for i, name := range names {
		switch {
		case !utf8.ValidString(name):
			c.errs.add(notUTF8(field, name))
		case c.lim != nil && len(name) > c.lim.NameBytes:
			c.errs.add(tooLong(field, strconv.Quote(clip(name))+" has", len(name), c.lim.NameBytes))
		}
		raw, known := c.raw[name]
		if j, ok := same[raw]; ok && known {
			rules[i] = rules[j]
		} else {
			errs := len(c.errs.list)
			rules[i] = *c.entityRules(field+"."+name, o.Entity[name])
			// Shared only when right: the errors of another entity alike
			// must name it too.
			if same != nil && known && len(c.errs.list) == errs {
				same[raw] = i
			}
		}
		rules[i].entity = name
	}
	c.reg.rules = rules
	for i := range rules {
		if r := &rules[i]; len(r.proj.expand) > 0 || r.proj.only != nil {
			if c.reg.entities == nil {
				c.reg.entities = map[string]*entityRules{}
			}
			c.reg.entities[r.entity] = r
		}
	}
}

// relatedEntity compiles options.related_entity, which shapes the
// secondary record only: filters and on-field-change apply to the event's
// own entity.
func (c *compiler) relatedEntity(field string, o *Options) {
	re := o.RelatedEntity
	if re == nil {
		return
	}
	if len(re.Filter) > 0 {
		c.errs.add(invalid(field+".filter", "not supported: filters apply to the event's own entity"))
	}
	if len(re.FilterOp) > 0 {
		c.errs.add(invalid(field+".filter-op", "not supported: filters apply to the event's own entity"))
	}
	if len(re.OnFieldChange) > 0 {
		c.errs.add(invalid(field+".on-field-change", "not supported: it applies to the event's own entity"))
	}
	c.reg.related = c.entityRules(field, EntityOptions{Expand: re.Expand, LoadOnly: re.LoadOnly}).proj
}

// entityRules compiles one entity's options.
func (c *compiler) entityRules(field string, o EntityOptions) *entityRules {
	outer, outerField := c.rules, c.entity
	rules := &entityRules{}
	c.rules, c.entity = rules, field
	compileObject(c, field, entityFormat[:], &o)
	c.rules, c.entity = outer, outerField
	rules.pack()
	return rules
}

// compileEntity compiles one entity's options without limits, for tests
// and benchmarks of the rules.
func compileEntity(field string, o EntityOptions) (*entityRules, error) {
	c := compiler{errs: &problems{}}
	rules := c.entityRules(field, o)
	return rules, c.errs.err()
}

// compileProjection compiles the expand and load-only of o, without
// limits.
func compileProjection(field string, o EntityOptions) (projection, error) {
	rules, err := compileEntity(field, EntityOptions{Expand: o.Expand, LoadOnly: o.LoadOnly})
	return rules.proj, err
}

// path checks one dot path and splits it; field names it, or field[i]
// when i is not negative.
func (c *compiler) path(field string, i int, s string) (path, bool) {
	if !c.checkPath(field, i, s) {
		return nil, false
	}
	return splitPath(s), true
}

// checkPath checks one dot path, as path does, without splitting it: UTF-8,
// no empty name, and within the limits. It builds the field's name only
// for an error.
func (c *compiler) checkPath(field string, i int, s string) bool {
	var fe *FieldError
	switch {
	case !utf8.ValidString(s):
		fe = notUTF8(field, s)
	case s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, ".."):
		fe = invalid(field, "%q is not a dot path: empty name", clip(s))
	case c.lim == nil:
	case len(s) > c.lim.PathBytes:
		fe = tooLong(field, "", len(s), c.lim.PathBytes)
	case strings.Count(s, ".")+1 > c.lim.PathDepth:
		fe = tooMany(field, strings.Count(s, ".")+1, "names deep", c.lim.PathDepth)
	}
	if fe == nil {
		return true
	}
	if i >= 0 {
		fe.Field = indexed(field, i)
	}
	c.errs.add(fe)
	return false
}

// paths checks a list of dot paths.
func (c *compiler) paths(field string, list []string) bool {
	ok := true
	for i, s := range list {
		ok = c.checkPath(field, i, s) && ok
	}
	return ok
}

func (c *compiler) expand(field string, e *EntityOptions) {
	c.paths(field, e.Expand)
	c.rules.proj.expand = e.Expand
}

func (c *compiler) loadOnly(field string, e *EntityOptions) {
	if len(e.LoadOnly) > 0 && c.paths(field, e.LoadOnly) {
		c.rules.proj.only = loadOnlyTree(e.LoadOnly)
	}
}

func (c *compiler) onFieldChange(field string, e *EntityOptions) {
	list := e.OnFieldChange
	if len(list) == 0 {
		return
	}
	refs := make([]fieldRef, 0, len(list))
	seen := newStringSet(len(list))
	for i, s := range list {
		p, ok := c.path(field, i, s)
		// A path given twice is compared once: an event's cost is bounded
		// by the paths that differ.
		if ok && seen.add(s) {
			refs = append(refs, fieldRef{path: p, key: s})
		}
	}
	c.rules.onChange = refs
}

func (c *compiler) filterOps(field string, e *EntityOptions) {
	for _, p := range sortedKeys(e.FilterOp) {
		if _, ok := e.Filter[p]; !ok {
			c.errs.add(invalid(field+"."+p, "no filter for %q", clip(p)))
		}
	}
}

func (c *compiler) filter(field string, e *EntityOptions) {
	if len(e.Filter) == 0 {
		return
	}
	paths := sortedKeys(e.Filter)
	conds := make([]condition, 0, len(paths))
	for _, p := range paths {
		if cond, ok := c.condition(field+"."+p, p, e.Filter[p], e.FilterOp[p]); ok {
			conds = append(conds, cond)
		}
	}
	// The first condition that the index can file the registration under
	// goes first, where the index looks for it.
	for i := range conds {
		if conds[i].indexable {
			cond := conds[i]
			copy(conds[1:i+1], conds[:i])
			conds[0] = cond
			break
		}
	}
	c.rules.filter = conds
}
