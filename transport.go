package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"
)

// Transport sends one webhook request. A Dispatcher calls it from several
// goroutines at once, so implementations must be safe for simultaneous use.
// A Transport reports what the receiver answered; the Dispatcher decides
// what counts as delivered (a 2xx status).
type Transport interface {
	Send(ctx context.Context, req *Request) (*Response, error)
}

// Request is one POST to a receiver, as a Transport gets it: the headers
// and body are final and signed. A Transport must not modify it.
type Request struct {
	URL         string
	Header      http.Header // Content-Type, User-Agent, webhook-id, webhook-timestamp, and the signature when the registration has one
	Body        []byte      // the JSON array of items
	InsecureSSL bool        // the receiver's TLS certificate is not to be verified
	WebhookID   string      // the registration it goes to
	EventIDs    []string    // the events it carries, in order
}

// Response is what a receiver answered.
type Response struct {
	StatusCode int
	Header     http.Header
	Body       []byte // its first HTTPConfig.MaxResponseBody bytes (64 KiB by default), for diagnostics
}

// Defaults of HTTPConfig.
const (
	// defaultTimeout is within the 15 to 30 seconds Standard Webhooks
	// recommends.
	defaultTimeout = 30 * time.Second
	// defaultConnectTimeout is a third of it: a receiver that does not
	// even accept a connection leaves time for nothing else.
	defaultConnectTimeout = 10 * time.Second
	// defaultMaxResponseBody bounds what is read of an answer: receivers
	// are to answer quickly and briefly, and a large answer must not cost
	// memory.
	defaultMaxResponseBody = 64 << 10
	// defaultMaxResponseHeader bounds an answer's status line and header
	// for the same reason: net/http reads up to 10 MiB of them otherwise,
	// per attempt. Real answers carry a few hundred bytes; 64 KiB leaves
	// room for a proxy's cookies and tracing headers.
	defaultMaxResponseHeader = 64 << 10
	// keepAlive is what net.Dialer and http.DefaultTransport use.
	keepAlive = 30 * time.Second
)

// HTTPConfig configures an HTTPTransport. The zero value is the default:
// the SSRF guard on, 30 second requests, 10 second connects, 64 KiB of
// each answer's header read and 64 KiB of its body kept. NewHTTPTransport
// reads it once.
type HTTPConfig struct {
	// Client sends the requests. nil means a client of the transport's own.
	// Its Timeout and Jar are kept; redirects are never followed, since a
	// 3xx is a failed delivery, and so a redirect cannot lead past the
	// AddressPolicy either. When its Transport is an *http.Transport (or
	// nil, meaning http.DefaultTransport), the HTTPTransport sends through
	// two clones of it, one that verifies TLS certificates and one for
	// insecure_ssl registrations, and leaves the original alone; see
	// HTTPTransport for what the clones change. Any other RoundTripper is
	// used as it is: then only the URL's host is checked (CheckURL), and
	// the RoundTripper decides about dialling, proxies, certificates and
	// TLS versions, and how much of an answer's header it reads.
	Client *http.Client

	// AddressPolicy decides which addresses requests may go to. The zero
	// value refuses loopback, private, link-local and the like.
	AddressPolicy

	// Timeout bounds each request, from dialling to the last byte of the
	// answer that is read. 0 means 30 seconds. It applies as a context
	// deadline, so it holds with the host's client as well, beside that
	// client's own Timeout.
	Timeout time.Duration
	// ConnectTimeout bounds each connection attempt. 0 means 10 seconds.
	// It applies to the host's DialContext and DialTLSContext too.
	ConnectTimeout time.Duration
	// MaxResponseBody is the most bytes of an answer read into
	// Response.Body; the rest is never read, the connection is closed
	// instead. 0 means 64 KiB.
	MaxResponseBody int64
	// MaxResponseHeader is the most bytes of an answer's status line and
	// header fields that are read, so that a receiver cannot make the
	// sender hold megabytes per attempt. An answer with more fails the
	// attempt: over HTTP/1 with net/http's "server response headers
	// exceeded" error, over HTTP/2 with a protocol error. 0 means 64 KiB.
	// It replaces the MaxResponseHeaderBytes of the client's
	// *http.Transport in the clones.
	MaxResponseHeader int64
	// Resolver resolves receivers' names when the HTTPTransport dials
	// itself, that is when the client's *http.Transport has no
	// DialContext of its own. nil means net.DefaultResolver.
	Resolver *net.Resolver
}

// HTTPTransport is the default Transport: it POSTs each request over HTTP.
// An HTTPTransport is safe for simultaneous use by multiple goroutines.
//
// Certificates are verified unless the registration sets insecure_ssl, and
// TLS below 1.2 is refused. Every request is checked against the
// AddressPolicy twice: its URL before sending, so that a refused IP literal
// fails at once, and every address it connects to, after DNS resolution,
// so that a name resolving to a refused address, and DNS rebinding, fail
// too. A refusal is an error wrapping ErrRefusedAddress.
//
// The clones of the client's *http.Transport read at most
// HTTPConfig.MaxResponseHeader bytes of an answer's header, and enforce
// the policy as follows. Without a DialContext of the host's, they dial with a
// net.Dialer whose Control checks each resolved address before the
// connection is attempted, so nothing at all reaches a refused address.
// With the host's DialContext (or DialTLSContext, or the deprecated Dial
// and DialTLS), that function decides where to connect, so they check the
// connection's remote address once it is made and close it if refused:
// the address sees a connection but never a request. A connection without
// an IP address (a pipe, a Unix socket) is refused, since it cannot be
// checked.
//
// While the guard is on (AllowPrivateNetworks unset), the clones send
// directly, never through a proxy, neither the client's nor HTTP_PROXY's:
// a proxy resolves the name itself, out of the guard's sight, and the
// guard would see only the proxy's own address, which is usually private.
// A host whose requests must leave through a proxy sets
// AllowPrivateNetworks and has the proxy enforce its egress rules, or
// gives a RoundTripper of its own.
type HTTPTransport struct {
	secure, insecure *http.Client
	owned            []*http.Transport // the clones it made, to close
	policy           AddressPolicy
	timeout          time.Duration
	maxBody          int64
}

// NewHTTPTransport returns an HTTPTransport configured by cfg.
func NewHTTPTransport(cfg HTTPConfig) *HTTPTransport {
	base := cfg.Client
	if base == nil {
		base = &http.Client{}
	}
	t := &HTTPTransport{policy: cfg.AddressPolicy, timeout: cfg.Timeout, maxBody: cfg.MaxResponseBody}
	if t.timeout <= 0 {
		t.timeout = defaultTimeout
	}
	if t.maxBody <= 0 {
		t.maxBody = defaultMaxResponseBody
	}
	// A copy, so that a caller changing its slice later changes nothing.
	t.policy.AllowedPrefixes = slices.Clone(cfg.AllowedPrefixes)
	client := func(insecure bool) *http.Client {
		c := *base
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		rt := c.Transport
		if rt == nil {
			rt = http.DefaultTransport
		}
		if ht, ok := rt.(*http.Transport); ok {
			// http.DefaultTransport's dialer is nobody's choice in
			// particular: replace it with one the guard can check early.
			clone := t.harden(ht.Clone(), ht == http.DefaultTransport, cfg, insecure)
			t.owned = append(t.owned, clone)
			rt = clone
		}
		c.Transport = rt
		return &c
	}
	t.secure, t.insecure = client(false), client(true)
	return t
}

// harden makes a clone of the host's transport what HTTPTransport's doc
// says: guarded dials, no proxy, TLS 1.2 or later, a bounded header.
func (t *HTTPTransport) harden(clone *http.Transport, ownDialer bool, cfg HTTPConfig, insecure bool) *http.Transport {
	clone.MaxResponseHeaderBytes = cfg.MaxResponseHeader
	if clone.MaxResponseHeaderBytes <= 0 {
		clone.MaxResponseHeaderBytes = defaultMaxResponseHeader
	}
	if clone.TLSClientConfig == nil {
		clone.TLSClientConfig = &tls.Config{}
	}
	clone.TLSClientConfig.InsecureSkipVerify = insecure
	if clone.TLSClientConfig.MinVersion < tls.VersionTLS12 {
		clone.TLSClientConfig.MinVersion = tls.VersionTLS12
	}
	guard := !t.policy.AllowPrivateNetworks
	if guard {
		clone.Proxy = nil
	}
	connect := cfg.ConnectTimeout
	if connect <= 0 {
		connect = defaultConnectTimeout
	}

	// The deprecated Dial and DialTLS are used only without their
	// context-taking successors; fold them in, so that one guard covers all.
	if clone.DialContext == nil && clone.Dial != nil {
		dial := clone.Dial
		clone.DialContext = func(_ context.Context, network, addr string) (net.Conn, error) { return dial(network, addr) }
	}
	if clone.DialTLSContext == nil && clone.DialTLS != nil {
		dial := clone.DialTLS
		clone.DialTLSContext = func(_ context.Context, network, addr string) (net.Conn, error) { return dial(network, addr) }
	}
	clone.Dial, clone.DialTLS = nil, nil

	if ownDialer || clone.DialContext == nil {
		d := &net.Dialer{Timeout: connect, KeepAlive: keepAlive, Resolver: cfg.Resolver}
		if guard {
			d.Control = t.checkDial
		}
		clone.DialContext = d.DialContext
	} else {
		clone.DialContext = t.wrapDial(clone.DialContext, connect, guard)
	}
	if clone.DialTLSContext != nil {
		clone.DialTLSContext = t.wrapDial(clone.DialTLSContext, connect, guard)
	}
	return clone
}

// checkDial is a net.Dialer's Control: it runs once the name is resolved
// and before the connection is attempted, for every address tried.
func (t *HTTPTransport) checkDial(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		// Fail closed: what cannot be checked is not allowed.
		return fmt.Errorf("%w: %s address %q: %v", ErrRefusedAddress, network, address, err)
	}
	return t.policy.CheckAddr(ap.Addr())
}

type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// wrapDial bounds the host's dial function by the connect timeout and,
// with the guard on, checks where the connection it returns leads.
func (t *HTTPTransport) wrapDial(dial dialFunc, connect time.Duration, guard bool) dialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		dctx, cancel := context.WithTimeout(ctx, connect)
		defer cancel()
		conn, err := dial(dctx, network, addr)
		if err != nil || !guard {
			return conn, err
		}
		if err := t.checkRemote(conn.RemoteAddr()); err != nil {
			conn.Close()
			return nil, &net.OpError{Op: "dial", Net: network, Addr: conn.RemoteAddr(), Err: err}
		}
		return conn, nil
	}
}

func (t *HTTPTransport) checkRemote(addr net.Addr) error {
	if tcp, ok := addr.(*net.TCPAddr); ok {
		return t.policy.CheckAddr(tcp.AddrPort().Addr())
	}
	if addr == nil {
		return fmt.Errorf("%w: the connection has no remote address", ErrRefusedAddress)
	}
	// Fail closed, as checkDial does: a pipe or a Unix socket has no IP
	// address to check.
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return fmt.Errorf("%w: %s address %q: %v", ErrRefusedAddress, addr.Network(), addr.String(), err)
	}
	return t.policy.CheckAddr(ap.Addr())
}

// Send POSTs req and returns the receiver's answer, whatever its status.
// An address the AddressPolicy refuses is an error wrapping
// ErrRefusedAddress; a request that outlasts HTTPConfig.Timeout is one
// wrapping context.DeadlineExceeded.
func (t *HTTPTransport) Send(ctx context.Context, req *Request) (*Response, error) {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, req.URL, bytes.NewReader(req.Body))
	if err != nil {
		return nil, err
	}
	// The dial-time check would refuse a literal too, but only after a
	// connection is attempted; this way it is refused at once, and
	// through any RoundTripper. (CheckURL, on the URL already parsed.)
	if err := t.policy.checkHost(hreq.URL.Hostname()); err != nil {
		return nil, err
	}
	// Not a copy: a RoundTripper must not modify the request.
	hreq.Header = req.Header
	client := t.secure
	if req.InsecureSSL {
		client = t.insecure
	}
	resp, err := client.Do(hreq)
	if err != nil {
		return nil, err
	}
	// Closing before the end drops the connection rather than reading the
	// rest of a large answer.
	defer resp.Body.Close()
	var body []byte
	if resp.ContentLength != 0 { // most receivers answer nothing: no buffer for it
		if body, err = io.ReadAll(io.LimitReader(resp.Body, t.maxBody)); err != nil {
			return nil, err
		}
	}
	return &Response{StatusCode: resp.StatusCode, Header: resp.Header, Body: body}, nil
}

// Close closes the idle connections of the transports it created; it
// never touches the caller's client.
func (t *HTTPTransport) Close() error {
	for _, ht := range t.owned {
		ht.CloseIdleConnections()
	}
	return nil
}

// Recorder is a Transport that keeps every request in memory and answers
// 200, so that a host's tests can check what its code sends without a
// network. The zero value is ready to use. A Recorder is safe for
// simultaneous use by multiple goroutines.
type Recorder struct {
	mu   sync.Mutex
	reqs []*Request
}

// Send records a copy of req.
func (r *Recorder) Send(ctx context.Context, req *Request) (*Response, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, req.clone())
	r.mu.Unlock()
	return &Response{StatusCode: http.StatusOK, Header: http.Header{}}, nil
}

// Requests returns copies of the requests recorded so far, in the order
// they were sent.
func (r *Recorder) Requests() []*Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Request, len(r.reqs))
	for i, req := range r.reqs {
		out[i] = req.clone()
	}
	return out
}

func (req *Request) clone() *Request {
	c := *req
	c.Header = req.Header.Clone()
	c.Body = bytes.Clone(req.Body)
	c.EventIDs = slices.Clone(req.EventIDs)
	return &c
}
