package webhook

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
)

// Every test here goes through a real HTTP server, with the handler
// mounted where Pipeliner serves the Webhook entity.

const restPrefix = "/api/v100/rest/spaces/{space}/entities/Webhooks"

// restServer is a Handler mounted on an http.ServeMux under Pipeliner's
// path, served by httptest.
type restServer struct {
	t    testing.TB
	srv  *httptest.Server
	reg  *Registry
	logs *syncBuffer // what the handler logs
}

// testSpace is the Space function of the tests: the {space} wildcard of
// the path, where "locked" is a tenant the request may not use and
// "gone" one that does not exist.
func testSpace(r *http.Request) (string, error) {
	switch s := r.PathValue("space"); s {
	case "locked":
		return "", errors.New("token expired for tenant locked")
	case "gone":
		return "", fmt.Errorf("tenant gone: %w", ErrNotFound)
	default:
		return s, nil
	}
}

func newRESTServer(t testing.TB, cfg RegistryConfig) *restServer {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	reg, err := NewRegistry(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { reg.Close() })
	s := &restServer{t: t, reg: reg, logs: &syncBuffer{}}
	h, err := NewHandler(HandlerConfig{Registry: reg, Space: testSpace, Prefix: restPrefix,
		Logger: slog.New(slog.NewTextHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle(restPrefix, h)
	mux.Handle(restPrefix+"/", h)
	s.srv = httptest.NewServer(mux)
	t.Cleanup(s.srv.Close)
	return s
}

// restAnswer is an answer as a client gets it.
type restAnswer struct {
	status int
	header http.Header
	body   []byte
}

// okJSON is a successful answer.
type okJSON struct {
	Success  bool            `json:"success"`
	Data     json.RawMessage `json:"data"`
	PageInfo *pageInfo       `json:"page_info"`
}

// do sends a request to the Webhooks collection of space, at path below
// it, with a JSON body unless body is "" or the headers set Content-Type
// ("Content-Type", "" sends none).
func (s *restServer) do(method, space, path, body string, header ...string) restAnswer {
	s.t.Helper()
	u := s.srv.URL + "/api/v100/rest/spaces/" + space + "/entities/Webhooks" + path
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	require.NoError(s.t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
		} else {
			req.Header.Set(header[i], header[i+1])
		}
	}
	resp, err := s.srv.Client().Do(req)
	require.NoError(s.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(s.t, err)
	return restAnswer{status: resp.StatusCode, header: resp.Header, body: b}
}

// ok decodes a successful answer with the given status.
func (a restAnswer) ok(t testing.TB, status int) okJSON {
	t.Helper()
	require.Equal(t, status, a.status, "answer: %s", a.body)
	require.Equal(t, "application/json", a.header.Get("Content-Type"))
	var got okJSON
	require.NoError(t, json.Unmarshal(a.body, &got), "answer: %s", a.body)
	require.True(t, got.Success)
	return got
}

// failed decodes an error answer with the given status and name.
func (a restAnswer) failed(t testing.TB, status int, name string) apiError {
	t.Helper()
	require.Equal(t, status, a.status, "answer: %s", a.body)
	require.Equal(t, "application/json", a.header.Get("Content-Type"))
	var got apiError
	require.NoError(t, json.Unmarshal(a.body, &got), "answer: %s", a.body)
	require.False(t, got.Success)
	require.Equal(t, status, got.HTTPStatus)
	require.Equal(t, name, got.Name, "answer: %s", a.body)
	require.NotZero(t, got.Code)
	require.NotEmpty(t, got.Message)
	return got
}

// webhookJSON of an answer, with the fields a client sees.
type entityAnswer struct {
	ID                string          `json:"id"`
	URL               string          `json:"url"`
	Events            []string        `json:"events"`
	Options           json.RawMessage `json:"options"`
	InsecureSSL       bool            `json:"insecure_ssl"`
	Signature         string          `json:"signature"`
	Created           string          `json:"created"`
	Modified          string          `json:"modified"`
	Disabled          json.RawMessage `json:"disabled"`
	IsDeleteProtected *bool           `json:"is_delete_protected"`
	IsDeleted         *bool           `json:"is_deleted"`
}

func entityOf(t testing.TB, raw json.RawMessage) entityAnswer {
	t.Helper()
	var e entityAnswer
	require.NoError(t, json.Unmarshal(raw, &e), "entity: %s", raw)
	return e
}

// create registers a webhook in space through the API.
func (s *restServer) create(space, body string) entityAnswer {
	s.t.Helper()
	return entityOf(s.t, s.do(http.MethodPost, space, "", body).ok(s.t, http.StatusCreated).Data)
}

const (
	testBody = `{"url":"https://example.com/hooks","events":["Account.Create"],"insecure_ssl":false}`
	otherID  = "89abcdef-0123-4567-89ab-cdef01234567"
)

func TestHandlerCreatesAndGets(t *testing.T) {
	clock := newFakeClock()
	s := newRESTServer(t, RegistryConfig{Clock: clock})
	body := `{"url":"https://example.com/hooks","events":["Contact.Update","Account.*"],"insecure_ssl":true,
		"signature":"` + testSignature + `","options":{"chunk_size":10,"entity":{"Contact":{"load-only":["id"]}}}}`
	created := s.do(http.MethodPost, "team-1", "", body).ok(t, http.StatusCreated)
	got := entityOf(t, created.Data)
	require.True(t, isUUID(got.ID), "id %q", got.ID)
	f := false
	want := entityAnswer{ID: got.ID, URL: "https://example.com/hooks", Events: []string{"Contact.Update", "Account.*"},
		Options: json.RawMessage(`{"entity":{"Contact":{"load-only":["id"]}},"chunk_size":10}`), InsecureSSL: true,
		Signature: testSignature, Created: "2026-11-26T10:15:00", Modified: "2026-11-26T10:15:00",
		IsDeleteProtected: &f, IsDeleted: &f}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("created (-want +got):\n%s", d)
	}

	// GET answers the same registration, signature included: the owning
	// tenant sees it, as in Pipeliner.
	fetched := s.do(http.MethodGet, "team-1", "/"+got.ID, "").ok(t, http.StatusOK)
	require.JSONEq(t, string(created.Data), string(fetched.Data))
	require.Equal(t, "no-store", s.do(http.MethodGet, "team-1", "/"+got.ID, "").header.Get("Cache-Control"))
}

func TestHandlerIgnoresReadOnlyFields(t *testing.T) {
	clock := newFakeClock()
	s := newRESTServer(t, RegistryConfig{Clock: clock})
	readOnly := `"id":"` + otherID + `","created":"2001-01-01T00:00:00","modified":"2001-01-01T00:00:00",
		"disabled":{"at":"2001-01-01T00:00:00","reason":"410 Gone"},"is_delete_protected":true,"is_deleted":true,
		"application_id":"` + otherID + `","client_id":"` + otherID + `","space":"team-2"`
	got := s.create("team-1", `{"url":"https://example.com/hooks","events":["Account.Create"],`+readOnly+`}`)
	require.NotEqual(t, otherID, got.ID)
	require.Equal(t, "2026-11-26T10:15:00", got.Created)
	require.Equal(t, "2026-11-26T10:15:00", got.Modified)
	require.Nil(t, got.Disabled)
	require.False(t, *got.IsDeleteProtected || *got.IsDeleted)
	// The space is the request's, never the body's.
	s.do(http.MethodGet, "team-2", "/"+got.ID, "").failed(t, http.StatusNotFound, "ERROR_ENTITY_NOT_FOUND")

	// Nor does a PATCH change them.
	clock.Advance(time.Hour)
	patched := entityOf(t, s.do(http.MethodPatch, "team-1", "/"+got.ID, `{"url":"https://example.com/v2",`+readOnly+`}`).
		ok(t, http.StatusOK).Data)
	require.Equal(t, got.ID, patched.ID)
	require.Equal(t, "2026-11-26T10:15:00", patched.Created)
	require.Equal(t, "2026-11-26T11:15:00", patched.Modified)
	require.Nil(t, patched.Disabled)

	// Nor in a batch: an item with an id updates that registration, never
	// creates one with it.
	ans := s.do(http.MethodPost, "team-1", "/batch-modify", `[{"url":"https://example.com/v3","events":["Account.Create"],
		"created":"2001-01-01T00:00:00","disabled":{"at":"2001-01-01T00:00:00","reason":"x"}}]`).ok(t, http.StatusOK)
	var ids []string
	require.NoError(t, json.Unmarshal(ans.Data, &ids))
	require.Len(t, ids, 1)
	batch := entityOf(t, s.do(http.MethodGet, "team-1", "/"+ids[0], "").ok(t, http.StatusOK).Data)
	require.Equal(t, "2026-11-26T11:15:00", batch.Created)
	require.Nil(t, batch.Disabled)
}

func TestHandlerPatchKeepsAbsentFields(t *testing.T) {
	s := newRESTServer(t, RegistryConfig{Clock: newFakeClock()})
	got := s.create("team-1", `{"url":"https://example.com/hooks","events":["Account.Create","Lead.*"],"insecure_ssl":true,
		"signature":"`+testSignature+`","options":{"skip_keys":["sync"],"chunk_delay":5}}`)

	patched := entityOf(t, s.do(http.MethodPatch, "team-1", "/"+got.ID, `{"url":"https://example.com/new"}`).ok(t, http.StatusOK).Data)
	want := got
	want.URL = "https://example.com/new"
	if d := cmp.Diff(want, patched); d != "" {
		t.Fatalf("after PATCH url (-want +got):\n%s", d)
	}
	// null keeps a field too; "" removes the signature.
	patched = entityOf(t, s.do(http.MethodPatch, "team-1", "/"+got.ID, `{"events":null,"signature":""}`).ok(t, http.StatusOK).Data)
	want.Signature = ""
	if d := cmp.Diff(want, patched); d != "" {
		t.Fatalf("after PATCH signature (-want +got):\n%s", d)
	}
	fetched := entityOf(t, s.do(http.MethodGet, "team-1", "/"+got.ID, "").ok(t, http.StatusOK).Data)
	if d := cmp.Diff(want, fetched); d != "" {
		t.Fatalf("GET after PATCH (-want +got):\n%s", d)
	}
}

func TestHandlerDeletes(t *testing.T) {
	s := newRESTServer(t, RegistryConfig{})
	got := s.create("team-1", testBody)
	ans := s.do(http.MethodDelete, "team-1", "/"+got.ID, "").ok(t, http.StatusOK)
	require.JSONEq(t, `"`+got.ID+`"`, string(ans.Data))
	s.do(http.MethodGet, "team-1", "/"+got.ID, "").failed(t, http.StatusNotFound, "ERROR_ENTITY_NOT_FOUND")
	s.do(http.MethodDelete, "team-1", "/"+got.ID, "").failed(t, http.StatusNotFound, "ERROR_ENTITY_NOT_FOUND")
	// include-deleted finds nothing more: deletes are final.
	list := s.do(http.MethodGet, "team-1", "?include-deleted=true", "").ok(t, http.StatusOK)
	require.JSONEq(t, `[]`, string(list.Data))
}

// TestHandlerSpaceIsolation: an id of another space answers exactly as an
// id that exists nowhere, to every call, and changes nothing there.
func TestHandlerSpaceIsolation(t *testing.T) {
	s := newRESTServer(t, RegistryConfig{})
	theirs := s.create("team-b", `{"url":"https://b.example.com/hooks","events":["Account.Create"],"signature":"`+testSignature+`"}`)
	mine := s.create("team-a", testBody)
	before := s.do(http.MethodGet, "team-b", "/"+theirs.ID, "").ok(t, http.StatusOK).Data

	calls := []struct {
		name, method, path, body string
		status                   int
	}{
		{"GET", http.MethodGet, "/" + theirs.ID, "", http.StatusNotFound},
		{"PATCH", http.MethodPatch, "/" + theirs.ID, `{"url":"https://evil.example.com/"}`, http.StatusNotFound},
		{"PATCH with a body of the wrong types", http.MethodPatch, "/" + theirs.ID, `{"url":1}`, http.StatusNotFound},
		{"DELETE", http.MethodDelete, "/" + theirs.ID, "", http.StatusNotFound},
		{"batch-delete, all or nothing", http.MethodPost, "/batch-delete", `["` + theirs.ID + `"]`, http.StatusNotFound},
		{"batch-delete, item by item", http.MethodPost, "/batch-delete?rollback-method=1", `["` + mine.ID + `","` + theirs.ID + `"]`, http.StatusOK},
		{"batch-modify, all or nothing", http.MethodPost, "/batch-modify", `[{"id":"` + theirs.ID + `","url":"https://evil.example.com/"}]`, http.StatusNotFound},
		{"batch-modify, item by item", http.MethodPost, "/batch-modify?rollback-method=1", `[{"id":"` + theirs.ID + `","url":"https://evil.example.com/"}]`, http.StatusOK},
		{"batch-modify with a body of the wrong types", http.MethodPost, "/batch-modify", `[{"id":"` + theirs.ID + `","url":1}]`, http.StatusNotFound},
	}
	answers := make([]restAnswer, len(calls))
	for i, c := range calls {
		answers[i] = s.do(c.method, "team-a", c.path, c.body)
		require.Equal(t, c.status, answers[i].status, "%s: %s", c.name, answers[i].body)
	}
	list := s.do(http.MethodGet, "team-a", "?first=100", "").ok(t, http.StatusOK)
	require.NotContains(t, string(list.Data), theirs.ID)
	list = s.do(http.MethodGet, "team-a", "?filter[id]="+theirs.ID, "").ok(t, http.StatusOK)
	require.JSONEq(t, `[]`, string(list.Data))

	// Their registration is as it was.
	after := s.do(http.MethodGet, "team-b", "/"+theirs.ID, "").ok(t, http.StatusOK).Data
	require.JSONEq(t, string(before), string(after))

	// Once it is deleted, the id exists nowhere: every call answers as it
	// did when it existed in another space, byte for byte.
	s.do(http.MethodDelete, "team-b", "/"+theirs.ID, "").ok(t, http.StatusOK)
	s.create("team-a", testBody) // mine was deleted by the batch above
	for i, c := range calls {
		if c.name == "batch-delete, item by item" {
			c.body = `["` + otherID + `","` + theirs.ID + `"]`
		}
		again := s.do(c.method, "team-a", c.path, c.body)
		require.Equal(t, answers[i].status, again.status, c.name)
		if c.status == http.StatusOK { // compare the item of their id
			was, now := lastItem(t, answers[i]), lastItem(t, again)
			require.JSONEq(t, string(was), string(now), c.name)
			continue
		}
		require.Equal(t, string(answers[i].body), string(again.body), c.name)
	}
}

// lastItem returns the last item of a batch answer.
func lastItem(t testing.TB, a restAnswer) json.RawMessage {
	t.Helper()
	var items []json.RawMessage
	require.NoError(t, json.Unmarshal(a.ok(t, http.StatusOK).Data, &items))
	require.NotEmpty(t, items)
	return items[len(items)-1]
}

func TestHandlerReportsEveryFieldError(t *testing.T) {
	s := newRESTServer(t, RegistryConfig{})
	t.Run("four mistakes, two of type and two of value, give four field errors", func(t *testing.T) {
		ans := s.do(http.MethodPost, "team-1", "", `{"url":42,"events":["Account.Explode"],"insecure_ssl":"yes",
			"options":{"chunk_size":1000}}`)
		e := ans.failed(t, http.StatusUnprocessableEntity, "ERROR_ENTITY_VALIDATION")
		require.Equal(t, 40000, e.Code)
		require.Equal(t, "Webhook", e.EntityName)
		require.JSONEq(t, `null`, string(e.EntityID))
		require.Equal(t, []string{"events[0]", "insecure_ssl", "options.chunk_size", "url"}, fieldNames(e))
		for _, fe := range e.FieldErrors {
			require.Equal(t, "ERROR_FIELD_VALIDATION", fe.Name)
			require.Equal(t, 40002, fe.Code)
			require.Len(t, fe.Errors, 1)
			require.Equal(t, fe.FieldName, fe.Errors[0].FieldName)
			require.NotEmpty(t, fe.Errors[0].Message)
		}
		require.Equal(t, "ERROR_INVALID_TYPE", e.FieldErrors[1].Errors[0].Name)
		require.Equal(t, "ERROR_INVALID_VALUE", e.FieldErrors[0].Errors[0].Name)
	})
	t.Run("four mistakes of value give four field errors", func(t *testing.T) {
		ans := s.do(http.MethodPost, "team-1", "", `{"url":"ftp://example.com/","events":["Account.Create","Nope.Nope"],
			"signature":"not-a-uuid","options":{"chunk_delay":-1}}`)
		e := ans.failed(t, http.StatusUnprocessableEntity, "ERROR_ENTITY_VALIDATION")
		require.Equal(t, []string{"events[1]", "options.chunk_delay", "signature", "url"}, fieldNames(e))
	})
	t.Run("an update names its registration and validates the fields that decoded", func(t *testing.T) {
		got := s.create("team-1", testBody)
		ans := s.do(http.MethodPatch, "team-1", "/"+got.ID, `{"url":[],"events":["Nope.Nope"],"signature":7,"insecure_ssl":null}`)
		e := ans.failed(t, http.StatusUnprocessableEntity, "ERROR_ENTITY_VALIDATION")
		require.JSONEq(t, `"`+got.ID+`"`, string(e.EntityID))
		require.Equal(t, []string{"events[0]", "signature", "url"}, fieldNames(e))
		unchanged := entityOf(t, s.do(http.MethodGet, "team-1", "/"+got.ID, "").ok(t, http.StatusOK).Data)
		require.Equal(t, got, unchanged)
	})
	t.Run("a create without url and events names both", func(t *testing.T) {
		e := s.do(http.MethodPost, "team-1", "", `{}`).failed(t, http.StatusUnprocessableEntity, "ERROR_ENTITY_VALIDATION")
		require.Equal(t, []string{"events", "url"}, fieldNames(e))
	})
}

func fieldNames(e apiError) []string {
	var names []string
	for _, fe := range e.FieldErrors {
		names = append(names, fe.FieldName)
	}
	return names
}

// TestHandlerNeverShowsASecret: a signature, or a URL's password, is in no
// error answer and no log line, whatever is wrong with them.
func TestHandlerNeverShowsASecret(t *testing.T) {
	const secret, password = "my-secret-signature-value", "hunter2-password"
	s := newRESTServer(t, RegistryConfig{})
	got := s.create("team-1", testBody)
	bodies := []string{
		`{"url":"https://user:` + password + `@exa mple.com/","events":["Account.Create"],"signature":"` + secret + `"}`,
		`{"url":"ftp://user:` + password + `@example.com/","events":["Nope.Nope"],"signature":["` + secret + `"]}`,
		`{"url":"https://user:` + password + `@127.0.0.1/","events":["Account.Create"],"signature":{"s":"` + secret + `"}}`,
	}
	for _, body := range bodies {
		for _, a := range []restAnswer{
			s.do(http.MethodPost, "team-1", "", body),
			s.do(http.MethodPatch, "team-1", "/"+got.ID, body),
			s.do(http.MethodPost, "team-1", "/batch-modify?rollback-method=1", "["+body+"]"),
			s.do(http.MethodPost, "team-1", "/batch-modify", "["+body+"]"),
		} {
			require.NotContains(t, string(a.body), secret)
			require.NotContains(t, string(a.body), password)
			require.Contains(t, string(a.body), "ERROR_ENTITY_VALIDATION")
		}
	}
	require.NotContains(t, s.logs.String(), secret)
	require.NotContains(t, s.logs.String(), password)
}

func TestHandlerErrors(t *testing.T) {
	s := newRESTServer(t, RegistryConfig{})
	id := s.create("team-1", testBody).ID
	tests := []struct {
		name                 string
		method, space, path  string
		body                 string
		header               []string
		status               int
		errName, allow, text string
	}{
		{name: "an unknown id", method: "GET", path: "/" + otherID, status: 404, errName: "ERROR_ENTITY_NOT_FOUND"},
		{name: "an id that is not a UUID", method: "GET", path: "/not-an-id", status: 404, errName: "ERROR_ENTITY_NOT_FOUND"},
		{name: "PATCH of an unknown id", method: "PATCH", path: "/" + otherID, body: `{}`, status: 404, errName: "ERROR_ENTITY_NOT_FOUND"},
		{name: "DELETE of an id that is not a UUID", method: "DELETE", path: "/x", status: 404, errName: "ERROR_ENTITY_NOT_FOUND"},
		{name: "a path below an id", method: "GET", path: "/" + id + "/x", status: 404, errName: "ERROR_ENDPOINT_NOT_FOUND"},
		{name: "a space the request may not use", method: "GET", space: "locked", status: 401, errName: "ERROR_UNAUTHORIZED"},
		{name: "a space that does not exist", method: "GET", space: "gone", path: "/" + id, status: 404, errName: "ERROR_SPACE_NOT_FOUND"},
		{name: "PUT on the collection", method: "PUT", body: testBody, status: 405, errName: "ERROR_METHOD_NOT_ALLOWED", allow: "GET, POST"},
		{name: "POST on an id", method: "POST", path: "/" + id, body: testBody, status: 405, errName: "ERROR_METHOD_NOT_ALLOWED", allow: "GET, PATCH, DELETE"},
		{name: "GET on batch-delete", method: "GET", path: "/batch-delete", status: 405, errName: "ERROR_METHOD_NOT_ALLOWED", allow: "POST"},
		{name: "DELETE on batch-modify", method: "DELETE", path: "/batch-modify", status: 405, errName: "ERROR_METHOD_NOT_ALLOWED", allow: "POST"},
		{name: "malformed JSON", method: "POST", body: `{"url":`, status: 400, errName: "ERROR_INVALID_JSON"},
		{name: "an empty body", method: "POST", body: ``, header: []string{"Content-Type", "application/json"}, status: 400, errName: "ERROR_INVALID_JSON"},
		{name: "a JSON list to create", method: "POST", body: `[` + testBody + `]`, status: 400, errName: "ERROR_INVALID_JSON"},
		{name: "JSON null to update", method: "PATCH", path: "/" + id, body: `null`, status: 400, errName: "ERROR_INVALID_JSON"},
		{name: "a batch-delete of objects", method: "POST", path: "/batch-delete", body: `[{"id":"` + id + `"}]`, status: 400, errName: "ERROR_INVALID_JSON"},
		{name: "a batch-modify of ids", method: "POST", path: "/batch-modify", body: `["` + id + `"]`, status: 400, errName: "ERROR_INVALID_JSON"},
		{name: "a form body", method: "POST", body: `url=x`, header: []string{"Content-Type", "application/x-www-form-urlencoded"}, status: 415, errName: "ERROR_UNSUPPORTED_MEDIA_TYPE"},
		{name: "a body without Content-Type", method: "POST", body: testBody, header: []string{"Content-Type", ""}, status: 415, errName: "ERROR_UNSUPPORTED_MEDIA_TYPE"},
		{name: "JSON in Latin-1", method: "POST", body: testBody, header: []string{"Content-Type", "application/json; charset=iso-8859-1"}, status: 415, errName: "ERROR_UNSUPPORTED_MEDIA_TYPE"},
		{name: "a body over the limit", method: "POST", body: `{"url":"` + strings.Repeat("a", DefaultMaxBodyBytes) + `"}`, status: 413, errName: "ERROR_REQUEST_TOO_LARGE"},
		{name: "first=0", method: "GET", path: "?first=0", status: 400, errName: "ERROR_PARAMETER_INVALID"},
		{name: "first=101", method: "GET", path: "?first=101", status: 400, errName: "ERROR_PARAMETER_INVALID"},
		{name: "first=ten", method: "GET", path: "?first=ten", status: 400, errName: "ERROR_PARAMETER_INVALID"},
		{name: "first twice", method: "GET", path: "?first=1&first=2", status: 400, errName: "ERROR_PARAMETER_INVALID"},
		{name: "first and last", method: "GET", path: "?first=1&last=1", status: 400, errName: "ERROR_PARAMETER_INVALID"},
		{name: "a cursor that is not base64", method: "GET", path: "?after=%%%", status: 400, errName: "ERROR_PARAMETER_INVALID"},
		{name: "a cursor of garbage", method: "GET", path: "?after=" + b64(`{"x":1}`), status: 400, errName: "ERROR_PARAMETER_INVALID"},
		{name: "a cursor of numbers", method: "GET", path: "?before=" + b64(`["created,id",1,2]`), status: 400, errName: "ERROR_PARAMETER_INVALID"},
		{name: "a cursor of another order", method: "GET", path: "?order-by=url&after=" + b64(`["created,id","a","b"]`), status: 400, errName: "ERROR_PARAMETER_INVALID", text: "another order-by"},
		{name: "a cursor with too few keys", method: "GET", path: "?after=" + b64(`["created,id","a"]`), status: 400, errName: "ERROR_PARAMETER_INVALID"},
		{name: "order-by an unknown field", method: "GET", path: "?order-by=signature", status: 400, errName: "ERROR_PARAMETER_INVALID"},
		{name: "order-by an empty name", method: "GET", path: "?order-by=created,", status: 400, errName: "ERROR_PARAMETER_INVALID"},
		{name: "an unknown filter operator", method: "GET", path: "?filter[url]=x&filter-op[url]=like", status: 400, errName: "ERROR_PARAMETER_INVALID", text: "filter-op[url]"},
		{name: "a filter-op without filter", method: "GET", path: "?filter-op[url]=eq", status: 400, errName: "ERROR_PARAMETER_INVALID", text: "filter-op[url]"},
		{name: "between with one value", method: "GET", path: "?filter[created]=x&filter-op[created]=between", status: 400, errName: "ERROR_PARAMETER_INVALID"},
		{name: "a filter without a field", method: "GET", path: "?filter=x", status: 400, errName: "ERROR_PARAMETER_INVALID"},
		{name: "a filter with an empty field", method: "GET", path: "?filter[]=x", status: 400, errName: "ERROR_PARAMETER_INVALID"},
		{name: "a filter on a path with an empty name", method: "GET", path: "?filter[a..b]=x", status: 400, errName: "ERROR_PARAMETER_INVALID", text: "filter[a..b]"},
		{name: "load-only with an empty name", method: "GET", path: "?load-only=id,,url", status: 400, errName: "ERROR_PARAMETER_INVALID", text: "load-only"},
		{name: "include-deleted=maybe", method: "GET", path: "?include-deleted=maybe", status: 400, errName: "ERROR_PARAMETER_INVALID"},
		{name: "validation-level=high", method: "PATCH", path: "/" + id + "?validation-level=high", body: `{}`, status: 400, errName: "ERROR_PARAMETER_INVALID"},
		{name: "rollback-method=2", method: "POST", path: "/batch-delete?rollback-method=2", body: `[]`, status: 400, errName: "ERROR_PARAMETER_INVALID"},
		{name: "a malformed query string", method: "GET", path: "?first=1;last=2", status: 400, errName: "ERROR_PARAMETER_INVALID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			space := tt.space
			if space == "" {
				space = "team-1"
			}
			a := s.do(tt.method, space, tt.path, tt.body, tt.header...)
			e := a.failed(t, tt.status, tt.errName)
			require.Equal(t, tt.allow, a.header.Get("Allow"))
			require.Contains(t, e.Message, tt.text)
		})
	}
	require.NotContains(t, s.logs.String(), "level=ERROR", "no internal error")
	// The space function's error is logged, never sent.
	require.Contains(t, s.logs.String(), "token expired for tenant locked")
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// TestHandlerAccepts: what Pipeliner's API allows and the handler accepts
// without effect.
func TestHandlerAccepts(t *testing.T) {
	s := newRESTServer(t, RegistryConfig{})
	got := s.create("team-1", testBody)
	for _, path := range []string{"?validation-level=5", "?include-deleted=false", "?expand=owner", "?unknown=1", "/?first=1", "?order-by=-id"} {
		ans := s.do(http.MethodGet, "team-1", path, "").ok(t, http.StatusOK)
		require.Contains(t, string(ans.Data), got.ID, path)
	}
	s.do(http.MethodPatch, "team-1", "/"+got.ID+"?validation-level=0", `{}`, "Content-Type", "application/json; charset=UTF-8").ok(t, http.StatusOK)
	s.do(http.MethodPatch, "team-1", "/"+got.ID, `{}`, "Content-Type", "application/merge-patch+json").ok(t, http.StatusOK)
}

// TestHandlerPages lists 250 registrations page by page, forwards and
// backwards, in several orders: every id comes exactly once, in order.
func TestHandlerPages(t *testing.T) {
	clock := newFakeClock()
	s := newRESTServer(t, RegistryConfig{Clock: clock})
	ctx := context.Background()
	for i := range 250 {
		if i%7 == 0 {
			clock.Advance(time.Second) // several share a created time: ties are broken by id
		}
		_, err := s.reg.Create(ctx, "team-1", Webhook{URL: fmt.Sprintf("https://example.com/%02d", i%40),
			Events: []string{"Account.Create"}, InsecureSSL: i%3 == 0})
		require.NoError(t, err)
	}
	s.create("team-2", testBody) // never listed in team-1
	hooks, err := s.reg.List(ctx, "team-1")
	require.NoError(t, err)

	orders := []struct {
		orderBy string
		cmp     func(a, b Webhook) int
	}{
		{"", byCreated},
		{"created", byCreated},
		{"-created", func(a, b Webhook) int { return cmpChain(-a.Created.Compare(b.Created), strings.Compare(a.ID, b.ID)) }},
		{"url,-created", func(a, b Webhook) int {
			return cmpChain(strings.Compare(a.URL, b.URL), -a.Created.Compare(b.Created), strings.Compare(a.ID, b.ID))
		}},
		{"-insecure_ssl,modified", func(a, b Webhook) int {
			return cmpChain(-cmpBool(a.InsecureSSL, b.InsecureSSL), a.Modified.Compare(b.Modified), strings.Compare(a.ID, b.ID))
		}},
		{"-id", func(a, b Webhook) int { return -strings.Compare(a.ID, b.ID) }},
	}
	for _, o := range orders {
		want := slices.Clone(hooks)
		slices.SortFunc(want, o.cmp)
		wantIDs := make([]string, len(want))
		for i, w := range want {
			wantIDs[i] = w.ID
		}
		for _, size := range []int{0, 1, 7, 100} {
			if size == 1 && o.orderBy != "" {
				continue // one item a page, 500 requests: once is enough
			}
			t.Run(fmt.Sprintf("order-by=%s, pages of %d", o.orderBy, size), func(t *testing.T) {
				require.Equal(t, wantIDs, s.pageAll(t, o.orderBy, size, true), "forwards")
				require.Equal(t, wantIDs, s.pageAll(t, o.orderBy, size, false), "backwards")
			})
		}
	}
}

func byCreated(a, b Webhook) int {
	return cmpChain(a.Created.Compare(b.Created), strings.Compare(a.ID, b.ID))
}

func cmpChain(ns ...int) int {
	for _, n := range ns {
		if n != 0 {
			return n
		}
	}
	return 0
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// pageAll lists team-1 in pages of size (0: the default, 30) with first
// and after, or last and before, and returns the ids in list order.
func (s *restServer) pageAll(t *testing.T, orderBy string, size int, forwards bool) []string {
	var ids []string
	cursor := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 300, "the pages do not end")
		q := url.Values{}
		if orderBy != "" {
			q.Set("order-by", orderBy)
		}
		want := size
		switch {
		case size == 0 && forwards:
			want = defaultPageSize
		case size == 0:
			want, size = defaultPageSize, defaultPageSize
		}
		if size > 0 && forwards {
			q.Set("first", fmt.Sprint(size))
		} else if size > 0 {
			q.Set("last", fmt.Sprint(size))
		}
		if cursor != "" && forwards {
			q.Set("after", cursor)
		} else if cursor != "" {
			q.Set("before", cursor)
		}
		ans := s.do(http.MethodGet, "team-1", "?"+q.Encode(), "").ok(t, http.StatusOK)
		var items []entityAnswer
		require.NoError(t, json.Unmarshal(ans.Data, &items))
		require.LessOrEqual(t, len(items), want)
		page := make([]string, len(items))
		for i, it := range items {
			page[i] = it.ID
		}
		info := ans.PageInfo
		require.NotNil(t, info)
		more := info.HasNextPage
		if !forwards {
			more = info.HasPreviousPage
			ids = append(page, ids...)
		} else {
			ids = append(ids, page...)
		}
		if !more {
			require.True(t, len(items) > 0 || pages == 0)
			return ids
		}
		require.Len(t, items, want, "a page that is not the last is full")
		// The other flag says whether there is anything behind the page:
		// the pages read so far.
		if forwards {
			require.Equal(t, pages > 0, info.HasPreviousPage)
			cursor = *info.EndCursor
		} else {
			require.Equal(t, pages > 0, info.HasNextPage)
			cursor = *info.StartCursor
		}
	}
}

func TestHandlerPageInfo(t *testing.T) {
	s := newRESTServer(t, RegistryConfig{Clock: newFakeClock()})
	empty := s.do(http.MethodGet, "team-1", "", "").ok(t, http.StatusOK)
	require.JSONEq(t, `[]`, string(empty.Data))
	require.Contains(t, string(s.do(http.MethodGet, "team-1", "", "").body),
		`"page_info":{"start_cursor":null,"end_cursor":null,"has_previous_page":false,"has_next_page":false}`)

	var ids []string
	for range 5 {
		ids = append(ids, s.create("team-1", testBody).ID)
	}
	slices.Sort(ids) // one created time: the order is the ids'
	ans := s.do(http.MethodGet, "team-1", "?first=2", "").ok(t, http.StatusOK)
	require.Equal(t, pageInfo{StartCursor: ans.PageInfo.StartCursor, EndCursor: ans.PageInfo.EndCursor,
		HasPreviousPage: false, HasNextPage: true}, *ans.PageInfo)
	middle := s.do(http.MethodGet, "team-1", "?first=2&after="+*ans.PageInfo.EndCursor, "").ok(t, http.StatusOK)
	require.True(t, middle.PageInfo.HasPreviousPage && middle.PageInfo.HasNextPage)
	require.Equal(t, ids[2:4], listIDs(t, middle.Data))
	// after and before together bound the page on both sides.
	between := s.do(http.MethodGet, "team-1", "?after="+*ans.PageInfo.StartCursor+"&before="+*middle.PageInfo.EndCursor, "").ok(t, http.StatusOK)
	require.Equal(t, ids[1:3], listIDs(t, between.Data))
	// A cursor of a registration deleted since still positions the page.
	s.do(http.MethodDelete, "team-1", "/"+ids[1], "").ok(t, http.StatusOK)
	rest := s.do(http.MethodGet, "team-1", "?after="+*ans.PageInfo.EndCursor, "").ok(t, http.StatusOK)
	require.Equal(t, ids[2:], listIDs(t, rest.Data))
	require.True(t, rest.PageInfo.HasPreviousPage)
	require.False(t, rest.PageInfo.HasNextPage)
}

func listIDs(t testing.TB, data json.RawMessage) []string {
	t.Helper()
	var items []struct {
		ID string `json:"id"`
	}
	require.NoError(t, json.Unmarshal(data, &items))
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = it.ID
	}
	return ids
}

func TestHandlerListFiltersAndProjects(t *testing.T) {
	clock := newFakeClock()
	s := newRESTServer(t, RegistryConfig{Clock: clock})
	a := s.create("team-1", `{"url":"https://a.example.com/x","events":["Account.Create"],"insecure_ssl":true}`)
	clock.Advance(time.Hour)
	b := s.create("team-1", `{"url":"https://b.example.com/y","events":["Contact.Update","Account.Create"],
		"options":{"chunk_size":5}}`)
	clock.Advance(time.Hour)
	c := s.create("team-1", `{"url":"https://c.example.org/z","events":["Lead.*"],"signature":"`+testSignature+`"}`)
	s.create("team-2", `{"url":"https://a.example.com/x","events":["Account.Create"],"insecure_ssl":true}`)

	tests := []struct {
		query string
		want  []string
	}{
		{"filter[url]=example.com&filter-op[url]=contains", []string{a.ID, b.ID}},
		{"filter[url]=EXAMPLE.ORG&filter-op[url]=icontains", []string{c.ID}},
		{"filter[url]=https://a.example.com/x&filter[url]=https://c.example.org/z", []string{a.ID, c.ID}},
		{"filter[url]=https://a.example.com/x&filter-op[url]=not-eq", []string{b.ID, c.ID}},
		{"filter[insecure_ssl]=true", []string{a.ID}},
		{"filter[events]=Account.Create", []string{a.ID, b.ID}},
		{"filter[events]=Account.Create&filter[insecure_ssl]=false", []string{b.ID}},
		{"filter[options.chunk_size]=4&filter-op[options.chunk_size]=gt", []string{b.ID}},
		{"filter-op[signature]=not-null", []string{c.ID}},
		{"filter-op[signature]=null", []string{a.ID, b.ID}},
		{"filter-op[disabled]=empty", []string{a.ID, b.ID, c.ID}},
		{"filter[created]=2026-11-26T11:00:00,2026-11-26T13:00:00&filter-op[created]=between", []string{b.ID, c.ID}},
		{"filter[created]=2026-11-26T11:15:00&filter-op[created]=lte", []string{a.ID, b.ID}},
		{"filter[is_deleted]=true", nil},
		{"filter[id]=" + c.ID + "&order-by=-created", []string{c.ID}},
		{"filter[url]=example&filter-op[url]=contains&order-by=-url&first=2", []string{c.ID, b.ID}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			ans := s.do(http.MethodGet, "team-1", "?"+tt.query, "").ok(t, http.StatusOK)
			require.Equal(t, tt.want, nilIfEmpty(listIDs(t, ans.Data)))
		})
	}

	t.Run("load-only cuts every item", func(t *testing.T) {
		ans := s.do(http.MethodGet, "team-1", "?load-only=id,url,options.chunk_size&filter[url]=example.com&filter-op[url]=contains", "").
			ok(t, http.StatusOK)
		// A path an item lacks is left out, as load-only does for records.
		want := fmt.Sprintf(`[{"id":%q,"url":"https://a.example.com/x"},{"id":%q,"url":"https://b.example.com/y","options":{"chunk_size":5}}]`, a.ID, b.ID)
		require.JSONEq(t, want, string(ans.Data))
	})
	t.Run("load-only keeps paging", func(t *testing.T) {
		first := s.do(http.MethodGet, "team-1", "?load-only=url&first=2", "").ok(t, http.StatusOK)
		require.JSONEq(t, `[{"url":"https://a.example.com/x"},{"url":"https://b.example.com/y"}]`, string(first.Data))
		next := s.do(http.MethodGet, "team-1", "?load-only=url&first=2&after="+*first.PageInfo.EndCursor, "").ok(t, http.StatusOK)
		require.JSONEq(t, `[{"url":"https://c.example.org/z"}]`, string(next.Data))
	})
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func TestHandlerBatchModify(t *testing.T) {
	s := newRESTServer(t, RegistryConfig{Clock: newFakeClock()})
	one, two := s.create("team-1", testBody), s.create("team-1", testBody)
	both := []string{one.ID, two.ID}
	slices.Sort(both) // created in the same second: listed by id
	bad := `{"url":"https://example.com/bad","events":["Nope.Nope"]}`
	batch := `[{"id":"` + one.ID + `","url":"https://example.com/one"},` + bad + `,{"url":"https://example.com/new","events":["Lead.*"]},
		{"id":"` + two.ID + `","insecure_ssl":true}]`

	t.Run("all or nothing: the failing item's error, nothing applied", func(t *testing.T) {
		for _, q := range []string{"", "?rollback-method=0"} {
			e := s.do(http.MethodPost, "team-1", "/batch-modify"+q, batch).failed(t, http.StatusUnprocessableEntity, "ERROR_ENTITY_VALIDATION")
			require.Equal(t, []string{"events[0]"}, fieldNames(e))
			require.JSONEq(t, `null`, string(e.EntityID))
			require.Equal(t, both, s.ids("team-1"))
			require.Equal(t, one, entityOf(t, s.do(http.MethodGet, "team-1", "/"+one.ID, "").ok(t, http.StatusOK).Data))
		}
	})
	t.Run("all or nothing: an unknown id", func(t *testing.T) {
		e := s.do(http.MethodPost, "team-1", "/batch-modify", `[{"id":"`+one.ID+`","url":"https://example.com/one"},{"id":"`+otherID+`"}]`).
			failed(t, http.StatusNotFound, "ERROR_ENTITY_NOT_FOUND")
		require.Contains(t, e.Message, otherID)
		require.Equal(t, "https://example.com/hooks", entityOf(t, s.do(http.MethodGet, "team-1", "/"+one.ID, "").ok(t, http.StatusOK).Data).URL)
	})
	t.Run("item by item: each failure in its place", func(t *testing.T) {
		ans := s.do(http.MethodPost, "team-1", "/batch-modify?rollback-method=1", batch).ok(t, http.StatusOK)
		var items []json.RawMessage
		require.NoError(t, json.Unmarshal(ans.Data, &items))
		require.Len(t, items, 4)
		require.JSONEq(t, `"`+one.ID+`"`, string(items[0]))
		var e apiError
		require.NoError(t, json.Unmarshal(items[1], &e))
		require.Equal(t, 422, e.HTTPStatus)
		require.Equal(t, []string{"events[0]"}, fieldNames(e))
		var created string
		require.NoError(t, json.Unmarshal(items[2], &created))
		require.JSONEq(t, `"`+two.ID+`"`, string(items[3]))

		require.Equal(t, "https://example.com/one", entityOf(t, s.do(http.MethodGet, "team-1", "/"+one.ID, "").ok(t, http.StatusOK).Data).URL)
		require.True(t, entityOf(t, s.do(http.MethodGet, "team-1", "/"+two.ID, "").ok(t, http.StatusOK).Data).InsecureSSL)
		require.Equal(t, []string{"Lead.*"}, entityOf(t, s.do(http.MethodGet, "team-1", "/"+created, "").ok(t, http.StatusOK).Data).Events)
	})
	t.Run("an item of the wrong types is reported whole", func(t *testing.T) {
		ans := s.do(http.MethodPost, "team-1", "/batch-modify?rollback-method=1", `[{"id":7,"url":8},{"url":9,"events":["Nope.Nope"]}]`).ok(t, http.StatusOK)
		var items []apiError
		require.NoError(t, json.Unmarshal(ans.Data, &items))
		require.Equal(t, []string{"id", "url"}, fieldNames(items[0]))
		require.Equal(t, []string{"events[0]", "url"}, fieldNames(items[1]))
	})
	t.Run("an empty batch", func(t *testing.T) {
		require.JSONEq(t, `[]`, string(s.do(http.MethodPost, "team-1", "/batch-modify", `[]`).ok(t, http.StatusOK).Data))
	})
}

func (s *restServer) ids(space string) []string {
	s.t.Helper()
	return listIDs(s.t, s.do(http.MethodGet, space, "?first=100", "").ok(s.t, http.StatusOK).Data)
}

func TestHandlerBatchDelete(t *testing.T) {
	s := newRESTServer(t, RegistryConfig{Clock: newFakeClock()})
	var ids []string
	for range 3 {
		ids = append(ids, s.create("team-1", testBody).ID)
	}
	slices.Sort(ids)

	e := s.do(http.MethodPost, "team-1", "/batch-delete", `["`+ids[0]+`","`+otherID+`"]`).failed(t, http.StatusNotFound, "ERROR_ENTITY_NOT_FOUND")
	require.Contains(t, e.Message, otherID)
	require.Equal(t, ids, s.ids("team-1"), "nothing deleted")
	s.do(http.MethodPost, "team-1", "/batch-delete", `["`+ids[0]+`",""]`).failed(t, http.StatusNotFound, "ERROR_ENTITY_NOT_FOUND")
	require.Equal(t, ids, s.ids("team-1"), "an empty id creates nothing and deletes nothing")

	ans := s.do(http.MethodPost, "team-1", "/batch-delete?rollback-method=1", `["`+ids[0]+`","`+otherID+`","`+ids[2]+`"]`).ok(t, http.StatusOK)
	var items []json.RawMessage
	require.NoError(t, json.Unmarshal(ans.Data, &items))
	require.Len(t, items, 3)
	require.JSONEq(t, `"`+ids[0]+`"`, string(items[0]))
	require.JSONEq(t, `"`+ids[2]+`"`, string(items[2]))
	var itemErr apiError
	require.NoError(t, json.Unmarshal(items[1], &itemErr))
	require.Equal(t, apiError{HTTPStatus: 404, Code: errNotFound.code, Name: errNotFound.name, Message: "Webhook " + otherID + " not found"}, itemErr)
	require.Equal(t, ids[1:2], s.ids("team-1"))

	all := s.do(http.MethodPost, "team-1", "/batch-delete", `["`+ids[1]+`"]`).ok(t, http.StatusOK)
	require.JSONEq(t, `["`+ids[1]+`"]`, string(all.Data))
	require.Empty(t, s.ids("team-1"))
}

func TestHandlerBatchesAreBounded(t *testing.T) {
	s := newRESTServer(t, RegistryConfig{Clock: newFakeClock()})
	list := func(n int, item string) string {
		return "[" + strings.TrimSuffix(strings.Repeat(item+",", n), ",") + "]"
	}
	// A refused batch changes nothing: the registration it would delete
	// stays, and none of the ones it would create is made.
	kept := s.create("team-1", testBody).ID
	for _, path := range []string{"/batch-delete", "/batch-modify"} {
		item := `"` + kept + `"`
		if path == "/batch-modify" {
			item = testBody
		}
		e := s.do(http.MethodPost, "team-1", path, list(MaxBatchItems+1, item)).failed(t, http.StatusBadRequest, "ERROR_INVALID_JSON")
		require.Contains(t, e.Message, "at most 100 items")
		require.Equal(t, []string{kept}, s.ids("team-1"), "after a refused %s", path)
	}
	made := s.do(http.MethodPost, "team-1", "/batch-modify?rollback-method=1", list(MaxBatchItems, testBody)).ok(t, http.StatusOK)
	var ids []string // of the registrations made
	require.NoError(t, json.Unmarshal(made.Data, &ids))
	require.Len(t, ids, MaxBatchItems)
	require.Len(t, slices.Compact(slices.Sorted(slices.Values(ids))), MaxBatchItems, "each item made one")
	require.NotContains(t, ids, kept)
}

// TestHandlerMounts: the handler behind http.StripPrefix, and under a
// prefix of its own.
func TestHandlerMounts(t *testing.T) {
	reg, err := NewRegistry(context.Background(), RegistryConfig{Logger: quietLogger()})
	require.NoError(t, err)
	t.Cleanup(func() { reg.Close() })
	tenant := func(*http.Request) (string, error) { return "team-1", nil }

	stripped, err := NewHandler(HandlerConfig{Registry: reg, Space: tenant})
	require.NoError(t, err)
	prefixed, err := NewHandler(HandlerConfig{Registry: reg, Space: tenant, Prefix: "/v1/{tenant}/Webhooks/"})
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/hooks/", http.StripPrefix("/hooks", stripped))
	mux.Handle("/v1/", prefixed)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	resp, err := srv.Client().Post(srv.URL+"/hooks/", "application/json", strings.NewReader(testBody))
	require.NoError(t, err)
	var created struct{ Data entityAnswer }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&created))
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)

	for _, path := range []string{"/hooks/" + created.Data.ID, "/v1/x/Webhooks/" + created.Data.ID, "/v1/x/Web%68ooks/" + created.Data.ID} {
		resp, err := srv.Client().Get(srv.URL + path)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
	}
	for _, path := range []string{"/v1/x/Hooks/" + created.Data.ID, "/v1//Webhooks", "/v1/x", "/v1/x/Webhooks/a/b"} {
		resp, err := srv.Client().Get(srv.URL + path)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusNotFound, resp.StatusCode, path)
	}

	for _, cfg := range []HandlerConfig{
		{Space: tenant},
		{Registry: reg},
		{Registry: reg, Space: tenant, Prefix: "v1/Webhooks"},
		{Registry: reg, Space: tenant, Prefix: "/v1//Webhooks"},
		{Registry: reg, Space: tenant, Prefix: "/v1/{a}b/Webhooks"},
	} {
		_, err := NewHandler(cfg)
		require.Error(t, err, "%+v", cfg)
	}
}

// TestHandlerInternalErrors: a Registry that fails answers 500 with a
// generic message; the detail goes to the log, without a signature, the
// request's or the one stored.
func TestHandlerInternalErrors(t *testing.T) {
	store := &failingStore{}
	s := newRESTServer(t, RegistryConfig{Store: store})
	stored := s.create("team-1", `{"url":"https://example.com/hooks","events":["Account.Create"],"signature":"`+testSignature+`"}`)
	store.fail.Store(true)
	const other = "fedcba98-7654-4321-8fed-cba987654321"
	for _, a := range []restAnswer{
		s.do(http.MethodPost, "team-1", "", `{"url":"https://user:hunter2-password@example.com/hooks","events":["Account.Create"],"signature":"`+other+`"}`),
		s.do(http.MethodPatch, "team-1", "/"+stored.ID, `{"url":"https://example.com/v2"}`),
		s.do(http.MethodDelete, "team-1", "/"+stored.ID, ""),
		s.do(http.MethodPost, "team-1", "/batch-modify", `[{"id":"`+stored.ID+`","insecure_ssl":true}]`),
	} {
		e := a.failed(t, http.StatusInternalServerError, "ERROR_INTERNAL")
		require.Equal(t, "internal error", e.Message)
		require.NotContains(t, string(a.body), "on fire")
	}
	// Item by item, the item's error is in its place, and logged too.
	a := s.do(http.MethodPost, "team-1", "/batch-modify?rollback-method=1", `[{"id":"`+stored.ID+`","insecure_ssl":true}]`)
	var e apiError
	require.NoError(t, json.Unmarshal(lastItem(t, a), &e))
	require.Equal(t, apiError{HTTPStatus: 500, Code: errInternal.code, Name: errInternal.name, Message: "internal error"}, e)
	logs := s.logs.String()
	require.Equal(t, 5, strings.Count(logs, "the disk is on fire"), logs)
	require.NotContains(t, logs, testSignature)
	require.NotContains(t, logs, other)
	require.NotContains(t, logs, "hunter2-password", "a URL's password is a secret too")
	require.Contains(t, logs, stored.ID, "the request's own ids stay")
}

// failingStore fails every write once fail is set, with the
// registrations in its error, signatures and all, as a careless Store
// might.
type failingStore struct {
	fail    atomic.Bool
	mu      sync.Mutex
	version int64
}

func (s *failingStore) Write(_ context.Context, changes ...Stored) ([]Stored, error) {
	if s.fail.Load() {
		return nil, fmt.Errorf("the disk is on fire while writing %+v", changes)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Clone(changes)
	for i := range out {
		s.version++
		out[i].Version = s.version
	}
	return out, nil
}

func (*failingStore) Changes(context.Context, int64) ([]Stored, error) { return nil, nil }

func (*failingStore) Wait(ctx context.Context, _ int64) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestHandlerConflicts: a registration that another replica keeps
// changing answers 409.
func TestHandlerConflicts(t *testing.T) {
	s := newRESTServer(t, RegistryConfig{Store: &racedStore{}})
	got := s.create("team-1", testBody)
	s.do(http.MethodPatch, "team-1", "/"+got.ID, `{"insecure_ssl":true}`).failed(t, http.StatusConflict, "ERROR_CONFLICT")
	s.do(http.MethodDelete, "team-1", "/"+got.ID, "").failed(t, http.StatusConflict, "ERROR_CONFLICT")
}

// racedStore stores new registrations and refuses every other change, as
// if another replica had always changed it first.
type racedStore struct {
	mu      sync.Mutex
	version int64
}

func (s *racedStore) Write(_ context.Context, changes ...Stored) ([]Stored, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Clone(changes)
	for i := range out {
		if out[i].Version != 0 {
			return nil, fmt.Errorf("registration %s: %w", out[i].Key, ErrConflict)
		}
		s.version++
		out[i].Version = s.version
	}
	return out, nil
}

func (*racedStore) Changes(context.Context, int64) ([]Stored, error) { return nil, nil }

func (*racedStore) Wait(ctx context.Context, _ int64) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestHandlerCancelled: a request whose context ends answers 503, not an
// internal error.
func TestHandlerCancelled(t *testing.T) {
	s := newRESTServer(t, RegistryConfig{})
	h, err := NewHandler(HandlerConfig{Registry: s.reg, Space: testSpace})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(ctx, http.MethodGet, "/", nil))
	a := restAnswer{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
	a.failed(t, http.StatusServiceUnavailable, "ERROR_SERVICE_UNAVAILABLE")
}

// TestHandlerConcurrentTenants: tenants working at once see only their
// own registrations (run with -race).
func TestHandlerConcurrentTenants(t *testing.T) {
	s := newRESTServer(t, RegistryConfig{})
	var wg sync.WaitGroup
	for tenant := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			space := fmt.Sprint("team-", tenant)
			var mine []string
			for range 10 {
				ans := s.do(http.MethodPost, space, "", testBody)
				if ans.status != http.StatusCreated {
					t.Errorf("create: %d %s", ans.status, ans.body)
					return
				}
				var got okJSON
				var e entityAnswer
				if json.Unmarshal(ans.body, &got) != nil || json.Unmarshal(got.Data, &e) != nil || e.ID == "" {
					t.Errorf("create answered %s", ans.body)
					return
				}
				mine = append(mine, e.ID)
				if ans := s.do(http.MethodPatch, space, "/"+e.ID, `{"insecure_ssl":true}`); ans.status != http.StatusOK {
					t.Errorf("patch: %d %s", ans.status, ans.body)
					return
				}
			}
			ans := s.do(http.MethodGet, space, "?first=100", "")
			var got okJSON
			var items []entityAnswer
			if ans.status != http.StatusOK || json.Unmarshal(ans.body, &got) != nil || json.Unmarshal(got.Data, &items) != nil {
				t.Errorf("list: %d %s", ans.status, ans.body)
				return
			}
			var listed []string
			for _, it := range items {
				listed = append(listed, it.ID)
				if !it.InsecureSSL {
					t.Errorf("%s lists %s without its patch", space, it.ID)
				}
			}
			slices.Sort(mine)
			slices.Sort(listed)
			if !slices.Equal(mine, listed) {
				t.Errorf("%s lists %v, created %v", space, listed, mine)
			}
		}()
	}
	wg.Wait()
}

// fuzzID is a registration of team-1 that fuzzing starts from;
// FuzzHandler's seeds name it.
const fuzzID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"

// handlerSeeds are requests of the tests above, for FuzzHandler to start
// from: method, path below team-1's Webhooks with its query, body and
// Content-Type.
var handlerSeeds = []struct{ method, path, body, contentType string }{
	{"POST", "", testBody, "application/json"},
	{"POST", "", `{"url":42,"events":["Account.Explode"],"insecure_ssl":"yes","options":{"chunk_size":1000}}`, "application/json"},
	{"POST", "", `{"url":"https://user:pw@exa mple.com/","events":["Account.Create"],"signature":"not-a-uuid","id":"` + otherID + `"}`, "application/json"},
	{"POST", "", `{"url":"https://example.com/","events":["Contact.Update"],"options":{"entity":{"Contact":{"filter":{"a":[1,2]},"filter-op":{"a":"between"}}}}}`, "application/json"},
	{"POST", "", `[]`, "application/json"},
	{"POST", "", `{"url":`, "application/json"},
	{"POST", "", testBody, "text/plain"},
	{"PUT", "", testBody, "application/json"},
	{"GET", "", "", ""},
	{"GET", "/", "", ""},
	{"GET", "?first=2&order-by=-url,created", "", ""},
	{"GET", "?last=3&before=" + b64(`["created,id","2026-11-26T10:15:00","`+fuzzID+`"]`), "", ""},
	{"GET", "?after=" + b64(`["created,id",1]`), "", ""},
	{"GET", "?after=%%%", "", ""},
	{"GET", "?filter[url]=example&filter-op[url]=contains&load-only=id,url", "", ""},
	{"GET", "?filter[created]=a,b&filter-op[created]=between", "", ""},
	{"GET", "?filter-op[signature]=null&filter[events]=Account.Create", "", ""},
	{"GET", "?filter[a..b]=1&load-only=,", "", ""},
	{"GET", "?first=1;last=2&include-deleted=maybe", "", ""},
	{"GET", "?last=100&order-by=-insecure_ssl,modified,id&expand=owner&include-deleted=true", "", ""},
	{"GET", "?filter[options.chunk_size]=4&filter-op[options.chunk_size]=gt&filter[url]=a&filter[url]=b", "", ""},
	{"GET", "?filter-op[disabled]=not-empty&filter[id]=x&filter-op[id]=not-ieq&load-only=options.entity", "", ""},
	{"GET", "?first=5&after=" + b64(`["-url,id","https://example.com/hooks","`+fuzzID+`"]`) + "&order-by=-url", "", ""},
	{"GET", "/" + fuzzID, "", ""},
	{"GET", "/" + otherID, "", ""},
	{"GET", "/" + fuzzID + "/x", "", ""},
	{"PATCH", "/" + fuzzID, `{"url":"https://example.com/new","created":"2001-01-01T00:00:00"}`, "application/json"},
	{"PATCH", "/" + fuzzID + "?validation-level=1", `{"url":[],"events":["Nope.Nope"],"signature":7}`, "application/json; charset=utf-8"},
	{"PATCH", "/" + fuzzID, `null`, "application/json"},
	{"DELETE", "/" + fuzzID, "", ""},
	{"DELETE", "/x", "", ""},
	{"POST", "/batch-delete", `["` + fuzzID + `","` + otherID + `",""]`, "application/json"},
	{"POST", "/batch-delete?rollback-method=1", `["` + fuzzID + `","` + otherID + `"]`, "application/json"},
	{"POST", "/batch-modify", `[{"id":"` + fuzzID + `","url":"https://example.com/b"},{"url":"https://example.com/c","events":["Lead.*"]}]`, "application/json"},
	{"POST", "/batch-modify?rollback-method=1", `[{"id":7,"url":8},{"url":9,"events":["Nope.Nope"]},{"id":"` + otherID + `"}]`, "application/json"},
	{"GET", "/batch-modify", "", ""},
}

// FuzzHandler sends random requests to a handler over real HTTP: none
// gets a 5xx or panics, every answer is Pipeliner's JSON, and nothing of
// another space shows or changes.
func FuzzHandler(f *testing.F) {
	for _, s := range handlerSeeds {
		path, query, _ := strings.Cut(s.path, "?")
		f.Add(s.method, path, query, []byte(s.body), s.contentType)
	}
	ctx := context.Background()
	reg, err := NewRegistry(ctx, RegistryConfig{Logger: quietLogger()})
	require.NoError(f, err)
	f.Cleanup(func() { reg.Close() })
	// The handler is the server's, without a ServeMux in front, so that
	// every path reaches it; every request is team-1's.
	h, err := NewHandler(HandlerConfig{Registry: reg, Prefix: restPrefix, Logger: quietLogger(),
		Space: func(*http.Request) (string, error) { return "team-1", nil }})
	require.NoError(f, err)
	srv := httptest.NewServer(h)
	f.Cleanup(srv.Close)
	const theirURL = "https://other-space.example.com/their-secret-path"
	theirs, err := reg.Create(ctx, "team-2", Webhook{URL: theirURL, Events: []string{"*"}, Signature: testSignature})
	require.NoError(f, err)

	f.Fuzz(func(t *testing.T, method, path, query string, body []byte, contentType string) {
		if _, err := reg.Get(ctx, "team-1", fuzzID); err != nil {
			_, err := reg.Create(ctx, "team-1", Webhook{ID: fuzzID, URL: "https://example.com/hooks", Events: []string{"Account.Create"}})
			require.NoError(t, err)
		}
		if query != "" {
			path += "?" + query
		}
		req, err := http.NewRequest(method, srv.URL+"/api/v100/rest/spaces/team-1/entities/Webhooks"+path, bytes.NewReader(body))
		// What a client cannot send, or net/http's server refuses before
		// the handler sees it.
		if err != nil || strings.ContainsFunc(contentType, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) ||
			strings.ContainsFunc(req.URL.RequestURI(), func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
			t.Skip("not a request a client can send")
		}
		req.Header.Set("Content-Type", contentType)
		resp, err := srv.Client().Do(req)
		require.NoError(t, err, "the handler panicked, or broke the connection")
		answer, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)

		require.Less(t, resp.StatusCode, 500, "answer: %s", answer)
		require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
		var got struct {
			Success    *bool `json:"success"`
			HTTPStatus int   `json:"http_status"`
		}
		require.NoError(t, json.Unmarshal(answer, &got), "answer: %s", answer)
		require.NotNil(t, got.Success)
		if resp.StatusCode >= 400 {
			require.False(t, *got.Success)
			require.Equal(t, resp.StatusCode, got.HTTPStatus)
		}
		require.NotContains(t, string(answer), theirURL)
		require.NotContains(t, string(answer), theirs.ID)
		after, err := reg.Get(ctx, "team-2", theirs.ID)
		require.NoError(t, err)
		require.Equal(t, theirs, after)

		// Keep the registry small, so that lists stay fast.
		if hooks, _ := reg.List(ctx, "team-1"); len(hooks) > 50 {
			for _, h := range hooks {
				reg.Delete(ctx, "team-1", h.ID)
			}
		}
	})
}
