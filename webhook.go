// Package webhook turns a CRM service's data changes into signed, filtered,
// batched webhook requests, with the semantics of Pipeliner CRM's webhooks.
//
// A service registers webhooks in a [Registry], each in the team space of
// its tenant, hands every change to a [Dispatcher] as an [Event], and the
// Dispatcher POSTs the matching, filtered, projected, signed JSON to every
// registration that asked for it:
//
//	reg, err := webhook.NewRegistry(ctx, webhook.RegistryConfig{})
//	...
//	hook, err := reg.Create(ctx, "team-1", webhook.Webhook{
//		URL:       "https://example.com/hooks",
//		Events:    []string{"Account.Create"},
//		Signature: "01234567-abcd-dcba-ffff-000000000000",
//	})
//	...
//	d, err := webhook.NewDispatcher(reg, webhook.Config{})
//	...
//	defer d.Close(ctx)
//	err = d.Dispatch(ctx, webhook.Event{
//		Space: "team-1",
//		Name:  "Account.Create",
//		Data:  json.RawMessage(`{"id":"42","name":"Acme"}`),
//	})
//
// Tenants never meet: every call that reads or changes a registration or
// its deliveries names its space. A [Handler] serves Pipeliner's REST API
// for registrations on top of a Registry.
//
// Delivery is at least once: failed attempts are retried on Standard
// Webhooks' schedule, receivers that answer 410 Gone or keep failing are
// disabled, and every request carries a webhook-id that stays the same
// across retries. Pending deliveries live in a [Queue], which replicas of a
// service can share (the module github.com/crmhook/webhook/postgres has a
// PostgreSQL Queue and [Store]); the default [HTTPTransport] refuses to
// reach loopback, private and other internal addresses (see
// [AddressPolicy]).
//
// Receivers check the signature with [VerifySignature] (Pipeliner's
// WebHook-Signature) or [VerifyStandard] (Standard Webhooks').
package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
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
	// ErrConflict reports a change to a registration that raced another
	// change of it, made through another replica; a Registry retries it.
	ErrConflict = errors.New("webhook: conflicting change")
	// ErrQueueFull reports a Dispatch refused because the Queue holds as
	// many pending deliveries as its bounds allow, in all or for one
	// registration: the call is refused whole, and may be retried later.
	ErrQueueFull = errors.New("webhook: queue full")
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

// FieldErrors is every problem found in one registration, or one request
// body, a *FieldError each, in the order of their fields. It wraps each of
// them: errors.Is(err, ErrInvalid) holds, errors.As with a *FieldError
// finds the first, and errors.As with a FieldErrors finds them all.
type FieldErrors []*FieldError

// Error joins the errors' messages with "; ".
func (e FieldErrors) Error() string {
	var b strings.Builder
	for i, fe := range e {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(fe.Error())
	}
	return b.String()
}

// Unwrap returns the field errors, for errors.Is and errors.As.
func (e FieldErrors) Unwrap() []error {
	errs := make([]error, len(e))
	for i, fe := range e {
		errs[i] = fe
	}
	return errs
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

// Patch is a change to a registration: the fields it sets, each nil to
// keep its value. Its JSON form is the body of Pipeliner's PATCH (and of a
// create): url, events, options, insecure_ssl and signature. The fields a
// client must never set (id, created, modified, disabled, and Pipeliner's
// is_delete_protected, is_deleted, application and client) are ignored.
type Patch struct {
	URL         *string
	Events      *[]string
	Options     *Options
	InsecureSSL *bool
	Signature   *string // "" removes the signature
}

// Change is one change of a batch (Registry.Apply): a new registration
// when ID is "", otherwise an update of the registration ID or, with
// Delete, its deletion.
type Change struct {
	ID     string
	Delete bool
	Patch  Patch // for a new registration, it must give URL and Events
}

// ChangeResult is what became of one Change: the registration as stored
// (only its ID and Space after a Delete), or why it was refused.
type ChangeResult struct {
	Webhook Webhook
	Err     error
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
