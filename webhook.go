// Package webhook turns a CRM service's data changes into signed, filtered,
// batched webhook requests, with the semantics of Pipeliner CRM's webhooks.
//
// A service registers webhooks in a [Registry], hands every change to a
// [Dispatcher] as an [Event], and the Dispatcher POSTs the matching,
// filtered, projected, signed JSON to every registration that asked for it:
//
//	reg := webhook.NewRegistry()
//	hook, err := reg.Create(ctx, webhook.Webhook{
//		URL:       "https://example.com/hooks",
//		Events:    []string{"Account.Create"},
//		Signature: "01234567-abcd-dcba-ffff-000000000000",
//	})
//	...
//	d, err := webhook.NewDispatcher(reg, webhook.Config{})
//	...
//	defer d.Close(ctx)
//	err = d.Dispatch(ctx, webhook.Event{
//		Name: "Account.Create",
//		Data: json.RawMessage(`{"id":"42","name":"Acme"}`),
//	})
//
// Delivery is at least once: failed attempts are retried on Standard
// Webhooks' schedule, receivers that answer 410 Gone or keep failing are
// disabled, and every request carries a webhook-id that stays the same
// across retries. Pending deliveries live in a [Queue]; the default
// [HTTPTransport] refuses to reach loopback, private and other internal
// addresses (see [AddressPolicy]).
//
// Receivers check the signature with [VerifySignature] (Pipeliner's
// WebHook-Signature) or [VerifyStandard] (Standard Webhooks').
package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"time"
	"unsafe"

	"github.com/tidwall/gjson"
)

// Errors returned by this package. Validation errors are *[FieldError]
// values that wrap ErrInvalid; check them with errors.Is and errors.As.
var (
	// ErrInvalid reports a registration, an option or an event that breaks
	// a rule.
	ErrInvalid = errors.New("webhook: invalid")
	// ErrNotFound reports an id that names no registration, or no dead
	// delivery to redeliver.
	ErrNotFound = errors.New("webhook: not found")
	// ErrClosed reports a Dispatch on a Dispatcher that is closing or closed.
	ErrClosed = errors.New("webhook: dispatcher closed")
	// ErrSignature reports a signature header that is missing, does not
	// match the body, or (Standard Webhooks) carries a timestamp outside
	// the tolerance.
	ErrSignature = errors.New("webhook: signature mismatch")
	// ErrRefusedAddress reports a receiver address that the AddressPolicy
	// refuses: loopback, private, link-local and the like.
	ErrRefusedAddress = errors.New("webhook: refused address")
	// ErrTooLarge reports a record whose item alone exceeds the largest
	// request body a Dispatcher sends.
	ErrTooLarge = errors.New("webhook: too large")
)

// Header names of a webhook request and of the API request behind a change.
const (
	// HeaderSignature carries the lowercase hex HMAC-SHA256 of the body,
	// keyed with the registration's signature.
	HeaderSignature = "WebHook-Signature"
	// HeaderID carries the delivery's id, the same across its retries, so
	// that receivers can drop duplicates (Standard Webhooks).
	HeaderID = "webhook-id"
	// HeaderTimestamp carries the unix seconds of the attempt (Standard
	// Webhooks).
	HeaderTimestamp = "webhook-timestamp"
	// HeaderSkipKey is the header of an API request whose value a host
	// copies into Event.SkipKey, so that registrations listing it in
	// skip_keys do not fire.
	HeaderSkipKey = "Webhook-Skip-Key"
)

// FieldError is a validation error: Field names what is wrong, in the JSON
// shape of Pipeliner's API ("options.chunk_size", "events[1]"), and Reason
// says why. It wraps ErrInvalid. Hosts that serve Pipeliner's REST API can
// turn it into a field_errors entry.
type FieldError struct {
	Field  string
	Reason string
	cause  error // a sentinel besides ErrInvalid, such as ErrRefusedAddress
}

// Error returns "webhook: invalid <field>: <reason>".
func (e *FieldError) Error() string {
	return "webhook: invalid " + e.Field + ": " + e.Reason
}

// Unwrap returns ErrInvalid, and the cause where there is one, such as
// ErrRefusedAddress for a url.
func (e *FieldError) Unwrap() []error {
	if e.cause != nil {
		return []error{ErrInvalid, e.cause}
	}
	return []error{ErrInvalid}
}

func invalid(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Webhook is a registration, JSON-compatible with Pipeliner's Webhook
// entity: id, url, events, options, insecure_ssl, signature, created and
// modified, with times as "2019-01-01T00:00:00" in UTC.
//
// Space is not part of the JSON: in Pipeliner the team space is the URL of
// the API call, never the body, so a client cannot move a registration to
// another tenant by writing a field. The host sets it.
//
// A Webhook is a plain value: the Registry stores and returns copies of its
// own, so a caller may change what it passed in or got back.
type Webhook struct {
	ID          string
	Space       string // team space (tenant) it belongs to; "" is the default space
	URL         string
	Events      []string
	Options     Options
	InsecureSSL bool
	Signature   string
	Created     time.Time
	Modified    time.Time
	// Disabled is set when a Dispatcher gave up on the receiver: it
	// answered 410 Gone, or it failed for too long. A disabled registration
	// stays in the Registry and matches nothing; Update enables it again.
	// Create keeps it, so that a host restores what it persisted.
	Disabled *Disabled
}

// Disabled says when and why a registration was disabled.
type Disabled struct {
	At     time.Time
	Reason string
}

// Options modify what a registration fires on and what it sends. Its JSON
// form is the options object of Pipeliner's documentation; see README.md
// for every option. The zero value means no filter, no projection, chunks of
// 100 and no delay.
type Options struct {
	// Entity holds the options of the event's main record, by entity name
	// ("Contact"), or by API name for custom entities.
	Entity map[string]EntityOptions `json:"entity,omitempty"`
	// RelatedEntity shapes the event's secondary record (Event.Related)
	// with expand and load-only; filters do not apply to it.
	RelatedEntity *EntityOptions `json:"related_entity,omitempty"`
	// SkipKeys are the Webhook-Skip-Key values whose changes never fire
	// this registration.
	SkipKeys []string `json:"skip_keys,omitempty"`
	// ChunkSize is the most items one request carries, 1 to 100; 0 means 100.
	ChunkSize int `json:"chunk_size,omitempty"`
	// ChunkDelay is in seconds: chunk N is sent no sooner than
	// N*ChunkDelay after the Dispatch call.
	ChunkDelay int `json:"chunk_delay,omitempty"`
	// CustomEntityAPIName narrows CustomEntity.* events to these custom
	// entities; empty means all of them.
	CustomEntityAPIName []string `json:"custom_entity_api_name,omitempty"`
}

// EntityOptions are the options of one entity. In JSON, LoadOnly is
// "load-only"; "load_only" is accepted too, as the documentation spells it
// both ways.
type EntityOptions struct {
	// Expand lists relations the host's Expander loads into the record.
	Expand []string `json:"expand,omitempty"`
	// LoadOnly lists the dot paths the record is cut down to.
	LoadOnly []string `json:"load-only,omitempty"`
	// Filter maps a dot path to a JSON value or a list of values.
	Filter map[string]json.RawMessage `json:"filter,omitempty"`
	// FilterOp maps a path of Filter to its operator; "eq" when absent.
	FilterOp map[string]string `json:"filter-op,omitempty"`
	// OnFieldChange lists paths; an Update fires only if one of them changed.
	OnFieldChange []string `json:"on-field-change,omitempty"`
}

// Event is one data change that a host hands to a Dispatcher or a Matcher.
// Neither keeps the caller's buffers: Dispatch copies what it delivers
// later, so a caller may reuse Data, Previous and Related once it returns.
type Event struct {
	ID            string          // unique; assigned by Dispatch when empty
	Space         string          // team space of the change
	Name          string          // "Opportunity.Update"
	CustomEntity  string          // API name of the custom entity type, for CustomEntity.* events
	Data          json.RawMessage // the record after the change (the deleted record for Delete)
	Previous      json.RawMessage // the record before an Update; on-field-change compares the two
	Related       json.RawMessage // the secondary record (document, comment, ...), if any
	RelatedEntity string          // its entity type ("CloudObject", ...), for the Expander
	SkipKey       string          // the Webhook-Skip-Key header of the API request behind the change
	Time          time.Time       // when it happened; Dispatch uses now when zero
}

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
