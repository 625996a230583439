package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DefaultMaxBodyBytes is the largest request body a Handler reads when
// HandlerConfig.MaxBodyBytes is 0: 1 MiB, room for a batch of a hundred
// registrations with large options.
const DefaultMaxBodyBytes = 1 << 20

// HandlerConfig configures a Handler. NewHandler reads it once; changing
// it later has no effect.
type HandlerConfig struct {
	// Registry holds the registrations the Handler serves. Required.
	Registry *Registry
	// Space returns the team space (tenant) of a request. Every Registry
	// call the request makes is made in that space, so a request never
	// reads or changes another space's registrations. It typically reads
	// what the host's authentication put into the request's context, or a
	// path wildcard the host has checked (r.PathValue("space")). Required.
	//
	// An error answers 404 ERROR_SPACE_NOT_FOUND when it wraps ErrNotFound,
	// else 401 ERROR_UNAUTHORIZED; the error's text is logged at Info
	// level, never sent.
	Space func(r *http.Request) (string, error)
	// Prefix is the path the Handler is mounted at, such as Pipeliner's
	// "/api/v100/rest/spaces/{space}/entities/Webhooks". The Handler serves
	// Prefix itself (list, create), Prefix+"/{id}" (get, update, delete),
	// Prefix+"/batch-delete" and Prefix+"/batch-modify". A segment written
	// {name} matches any one segment, as in an http.ServeMux pattern. ""
	// means the paths the Handler sees have the prefix removed already, as
	// http.StripPrefix leaves them ("", "/", "/{id}", ...).
	Prefix string
	// MaxBodyBytes is the largest request body the Handler reads; a larger
	// one answers 413. 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Logger gets the detail of every internal error (500), never a
	// signature. nil means slog.Default().
	Logger *slog.Logger
}

// Handler serves Pipeliner's REST API of the Webhook entity
// (/entities/Webhooks) over a Registry: create, list, get, update, delete,
// batch-delete and batch-modify, with Pipeliner's JSON shapes and errors;
// README.md's "The REST API" lists its answers and errors.
//
// A client never chooses a registration's id, created, modified or
// disabled: bodies are read into a Patch, which has none of them. Answers
// show a registration's signature to the space that owns it, as
// Pipeliner's do; no error message or log line shows a signature, or the
// password of a URL, that a request carries.
//
// A Handler is safe for simultaneous use by multiple goroutines and starts
// none of its own. The zero value is unusable: use NewHandler.
type Handler struct {
	reg     *Registry
	space   func(*http.Request) (string, error)
	prefix  []string // the Prefix's segments; a {name} segment matches any
	maxBody int64
	log     *slog.Logger
}

// NewHandler returns a Handler for cfg. It fails when Registry or Space
// is missing, or Prefix is not a path.
func NewHandler(cfg HandlerConfig) (*Handler, error) {
	if cfg.Registry == nil {
		return nil, errors.New("webhook: NewHandler: HandlerConfig.Registry is nil")
	}
	if cfg.Space == nil {
		return nil, errors.New("webhook: NewHandler: HandlerConfig.Space is nil: the handler must know every request's space")
	}
	h := &Handler{reg: cfg.Registry, space: cfg.Space, maxBody: cfg.MaxBodyBytes, log: cfg.Logger}
	if h.maxBody <= 0 {
		h.maxBody = DefaultMaxBodyBytes
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	if p := strings.TrimSuffix(cfg.Prefix, "/"); p != "" {
		if !strings.HasPrefix(p, "/") {
			return nil, fmt.Errorf("webhook: NewHandler: Prefix %q does not start with /", cfg.Prefix)
		}
		h.prefix = strings.Split(p[1:], "/")
		for _, seg := range h.prefix {
			if seg == "" || strings.ContainsAny(seg, "{}") && !isWildcard(seg) {
				return nil, fmt.Errorf("webhook: NewHandler: Prefix %q: segment %q is neither a name nor a {wildcard}", cfg.Prefix, seg)
			}
		}
	}
	return h, nil
}

func isWildcard(seg string) bool {
	return len(seg) > 2 && seg[0] == '{' && seg[len(seg)-1] == '}' && !strings.ContainsAny(seg[1:len(seg)-1], "{}")
}

// route returns what a path names below the prefix: "" for the
// collection, else one segment (an id, "batch-delete", "batch-modify").
// Segments are compared unescaped, as http.ServeMux compares them.
func (h *Handler) route(u *url.URL) (string, bool) {
	segs := strings.Split(u.EscapedPath(), "/")
	if segs[0] != "" { // a path after http.StripPrefix may lack its leading slash
		segs = append([]string{""}, segs...)
	}
	segs = segs[1:]
	if len(segs) < len(h.prefix) {
		return "", false
	}
	for i, want := range h.prefix {
		seg, err := url.PathUnescape(segs[i])
		if err != nil || seg == "" || !isWildcard(want) && seg != want {
			return "", false
		}
	}
	switch rest := segs[len(h.prefix):]; {
	case len(rest) == 0 || len(rest) == 1 && rest[0] == "":
		return "", true
	case len(rest) == 1:
		seg, err := url.PathUnescape(rest[0])
		return seg, err == nil
	}
	return "", false
}

// ServeHTTP answers one request of Pipeliner's /entities/Webhooks API.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := &restCall{h: h, w: w, r: r}
	rest, ok := h.route(r.URL)
	if !ok {
		c.fail(newError(errNoEndpoint, "no endpoint %s %s", r.Method, shortText(r.URL.Path)))
		return
	}
	space, err := h.space(r)
	if err != nil {
		c.fail(c.spaceError(err))
		return
	}
	c.space = space
	if c.query, err = url.ParseQuery(r.URL.RawQuery); err != nil {
		c.fail(newError(errBadParameter, "the query string is malformed"))
		return
	}
	// validation-level is Pipeliner's switch for its own business rules;
	// registrations have none beyond their validation, so it is read only
	// to refuse a malformed value.
	if _, e := c.intParam("validation-level", 0, -1<<31, 1<<31-1); e != nil {
		c.fail(e)
		return
	}
	switch rest {
	case "":
		c.serve("GET, POST", map[string]func(){http.MethodGet: c.list, http.MethodPost: c.create})
	case "batch-delete":
		c.serve("POST", map[string]func(){http.MethodPost: c.batchDelete})
	case "batch-modify":
		c.serve("POST", map[string]func(){http.MethodPost: c.batchModify})
	default:
		c.ids = append(c.ids, rest)
		c.serve("GET, PATCH, DELETE", map[string]func(){
			http.MethodGet:    func() { c.get(rest) },
			http.MethodPatch:  func() { c.update(rest) },
			http.MethodDelete: func() { c.delete(rest) },
		})
	}
}

// restCall is one request being served.
type restCall struct {
	h     *Handler
	w     http.ResponseWriter
	r     *http.Request
	space string
	query url.Values
	// secrets are the request's signatures and URL passwords: no error
	// message or log line may show them.
	secrets []string
	ids     []string // the registration ids the request names
}

func (c *restCall) serve(allow string, methods map[string]func()) {
	serve, ok := methods[c.r.Method]
	if !ok {
		e := newError(errMethod, "%s is not allowed here; allowed: %s", shortText(c.r.Method), allow)
		e.allow = allow
		c.fail(e)
		return
	}
	serve()
}

func (c *restCall) spaceError(err error) *apiError {
	c.h.log.InfoContext(c.r.Context(), "webhook: REST request refused: no space",
		"method", c.r.Method, "path", c.r.URL.Path, "error", err.Error())
	if errors.Is(err, ErrNotFound) {
		return newError(errNoSpace, "no such team space")
	}
	return newError(errUnauthorized, "the request may not use webhooks of any team space")
}

func (c *restCall) create() {
	p, typeErrs, e := c.readPatch()
	if e != nil {
		c.fail(e)
		return
	}
	hook := newWebhook(p)
	if len(typeErrs) > 0 {
		c.fail(c.invalid("", typeErrs, c.h.validate(hook)))
		return
	}
	hook, err := c.h.reg.Create(c.r.Context(), c.space, hook)
	if err != nil {
		c.fail(c.registryError(err, ""))
		return
	}
	c.entity(http.StatusCreated, hook)
}

func (c *restCall) get(id string) {
	if !isUUID(id) {
		c.fail(entityNotFound(id))
		return
	}
	hook, err := c.h.reg.Get(c.r.Context(), c.space, id)
	if err != nil {
		c.fail(c.registryError(err, id))
		return
	}
	c.entity(http.StatusOK, hook)
}

func (c *restCall) update(id string) {
	if !isUUID(id) {
		c.fail(entityNotFound(id))
		return
	}
	p, typeErrs, e := c.readPatch()
	if e != nil {
		c.fail(e)
		return
	}
	if len(typeErrs) > 0 {
		c.fail(c.invalidUpdate(id, p, typeErrs))
		return
	}
	hook, err := c.h.reg.Update(c.r.Context(), c.space, id, p)
	if err != nil {
		c.fail(c.registryError(err, id))
		return
	}
	c.entity(http.StatusOK, hook)
}

func (c *restCall) delete(id string) {
	if !isUUID(id) {
		c.fail(entityNotFound(id))
		return
	}
	if err := c.h.reg.Delete(c.r.Context(), c.space, id); err != nil {
		c.fail(c.registryError(err, id))
		return
	}
	c.answer(http.StatusOK, answer{Success: true, Data: id})
}

// invalidUpdate is the 422 of an update whose body has fields of the
// wrong type (typeErrs): they are reported together with what validation
// finds in the registration the others would make.
func (c *restCall) invalidUpdate(id string, p Patch, typeErrs FieldErrors) *apiError {
	cur, err := c.h.reg.Get(c.r.Context(), c.space, id)
	if err != nil {
		return c.registryError(err, id)
	}
	return c.invalid(id, typeErrs, c.h.validate(patched(cur, p)))
}

// validate returns every problem of w as a new registration, and
// stores nothing.
func (h *Handler) validate(w Webhook) error { return h.reg.check(w) }

// newWebhook is the registration a create body asks for. It is built from
// a Patch, which has no id, created, modified or disabled: a client never
// chooses them.
func newWebhook(p Patch) Webhook {
	return patched(Webhook{}, p)
}

// patched returns w with p applied, as a new registration for validate:
// without its ID, times and Disabled.
func patched(w Webhook, p Patch) Webhook {
	w.ID, w.Space, w.Created, w.Modified, w.Disabled = "", "", time.Time{}, time.Time{}, nil
	p.apply(&w)
	return w
}

// readPatch reads a body that holds one registration's fields.
func (c *restCall) readPatch() (Patch, FieldErrors, *apiError) {
	b, e := c.readBody()
	if e != nil {
		return Patch{}, nil, e
	}
	p, typeErrs, err := decodePatchBody(b)
	if err != nil {
		return Patch{}, nil, newError(errBadJSON, "the body must be a JSON object")
	}
	c.keepSecrets(p)
	return p, typeErrs, nil
}

// readBody reads a request's JSON body, within the size limit.
func (c *restCall) readBody() ([]byte, *apiError) {
	if !isJSONMediaType(c.r.Header.Get("Content-Type")) {
		return nil, newError(errMediaType, "the body must be JSON, sent with Content-Type: application/json")
	}
	b, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, c.h.maxBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, newError(errTooLarge, "the body is larger than %d bytes", c.h.maxBody)
	case err != nil:
		return nil, newError(errBadJSON, "the body could not be read")
	case !json.Valid(b):
		return nil, newError(errBadJSON, "the body is not valid JSON")
	}
	return b, nil
}

// isJSONMediaType accepts application/json and +json types, in UTF-8.
func isJSONMediaType(ct string) bool {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" && !strings.HasSuffix(mt, "+json") {
		return false
	}
	cs, ok := params["charset"]
	return !ok || strings.EqualFold(cs, "utf-8")
}

// keepSecrets notes the signature and the URL password of a body, which no
// error message or log line of the request may show.
func (c *restCall) keepSecrets(p Patch) {
	var secrets []string
	if p.Signature != nil {
		secrets = append(secrets, *p.Signature)
	}
	if p.URL != nil {
		pw := urlPassword(*p.URL)
		unescaped, _ := url.PathUnescape(pw) // a message may show it either way
		secrets = append(secrets, pw, unescaped)
	}
	for _, s := range secrets {
		if len(s) >= minSecret {
			c.secrets = append(c.secrets, s)
		}
	}
}

// urlPassword returns the password of a URL's user information, as
// written, also of a URL that does not parse (whose error repeats it).
func urlPassword(s string) string {
	_, rest, ok := strings.Cut(s, "://")
	if !ok {
		return ""
	}
	if end := strings.IndexAny(rest, "/?#"); end >= 0 {
		rest = rest[:end]
	}
	at := strings.LastIndexByte(rest, '@')
	if at < 0 {
		return ""
	}
	_, pw, _ := strings.Cut(rest[:at], ":")
	return pw
}

// minSecret is the length from which a secret is redacted: shorter ones
// would blank out ordinary words, and are not a usable signature anyway.
const minSecret = 6

// redact replaces the request's secrets in s.
func (c *restCall) redact(s string) string {
	for _, secret := range c.secrets {
		s = strings.ReplaceAll(s, secret, "[redacted]")
	}
	return s
}

// redactLog is redact for the detail of an internal error, which may
// repeat what the Registry or its Store holds: every UUID in it but the
// ids the request names is replaced too, since a stored signature is a
// UUID.
func (c *restCall) redactLog(s string) string {
	s = c.redact(s)
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if u := s[i:min(i+36, len(s))]; isUUID(u) && !slices.Contains(c.ids, u) {
			b.WriteString("[uuid]")
			i += len(u) - 1
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// intParam reads an integer query parameter, def when absent.
func (c *restCall) intParam(name string, def, lo, hi int) (int, *apiError) {
	s, ok, e := c.param(name)
	if e != nil || !ok {
		return def, e
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, newError(errBadParameter, "%s=%s: want a whole number from %d to %d", name, shortText(s), lo, hi)
	}
	return n, nil
}

// param reads a query parameter given at most once.
func (c *restCall) param(name string) (string, bool, *apiError) {
	vals, ok := c.query[name]
	if len(vals) > 1 {
		return "", false, newError(errBadParameter, "%s is given %d times; give it once", name, len(vals))
	}
	if !ok {
		return "", false, nil
	}
	return vals[0], true, nil
}

// entity answers with one registration.
func (c *restCall) entity(status int, hook Webhook) {
	raw, err := webhookAnswer(hook)
	if err != nil {
		c.fail(c.internal(err))
		return
	}
	c.answer(status, answer{Success: true, Data: raw})
}

// webhookAnswer is a registration as Pipeliner's Webhook entity: its JSON,
// with is_delete_protected and is_deleted, which are always false here
// (pipeliner/reference.md: no delete protection, deletes are final).
func webhookAnswer(hook Webhook) (json.RawMessage, error) {
	b, err := json.Marshal(hook)
	if err != nil {
		return nil, err
	}
	return append(b[:len(b)-1], `,"is_delete_protected":false,"is_deleted":false}`...), nil
}

// answer is a successful answer's JSON.
type answer struct {
	Success  bool      `json:"success"`
	Data     any       `json:"data"`
	PageInfo *pageInfo `json:"page_info,omitempty"`
}

func (c *restCall) answer(status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		c.h.log.ErrorContext(c.r.Context(), "webhook: REST answer not encoded", "error", c.redact(err.Error()))
		status, b = http.StatusInternalServerError, internalErrorJSON
	}
	h := c.w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store") // answers carry signatures
	c.w.WriteHeader(status)
	c.w.Write(append(b, '\n')) // as json.Encoder ends a value, and a terminal likes it
}

// shortText keeps echoed input readable and valid in messages.
func shortText(s string) string {
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
