package webhook

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"
)

// TestOptionsFormatNamesAreTheStructTags holds the one description of the
// options format (optionsFormat, entityFormat) and the struct tags that
// encodeOptions (json.Marshal) writes by together: every field has its
// option, of the kind of its Go type, under the name of its tag.
func TestOptionsFormatNamesAreTheStructTags(t *testing.T) {
	check := func(t *testing.T, typ reflect.Type, names []string, kinds []optionKind) {
		t.Helper()
		require.Equal(t, typ.NumField(), len(names), "an option for each field of %s", typ)
		for i := range typ.NumField() {
			f := typ.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			require.Equal(t, tag, names[i], "field %s", f.Name)
			want := map[reflect.Kind][]optionKind{
				reflect.Slice: {namesKind, pathsKind}, reflect.Int: {numberKind},
				reflect.Pointer: {entityKind}, reflect.Map: {entitiesKind, filterKind, operatorsKind},
			}[f.Type.Kind()]
			require.Contains(t, want, kinds[i], "field %s", f.Name)
		}
	}
	var names []string
	var kinds []optionKind
	for _, o := range optionsFormat {
		names, kinds = append(names, o.name), append(kinds, o.kind)
	}
	check(t, reflect.TypeFor[Options](), names, kinds)
	names, kinds = nil, nil
	for _, o := range entityFormat {
		names, kinds = append(names, o.name), append(kinds, o.kind)
	}
	check(t, reflect.TypeFor[EntityOptions](), names, kinds)
}

// TestEveryOptionDecodesAndReadsBackTheSame sets each option of the format
// alone, and checks that decoding its JSON, and reading the JSON a
// Registry stores, give it back.
func TestEveryOptionDecodesAndReadsBackTheSame(t *testing.T) {
	tests := []struct {
		json string
		want Options
	}{
		{`{"entity":{"Contact":{"expand":["owner"]}}}`, Options{Entity: map[string]EntityOptions{"Contact": {Expand: []string{"owner"}}}}},
		{`{"entity":{"Contact":{"load-only":["id","owner.name"]}}}`, Options{Entity: map[string]EntityOptions{"Contact": {LoadOnly: []string{"id", "owner.name"}}}}},
		{`{"entity":{"Contact":{"filter":{"email1":["a@x.com", "b@x.com"]}}}}`, Options{Entity: map[string]EntityOptions{"Contact": {Filter: map[string]json.RawMessage{"email1": json.RawMessage(`["a@x.com","b@x.com"]`)}}}}},
		{`{"entity":{"Contact":{"filter":{"n":1},"filter-op":{"n":"gt"}}}}`, Options{Entity: map[string]EntityOptions{"Contact": {Filter: map[string]json.RawMessage{"n": json.RawMessage(`1`)}, FilterOp: map[string]string{"n": "gt"}}}}},
		{`{"entity":{"Contact":{"on-field-change":["email1"]}}}`, Options{Entity: map[string]EntityOptions{"Contact": {OnFieldChange: []string{"email1"}}}}},
		{`{"related_entity":{"load-only":["id"]}}`, Options{RelatedEntity: &EntityOptions{LoadOnly: []string{"id"}}}},
		{`{"skip_keys":["sync"]}`, Options{SkipKeys: []string{"sync"}}},
		{`{"chunk_size":7}`, Options{ChunkSize: 7}},
		{`{"chunk_delay":60}`, Options{ChunkDelay: 60}},
		{`{"custom_entity_api_name":["CE_A"]}`, Options{CustomEntityAPIName: []string{"CE_A"}}},
	}
	covered := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.json, func(t *testing.T) {
			var got Options
			require.NoError(t, json.Unmarshal([]byte(tt.json), &got))
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Fatalf("decoded (-want +got):\n%s", d)
			}
			stored, err := encodeOptions(got)
			require.NoError(t, err)
			require.JSONEq(t, tt.json, stored)
			if d := cmp.Diff(tt.want, viewOptions(stored)); d != "" {
				t.Fatalf("read from the stored JSON (-want +got):\n%s", d)
			}
			gjson.Parse(stored).ForEach(func(k, v gjson.Result) bool {
				covered[k.Str] = true
				v.Get("Contact").ForEach(func(k, _ gjson.Result) bool {
					covered[k.Str] = true
					return true
				})
				return true
			})
		})
	}
	for _, o := range optionsFormat {
		require.True(t, covered[o.name], o.name)
	}
	for _, o := range entityFormat {
		require.True(t, covered[o.name], o.name)
	}
}

// fieldsOf returns the fields of an error's FieldErrors, in order.
func fieldsOf(t *testing.T, err error) []string {
	t.Helper()
	var fes FieldErrors
	require.ErrorAs(t, err, &fes, "%v", err)
	require.ErrorIs(t, err, ErrInvalid)
	var fe *FieldError
	require.ErrorAs(t, err, &fe)
	require.Same(t, fes[0], fe, "errors.As finds the first")
	fields := make([]string, len(fes))
	for i, fe := range fes {
		fields[i] = fe.Field
	}
	return fields
}

// TestValidationReportsEveryProblem is finding 8: a registration with
// several mistakes got one field error, the first. It gets one for each
// now, in the order of their fields.
func TestValidationReportsEveryProblem(t *testing.T) {
	r := newTestRegistry()
	w := Webhook{
		ID: "42", URL: "ftp://example.com/hooks", Events: []string{"Account.Create", "Account.Explode", "Nope.Nope", "Contact.Create", "Account.Bang", "A.B", "C.D", "E.F", "G.H", "I.J", "K.L"},
		Signature: "my-secret",
		Options: Options{
			ChunkSize: 101, ChunkDelay: -1, SkipKeys: []string{"", "ok"},
			Entity: map[string]EntityOptions{
				"Contact": {
					LoadOnly: []string{"id", "a..b"}, Expand: []string{""},
					Filter:   map[string]json.RawMessage{"email1": json.RawMessage(`{"a":1}`), "value": json.RawMessage(`[1]`), "ok": json.RawMessage(`1`)},
					FilterOp: map[string]string{"value": "between", "ok": "like", "gone": "eq"},
				},
			},
			RelatedEntity: &EntityOptions{OnFieldChange: []string{"x"}, LoadOnly: []string{".id"}},
		},
	}
	want := []string{
		"events[1]", "events[2]", "events[4]", "events[5]", "events[6]", "events[7]", "events[8]", "events[9]", "events[10]",
		"id",
		"options.chunk_delay", "options.chunk_size",
		"options.entity.Contact.expand[0]",
		"options.entity.Contact.filter-op.gone", "options.entity.Contact.filter-op.ok",
		"options.entity.Contact.filter.email1", "options.entity.Contact.filter.value",
		"options.entity.Contact.load-only[1]",
		"options.related_entity.load-only[0]", "options.related_entity.on-field-change",
		"options.skip_keys[0]",
		"signature", "url",
	}
	_, err := create(r, w)
	if d := cmp.Diff(want, fieldsOf(t, err)); d != "" {
		t.Fatalf("fields (-want +got):\n%s", d)
	}
	require.ErrorContains(t, err, `webhook: invalid events[1]: "Account.Explode" is not in the event catalogue; webhook: invalid events[2]:`)
	require.Empty(t, mustList(t, r))
	require.Equal(t, err, r.check(w), "check validates as Create does")
	require.Empty(t, mustList(t, r), "and stores nothing")

	// The address policy's refusal is one of them, with its sentinel.
	w = Webhook{URL: "http://127.0.0.2/hooks", Events: nil}
	err = newRegistry(RegistryConfig{}).check(w)
	require.Equal(t, []string{"events", "url"}, fieldsOf(t, err))
	require.ErrorIs(t, err, ErrRefusedAddress)
	require.NoError(t, r.check(validWebhook()))
}

// TestEntitiesAlikeReportTheirErrorsEach: entities with the same options
// share their compiled rules, but not their mistakes: each is named.
func TestEntitiesAlikeReportTheirErrorsEach(t *testing.T) {
	bad := EntityOptions{LoadOnly: []string{"a..b"}}
	w := validWebhook()
	w.Options.Entity = map[string]EntityOptions{"Account": bad, "Contact": bad}
	_, err := create(newTestRegistry(), w)
	require.Equal(t, []string{"options.entity.Account.load-only[0]", "options.entity.Contact.load-only[0]"}, fieldsOf(t, err))
}

// TestTrustedCompileSkipsCatalogueLimitsAndAddresses: a registration
// another replica stored compiles whatever this replica's catalogue,
// limits and address policy say, and what it needs is still checked.
func TestTrustedCompileSkipsCatalogueLimitsAndAddresses(t *testing.T) {
	r := newRegistry(RegistryConfig{}) // loopback refused
	r.limits.SkipKeys = 1
	w := Webhook{URL: "http://127.0.0.1:9/hooks", Events: []string{"Invoice.Paid"},
		Options: Options{SkipKeys: []string{"a", "b"}, ChunkDelay: 1 << 40}}
	_, err := r.compile(w, false)
	require.Equal(t, []string{"events[0]", "options.chunk_delay", "options.skip_keys", "url"}, fieldsOf(t, err))
	reg, err := r.compile(w, true)
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b"}, reg.skipKeys)

	w.Signature, w.Options.ChunkSize, w.URL = "secret", 101, "/relative"
	_, err = r.compile(w, true)
	require.Equal(t, []string{"options.chunk_size", "signature", "url"}, fieldsOf(t, err))
}

// manyMistakes is a body with a dozen fields of the wrong type.
const manyMistakes = `{"id": 7, "url": 5, "events": ["Account.Create"], "insecure_ssl": "yes", "signature": "01234567-abcd-dcba-ffff-000000000000",
		"created": "26/11/2026", "is_deleted": "whatever",
		"options": {"chunk_size": "100", "chunk_delay": 30, "skip_keys": "sync", "custom_entity_api_name": ["CE", 1], "chunkSize": 1,
			"entity": {"Contact": {"load-only": "id", "expand": ["owner"], "filter": {"a": [1, 2]}, "filter-op": {"a": 1, "b": "eq"}, "filters": {}},
			           "Account": [], "Task": {"on-field-change": ["name"], "load_only": ["id"], "load-only": ["x"]}},
			"related_entity": 3}}`

// TestDecodingReportsEveryProblem is finding 8 for bodies: every field of
// the wrong type is a field error, the fields that failed are left empty,
// and the others are decoded.
func TestDecodingReportsEveryProblem(t *testing.T) {
	body := manyMistakes
	wantOptions := Options{ChunkDelay: 30, Entity: map[string]EntityOptions{
		"Contact": {Expand: []string{"owner"}, Filter: map[string]json.RawMessage{"a": json.RawMessage(`[1,2]`)}, FilterOp: map[string]string{"b": "eq"}},
		"Task":    {OnFieldChange: []string{"name"}, LoadOnly: []string{"x"}},
	}}
	optionErrors := []string{
		"options.chunkSize", "options.chunk_size", "options.custom_entity_api_name",
		"options.entity.Account", "options.entity.Contact.filter-op.a", "options.entity.Contact.filters",
		"options.entity.Contact.load-only", "options.entity.Task",
		"options.related_entity", "options.skip_keys",
	}

	t.Run("a Webhook", func(t *testing.T) {
		w := Webhook{Space: "team-1"}
		err := json.Unmarshal([]byte(body), &w)
		want := append([]string{"created", "id", "insecure_ssl"}, optionErrors...)
		want = append(want, "url")
		if d := cmp.Diff(want, fieldsOf(t, err)); d != "" {
			t.Fatalf("fields (-want +got):\n%s", d)
		}
		wantHook := Webhook{Space: "team-1", Events: []string{"Account.Create"}, Signature: testSignature, Options: wantOptions}
		if d := cmp.Diff(wantHook, w); d != "" {
			t.Fatalf("decoded (-want +got):\n%s", d)
		}
	})
	t.Run("a Patch", func(t *testing.T) {
		var p Patch
		err := json.Unmarshal([]byte(body), &p)
		want := append([]string{"insecure_ssl"}, optionErrors...)
		want = append(want, "url")
		if d := cmp.Diff(want, fieldsOf(t, err)); d != "" {
			t.Fatalf("fields (-want +got):\n%s", d)
		}
		events, sig := []string{"Account.Create"}, testSignature
		if d := cmp.Diff(Patch{Events: &events, Signature: &sig, Options: &wantOptions}, p); d != "" {
			t.Fatalf("decoded (-want +got):\n%s", d)
		}
	})
	t.Run("Options", func(t *testing.T) {
		var o Options
		err := json.Unmarshal([]byte(gjson.Get(body, "options").Raw), &o)
		if d := cmp.Diff(optionErrors, fieldsOf(t, err)); d != "" {
			t.Fatalf("fields (-want +got):\n%s", d)
		}
		if d := cmp.Diff(wantOptions, o); d != "" {
			t.Fatalf("decoded (-want +got):\n%s", d)
		}
	})
}

// patchTests are bodies of a PATCH and what they decode to.
var patchTests = func() []struct {
	name, json string
	want       Patch
	fields     []string
} {
	str := func(s string) *string { return &s }
	yes := true
	return []struct {
		name, json string
		want       Patch
		fields     []string
	}{
		{"an empty body keeps everything", `{}`, Patch{}, nil},
		{"null keeps a field", `{"url": null, "events": null, "options": null, "insecure_ssl": null, "signature": null}`, Patch{}, nil},
		{"every field", `{"url": "https://x.example/h", "events": ["*"], "options": {"chunk_size": 5}, "insecure_ssl": true, "signature": ""}`,
			Patch{URL: str("https://x.example/h"), Events: &[]string{"*"}, Options: &Options{ChunkSize: 5}, InsecureSSL: &yes, Signature: str("")}, nil},
		{"an empty list of events is given, for validation to refuse", `{"events": []}`, Patch{Events: &[]string{}}, nil},
		{"read-only and unknown fields are ignored",
			`{"id": "x", "created": 1, "modified": [], "disabled": {"at": 5}, "is_delete_protected": true, "is_deleted": 1, "application_id": "a", "client": {}, "whatever": 1}`,
			Patch{}, nil},
		{"a body that is a list", `[]`, Patch{}, []string{"webhook"}},
		{"a body that is not JSON", `{"url": `, Patch{}, []string{"webhook"}},
		{"a list of events with a number", `{"events": ["*", 1], "url": "https://x.example/h"}`, Patch{URL: str("https://x.example/h")}, []string{"events"}},
		{"options that are a string", `{"options": "none", "signature": 5}`, Patch{}, []string{"options", "signature"}},
	}
}()

func TestPatchUnmarshal(t *testing.T) {
	for _, tt := range patchTests {
		t.Run(tt.name, func(t *testing.T) {
			kept := "https://before.example/"
			p := Patch{URL: &kept} // decoding starts afresh
			err := p.UnmarshalJSON([]byte(tt.json))
			if tt.fields == nil {
				require.NoError(t, err)
			} else {
				require.Equal(t, tt.fields, fieldsOf(t, err))
			}
			if d := cmp.Diff(tt.want, p); d != "" {
				t.Fatalf("patch (-want +got):\n%s", d)
			}
		})
	}
}

// FuzzWebhookJSON feeds arbitrary bodies to Webhook's and Patch's decoders:
// neither panics, every error is FieldErrors of *FieldError values that
// wrap ErrInvalid, a field that failed is left unset, the two agree on the
// fields they share, and a Webhook decoded from UTF-8 marshals into JSON
// that decodes to it again (JSON writes what is not UTF-8 as U+FFFD).
func FuzzWebhookJSON(f *testing.F) {
	for _, s := range []string{
		pipelinerWebhook, `{}`, `[]`, `null`, `{"url": 5}`, `{"events": "x", "options": []}`,
		`{"options": {"entity": {"Contact": {"load_only": ["id"], "load-only": ["x"]}}}}`,
		`{"created": "2019-01-01T00:00:00", "modified": "2019-01-01T00:00:00.5+01:00", "disabled": {"at": "2020-01-01T00:00:00", "reason": "gone"}}`,
		`{"url": "https://x.example", "url": 5}`, `{"options": {"entity": {"X": {"filter": {"a": [1, {"b": 2}]}, "filter-op": {"a": null}}}}}`,
		`{"signature": "\ud800", "events": ["\u00e9"]}`, `{"insecure_ssl": 1, "options": {"chunk_size": 1e2, "chunk_delay": -0}}`,
	} {
		f.Add(s)
	}
	f.Add(manyMistakes)
	for _, tt := range patchTests {
		f.Add(tt.json)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var w Webhook
		werr := w.UnmarshalJSON([]byte(body))
		var p Patch
		perr := p.UnmarshalJSON([]byte(body))
		failed := map[string]bool{}
		for _, err := range []error{werr, perr} {
			if err == nil {
				continue
			}
			var fes FieldErrors
			require.True(t, errors.As(err, &fes), "%T %v", err, err)
			require.NotEmpty(t, fes)
			for _, fe := range fes {
				require.ErrorIs(t, fe, ErrInvalid)
				require.NotEmpty(t, fe.Field)
				failed[fe.Field] = true
			}
		}
		for field, set := range map[string]bool{"url": p.URL != nil, "events": p.Events != nil, "insecure_ssl": p.InsecureSSL != nil, "signature": p.Signature != nil} {
			require.False(t, failed[field] && set, "%s failed but is set", field)
		}
		if failed["webhook"] {
			return
		}
		// What the Patch sets, the Webhook has.
		var fromPatch Webhook
		p.apply(&fromPatch)
		require.Equal(t, fromPatch.URL, w.URL)
		require.Equal(t, fromPatch.Events, w.Events)
		require.Equal(t, fromPatch.InsecureSSL, w.InsecureSSL)
		require.Equal(t, fromPatch.Signature, w.Signature)
		if werr != nil {
			return
		}
		out, err := json.Marshal(w)
		if err != nil {
			return // a filter value that is not JSON cannot be marshalled; Create refuses it
		}
		var back Webhook
		require.NoError(t, json.Unmarshal(out, &back), "%s", out)
		if utf8.ValidString(body) {
			again, err := json.Marshal(back)
			require.NoError(t, err)
			require.Equal(t, string(out), string(again))
		}
	})
}

func TestFieldErrorsAreInTheOrderOfTheirFields(t *testing.T) {
	fields := []string{"url", "events[10]", "events[2]", "options.skip_keys[0]", "events", "options.entity.A.filter.x", "options.entity.A.filter-op.x", "events[02]", "id"}
	var p problems
	for _, f := range fields {
		p.add(invalid(f, "bad"))
	}
	require.Equal(t, []string{"events", "events[2]", "events[02]", "events[10]", "id", "options.entity.A.filter-op.x",
		"options.entity.A.filter.x", "options.skip_keys[0]", "url"}, fieldsOf(t, p.err()))
}
