package webhook

import (
	"net/url"
	"slices"
	"strings"

	"github.com/tidwall/gjson"
)

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
// compile takes no lock but the catalogue's read lock: a Registry compiles
// before it takes its write lock, which it holds for the swap only.
func (r *Registry) compile(w Webhook, trusted bool) (*registration, error) {
	var errs problems
	var lim *Limits
	if !trusted {
		l := r.limits.withDefaults()
		lim = &l
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
	if err := r.Addresses.CheckURL(s); err != nil {
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
	r.mu.RLock()
	defer r.mu.RUnlock()
	for i, name := range events {
		if !r.events[name] {
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
