package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/tidwall/gjson"
)

// The options object and the JSON of a registration: decoding, encoding,
// validation and compiling.

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

// UnmarshalJSON reads Pipeliner's shape. Fields Pipeliner has and this
// package does not model (is_deleted, client_id, ...) are ignored; a field
// of the wrong JSON type is a *FieldError.
func (w *Webhook) UnmarshalJSON(b []byte) error {
	var j webhookJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return jsonFieldError(err)
	}
	var opts Options
	if len(j.Options) > 0 {
		if err := decodeOptions(j.Options, &opts); err != nil {
			return err
		}
	}
	created, err := parseTime("created", j.Created)
	if err != nil {
		return err
	}
	modified, err := parseTime("modified", j.Modified)
	if err != nil {
		return err
	}
	*w = Webhook{ID: j.ID, Space: w.Space, URL: j.URL, Events: j.Events, Options: opts,
		InsecureSSL: j.InsecureSSL, Signature: j.Signature, Created: created, Modified: modified}
	if j.Disabled != nil {
		at, err := parseTime("disabled.at", j.Disabled.At)
		if err != nil {
			return err
		}
		w.Disabled = &Disabled{At: at, Reason: j.Disabled.Reason}
	}
	return nil
}

// parseTime reads Pipeliner's zoneless UTC times, and RFC 3339 times for
// clients that add a zone.
func parseTime(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(timeLayout, s)
	if err != nil {
		if t, err = time.Parse(time.RFC3339Nano, s); err != nil {
			return time.Time{}, invalid(field, "%q is not a time like 2019-01-01T00:00:00", s)
		}
	}
	return t.UTC(), nil
}

// jsonFieldError turns encoding/json's type errors into a *FieldError.
func jsonFieldError(err error) error {
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) {
		return err
	}
	field, want := te.Field, "an object"
	if field == "" {
		field = "webhook"
	}
	switch te.Type.Kind() {
	case reflect.String:
		want = "a string"
	case reflect.Bool:
		want = "a boolean"
	case reflect.Slice:
		want = "a list"
	}
	return invalid(field, "want %s, got %s", want, te.Value)
}

// UnmarshalJSON reads the documented options object. Keys it does not know
// are refused rather than ignored: a misspelt "filter" that were ignored
// would send every record to the receiver.
func (o *Options) UnmarshalJSON(b []byte) error { return decodeOptions(b, o) }

// UnmarshalJSON reads one entity's options, with "load-only" or "load_only".
func (e *EntityOptions) UnmarshalJSON(b []byte) error {
	return decodeEntityOptions("entity options", b, e)
}

func decodeOptions(b []byte, o *Options) error {
	const field = "options"
	fields, err := objectFields(field, b)
	if err != nil || fields == nil {
		*o = Options{}
		return err
	}
	var out Options
	for _, k := range sortedKeys(fields) {
		v, f := fields[k], field+"."+k
		switch k {
		case "entity":
			ents, err := objectFields(f, v)
			if err != nil {
				return err
			}
			for _, name := range sortedKeys(ents) {
				var eo EntityOptions
				if err := decodeEntityOptions(f+"."+name, ents[name], &eo); err != nil {
					return err
				}
				if out.Entity == nil {
					out.Entity = make(map[string]EntityOptions, len(ents))
				}
				out.Entity[name] = eo
			}
		case "related_entity":
			if isNull(v) {
				continue
			}
			var eo EntityOptions
			if err := decodeEntityOptions(f, v, &eo); err != nil {
				return err
			}
			out.RelatedEntity = &eo
		case "skip_keys":
			err = decodeStrings(f, v, &out.SkipKeys)
		case "custom_entity_api_name":
			err = decodeStrings(f, v, &out.CustomEntityAPIName)
		case "chunk_size":
			err = decodeInt(f, v, &out.ChunkSize)
		case "chunk_delay":
			err = decodeInt(f, v, &out.ChunkDelay)
		default:
			return invalid(f, "unknown option")
		}
		if err != nil {
			return err
		}
	}
	*o = out
	return nil
}

func decodeEntityOptions(field string, b []byte, e *EntityOptions) error {
	fields, err := objectFields(field, b)
	if err != nil || fields == nil {
		*e = EntityOptions{}
		return err
	}
	_, dash := fields["load-only"]
	_, under := fields["load_only"]
	if dash && under {
		return invalid(field, "both load-only and load_only; give one")
	}
	var out EntityOptions
	for _, k := range sortedKeys(fields) {
		v, f := fields[k], field+"."+k
		switch k {
		case "expand":
			err = decodeStrings(f, v, &out.Expand)
		case "load-only", "load_only":
			err = decodeStrings(f, v, &out.LoadOnly)
		case "on-field-change":
			err = decodeStrings(f, v, &out.OnFieldChange)
		case "filter":
			var m map[string]json.RawMessage
			if m, err = objectFields(f, v); err == nil && len(m) > 0 {
				out.Filter = m
				for k, raw := range m {
					m[k] = compact(raw)
				}
			}
		case "filter-op":
			var m map[string]json.RawMessage
			if m, err = objectFields(f, v); err == nil && len(m) > 0 {
				out.FilterOp = make(map[string]string, len(m))
				for _, path := range sortedKeys(m) {
					var op string
					if err := json.Unmarshal(m[path], &op); err != nil {
						return invalid(f+"."+path, "want an operator name, got %s", m[path])
					}
					out.FilterOp[path] = op
				}
			}
		default:
			return invalid(f, "unknown option")
		}
		if err != nil {
			return err
		}
	}
	*e = out
	return nil
}

// objectFields splits a JSON object into its fields; null gives nil.
func objectFields(field string, b []byte) (map[string]json.RawMessage, error) {
	if isNull(b) {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, invalid(field, "want an object, got %s", shorten(b))
	}
	if m == nil {
		m = map[string]json.RawMessage{}
	}
	return m, nil
}

func decodeStrings(field string, b []byte, dst *[]string) error {
	if isNull(b) {
		return nil
	}
	var s []string
	if err := json.Unmarshal(b, &s); err != nil {
		return invalid(field, "want a list of strings, got %s", shorten(b))
	}
	*dst = s
	return nil
}

func decodeInt(field string, b []byte, dst *int) error {
	if isNull(b) {
		return nil
	}
	n, err := strconv.Atoi(string(bytes.TrimSpace(b)))
	if err != nil {
		return invalid(field, "want a whole number, got %s", shorten(b))
	}
	*dst = n
	return nil
}

func isNull(b []byte) bool { return string(bytes.TrimSpace(b)) == "null" }

func compact(b json.RawMessage) json.RawMessage {
	var buf bytes.Buffer
	if json.Compact(&buf, b) != nil {
		return b
	}
	return buf.Bytes()
}

// shorten keeps error messages readable when a client sends a large value.
func shorten(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > 40 {
		return string(b[:37]) + "..."
	}
	return string(b)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// encodeOptions returns o as a Registry keeps it: as json.Marshal writes
// it, so that its filter values are what a round trip through JSON gives
// back (compact, <, >, & and U+2028 escaped), and a stored registration
// marshals and unmarshals to itself.
func encodeOptions(o Options) (string, error) {
	b, err := json.Marshal(o)
	return string(b), err
}

// viewOptions reads options that encodeOptions wrote, without copying:
// its strings and filter values point into s, so that rules compiled from
// it keep nothing but s. The filter values must only be read.
func viewOptions(s string) Options {
	var o Options
	gjson.Parse(s).ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "entity":
			o.Entity = map[string]EntityOptions{}
			v.ForEach(func(name, e gjson.Result) bool {
				o.Entity[name.Str] = viewEntityOptions(e)
				return true
			})
		case "related_entity":
			e := viewEntityOptions(v)
			o.RelatedEntity = &e
		case "skip_keys":
			o.SkipKeys = viewStrings(v)
		case "custom_entity_api_name":
			o.CustomEntityAPIName = viewStrings(v)
		case "chunk_size":
			o.ChunkSize = int(v.Int())
		case "chunk_delay":
			o.ChunkDelay = int(v.Int())
		}
		return true
	})
	return o
}

func viewEntityOptions(v gjson.Result) EntityOptions {
	var e EntityOptions
	v.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "expand":
			e.Expand = viewStrings(v)
		case "load-only":
			e.LoadOnly = viewStrings(v)
		case "on-field-change":
			e.OnFieldChange = viewStrings(v)
		case "filter":
			e.Filter = map[string]json.RawMessage{}
			v.ForEach(func(path, x gjson.Result) bool {
				e.Filter[path.Str] = unsafe.Slice(unsafe.StringData(x.Raw), len(x.Raw))
				return true
			})
		case "filter-op":
			e.FilterOp = map[string]string{}
			v.ForEach(func(path, op gjson.Result) bool {
				e.FilterOp[path.Str] = op.Str
				return true
			})
		}
		return true
	})
	return e
}

func viewStrings(v gjson.Result) []string {
	list := v.Array()
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = s.Str
	}
	return out
}

const maxChunkSize = 100

// check validates what compileOptions does not: the URL, the signature
// and the events.
func (r *Registry) check(w Webhook) error {
	if err := checkURL(w.URL); err != nil {
		return err
	}
	if err := r.addresses.CheckURL(w.URL); err != nil {
		fe := invalid("url", "%s", strings.TrimPrefix(err.Error(), "webhook: "))
		fe.cause = err
		return fe
	}
	if w.Signature != "" && !isUUID(w.Signature) {
		return invalid("signature", "%q is not a UUID", w.Signature)
	}
	return r.checkEvents(w.Events)
}

// compile validates w and builds its compiled form, which keeps nothing of
// the caller's but strings.
func (r *Registry) compile(w Webhook, trusted bool) (*registration, error) {
	if !trusted {
		if err := r.check(w); err != nil {
			return nil, err
		}
	}
	// The options are compiled twice: as the caller wrote them, so that
	// errors name what the caller wrote and strings that JSON would change
	// (not UTF-8) are refused, and from the JSON the registration keeps,
	// so that the compiled rules point into it and nowhere else.
	if err := new(registration).compileOptions(w.Options); err != nil {
		return nil, err
	}
	opts, err := encodeOptions(w.Options)
	if err != nil {
		return nil, invalid("options", "%v", err)
	}
	reg := &registration{hook: w, shared: &shared{options: opts}}
	reg.hook.Options = Options{}
	reg.hook.Events = slices.Clone(w.Events)
	if w.Disabled != nil {
		dis := *w.Disabled
		reg.hook.Disabled = &dis
	}
	if err := reg.compileOptions(viewOptions(opts)); err != nil {
		return nil, err
	}
	return reg, nil
}

// compileOptions validates o and compiles it into reg; it is the only
// place where options are parsed. Since the rules point into o, o must
// not change while reg is in use.
func (reg *registration) compileOptions(o Options) error {
	reg.chunkSize, reg.chunkDelay = o.ChunkSize, time.Duration(o.ChunkDelay)*time.Second
	switch {
	case o.ChunkSize < 0 || o.ChunkSize > maxChunkSize:
		return invalid("options.chunk_size", "%d is not between 1 and %d (0 means %[2]d)", o.ChunkSize, maxChunkSize)
	case o.ChunkSize == 0:
		reg.chunkSize = maxChunkSize
	}
	if o.ChunkDelay < 0 {
		return invalid("options.chunk_delay", "%d is negative", o.ChunkDelay)
	}
	var err error
	if reg.skipKeys, err = nonEmpty("options.skip_keys", o.SkipKeys); err != nil {
		return err
	}
	if reg.custom, err = nonEmpty("options.custom_entity_api_name", o.CustomEntityAPIName); err != nil {
		return err
	}
	if len(o.Entity) > 0 {
		reg.rules = make([]entityRules, len(o.Entity))
	}
	names := sortedKeys(o.Entity)
	for i, name := range names {
		if !utf8.ValidString(name) {
			return notUTF8("options.entity", name)
		}
		// Entities with the same options share their compiled rules, which
		// never change: a registration often filters all its entities alike.
		same := func(other string) bool { return reflect.DeepEqual(o.Entity[other], o.Entity[name]) }
		if j := slices.IndexFunc(names[:i], same); j >= 0 {
			reg.rules[i] = reg.rules[j]
		} else {
			rules, err := compileEntity("options.entity."+name, o.Entity[name])
			if err != nil {
				return err
			}
			reg.rules[i] = *rules
		}
		reg.rules[i].entity = name
	}
	for i := range reg.rules {
		if rules := &reg.rules[i]; len(rules.proj.expand) > 0 || rules.proj.only != nil {
			if reg.entities == nil {
				reg.entities = map[string]*entityRules{}
			}
			reg.entities[rules.entity] = rules
		}
	}
	if re := o.RelatedEntity; re != nil {
		const f = "options.related_entity"
		switch {
		case len(re.Filter) > 0:
			return invalid(f+".filter", "not supported: filters apply to the event's own entity")
		case len(re.FilterOp) > 0:
			return invalid(f+".filter-op", "not supported: filters apply to the event's own entity")
		case len(re.OnFieldChange) > 0:
			return invalid(f+".on-field-change", "not supported: it applies to the event's own entity")
		}
		if reg.related, err = compileProjection(f, *re); err != nil {
			return err
		}
	}
	return nil
}

// checkEvents refuses an empty list and names not in the catalogue.
func (r *Registry) checkEvents(events []string) error {
	if len(events) == 0 {
		return invalid("events", "empty; give at least one event name")
	}
	for i, name := range events {
		if !r.events[name] {
			return invalid(fmt.Sprintf("events[%d]", i), "%q is not in the event catalogue", name)
		}
	}
	return nil
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return invalid("url", "%q is not a URL: %v", s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return invalid("url", "%q is not an absolute http or https URL", s)
	}
	return nil
}

func nonEmpty(field string, list []string) ([]string, error) {
	for i, s := range list {
		switch {
		case s == "":
			return nil, invalid(fmt.Sprintf("%s[%d]", field, i), "empty")
		case !utf8.ValidString(s):
			return nil, notUTF8(fmt.Sprintf("%s[%d]", field, i), s)
		}
	}
	return list, nil
}

// notUTF8 refuses a string of the options that is not UTF-8: a Registry
// keeps options as JSON, which cannot hold it.
func notUTF8(field, s string) error {
	return invalid(field, "%q is not UTF-8", s)
}
