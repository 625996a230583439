package webhook

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
)

// decodePatchBody reads a create, update or batch-modify item body into a
// Patch: url, events, options, insecure_ssl and signature, each left nil
// when absent or null. Every other field is ignored, among them the ones a
// client must never set (id, created, modified, disabled,
// is_delete_protected, is_deleted, application, client). A field of the
// wrong JSON type, or options that do not decode, is one of typeErrs,
// sorted by field, and stays nil; the others decode all the same. err is
// set only when b is not a JSON object.
func decodePatchBody(b []byte) (p Patch, typeErrs FieldErrors, err error) {
	members, err := objectFields("webhook", b)
	if err != nil || members == nil {
		return Patch{}, nil, errors.New("webhook: the body is not a JSON object")
	}
	for _, k := range sortedKeys(members) {
		v := members[k]
		if isNull(v) {
			continue
		}
		var fe *FieldError
		switch k {
		case "url":
			p.URL, fe = decodeMember[string](k, v, "a string")
		case "events":
			p.Events, fe = decodeMember[[]string](k, v, "a list of strings")
		case "insecure_ssl":
			p.InsecureSSL, fe = decodeMember[bool](k, v, "a boolean")
		case "signature":
			p.Signature, fe = decodeMember[string](k, v, "a string")
		case "options":
			var o Options
			if err := decodeOptions(v, &o); err != nil {
				typeErrs = append(typeErrs, fieldErrorsOf(err)...)
				if !errors.Is(err, ErrInvalid) {
					typeErrs = append(typeErrs, invalid(k, "want an options object"))
				}
				continue
			}
			p.Options = &o
		}
		if fe != nil {
			typeErrs = append(typeErrs, fe)
		}
	}
	slices.SortStableFunc(typeErrs, func(a, b *FieldError) int { return strings.Compare(a.Field, b.Field) })
	return p, typeErrs, nil
}

// decodeMember decodes one member's value into a new T. Its error never
// repeats the value, which may be a secret.
func decodeMember[T any](field string, v json.RawMessage, want string) (*T, *FieldError) {
	var x T
	if err := json.Unmarshal(v, &x); err != nil {
		return nil, invalid(field, "want %s", want)
	}
	return &x, nil
}
