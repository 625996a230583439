package webhook

import (
	"errors"

	"github.com/tidwall/gjson"
)

// decodePatchBody reads a create, update or batch-modify item body into a
// Patch (see Patch.UnmarshalJSON): the fields of the wrong type are
// typeErrs, sorted by field, and stay nil; the others decode all the same.
// err is set only when b, which its callers read as valid JSON, is not an
// object, which is no registration's body at all.
func decodePatchBody(b []byte) (p Patch, typeErrs FieldErrors, err error) {
	if !gjson.ParseBytes(b).IsObject() {
		return Patch{}, nil, errors.New("webhook: the body is not a JSON object")
	}
	if err := p.UnmarshalJSON(b); err != nil {
		return p, fieldErrorsOf(err), nil
	}
	return p, nil, nil
}
