package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crmhook/webhook"
	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"
)

// hung bounds every wait, only so that a hung test fails instead of
// running until the test binary's timeout; nothing is timed by it.
const hung = 2 * time.Minute

// TestPrintedCurlLines runs the curl lines the server prints at start, as
// written (with curl and sh when they are installed), against the server,
// and checks what reaches the receiver they register.
func TestPrintedCurlLines(t *testing.T) {
	rcv := newReceiver(t)
	srv := startServer(t, "-receiver", rcv.URL)

	api := srv.base + "/api/v100/rest/spaces/acme/entities/"
	var lines []string
	var calls []curlCall
	for _, line := range srv.banner {
		if !strings.HasPrefix(line, "curl ") {
			continue
		}
		words, err := shellWords(line)
		require.NoError(t, err, line)
		call, err := parseCurl(words)
		require.NoError(t, err, line)
		lines, calls = append(lines, line), append(calls, call)
	}
	type request struct{ Method, URL string }
	var got []request
	for _, c := range calls {
		got = append(got, request{c.method, c.url})
	}
	want := []request{
		{"POST", api + "Webhooks"},
		{"POST", api + "Accounts"},
		{"POST", api + "Contacts"},
		{"PATCH", api + "Accounts/" + demoAccount},
		{"PATCH", api + "Accounts/" + demoAccount},
		{"POST", api + "Accounts"},
		{"GET", api + "Webhooks"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("the printed curl lines (-want +got):\n%s", d)
	}
	require.Equal(t, rcv.URL, gjson.Get(calls[0].body, "url").String(), "the registered receiver")
	require.Equal(t, "import", calls[5].header.Get(webhook.HeaderSkipKey))

	_, shErr := exec.LookPath("sh")
	_, curlErr := exec.LookPath("curl")
	realCurl := shErr == nil && curlErr == nil
	t.Logf("running the lines with sh and curl: %v", realCurl)
	var answers []gjson.Result
	for i, line := range lines {
		var answer []byte
		if realCurl {
			out, err := exec.Command("sh", "-c", line).Output()
			require.NoError(t, err, line)
			answer = out
		} else {
			_, answer = do(t, calls[i].method, calls[i].url, calls[i].header, calls[i].body)
		}
		require.True(t, gjson.ValidBytes(answer), "%s answered %s", line, answer)
		require.True(t, gjson.GetBytes(answer, "success").Bool(), "%s answered %s", line, answer)
		answers = append(answers, gjson.ParseBytes(answer))
	}
	require.Equal(t, 1, len(answers[6].Get("data").Array()), "the list of webhooks: %s", answers[6].Raw)
	require.Equal(t, answers[0].Get("data.id").String(), answers[6].Get("data.0.id").String())

	secret := gjson.Get(calls[0].body, "signature").String()
	checkItems(t, rcv.next(t, secret), "acme", []string{"Account.Create"}, func(entity gjson.Result) {
		require.Equal(t, "Acme Corp", entity.Get("name").String())
	})
	checkItems(t, rcv.next(t, secret), "acme", []string{"Contact.Create"}, func(entity gjson.Result) {
		require.Equal(t, demoAccount, entity.Get("account.id").String(), "the expanded account")
		require.Equal(t, "Acme Corp", entity.Get("account.name").String(), "the expanded account")
	})
	checkItems(t, rcv.next(t, secret), "acme", []string{"Account.Update", "Account.OwnerChanged"}, func(entity gjson.Result) {
		require.Equal(t, "Acme Corporation", entity.Get("name").String())
		require.Equal(t, "u2", entity.Get("owner_id").String())
	})
	// Neither the phone change nor the import fired: one registration's
	// deliveries go out one at a time, in order, so the delete's would
	// come after theirs.
	status, _ := do(t, "DELETE", api+"Accounts/"+demoAccount, nil, "")
	require.Equal(t, http.StatusOK, status)
	checkItems(t, rcv.next(t, secret), "acme", []string{"Account.Delete"}, func(entity gjson.Result) {
		require.Equal(t, "+1 555 0100", entity.Get("phone1").String())
	})
	srv.stop(t) // lets every delivery accepted so far finish
	rcv.none(t)
}

// TestWebhooksOfTheCRM registers a webhook through the CRM's API and
// checks the signed deliveries of its writes: on-field-change against the
// record before, an expand through the Expander, a skip key, and another
// space that sees nothing.
func TestWebhooksOfTheCRM(t *testing.T) {
	rcv := newReceiver(t)
	srv := startServer(t, "-receiver", rcv.URL)
	api := srv.base + "/api/v100/rest/spaces/team-1/entities/"
	const secret = "0b9e5c9a-7d4f-4b55-9e61-2f8d8c3a1e07"

	status, hook := do(t, "POST", api+"Webhooks", nil, `{"url":"`+rcv.URL+`/crm",
		"events":["Account.Create","Account.Update","Contact.Create"],"signature":"`+secret+`",
		"options":{"skip_keys":["sync"],"entity":{
			"Account":{"on-field-change":["owner_id"]},
			"Contact":{"expand":["account","tasks"]}}}}`)
	require.Equal(t, http.StatusCreated, status, "%s", hook)
	hookID := gjson.GetBytes(hook, "data.id").String()
	status, _ = do(t, "GET", srv.base+"/api/v100/rest/spaces/team-2/entities/Webhooks/"+hookID, nil, "")
	require.Equal(t, http.StatusNotFound, status, "another space's webhook")

	t.Run("a created account is delivered, signed", func(t *testing.T) {
		account := create(t, api+"Accounts", nil, `{"name":"Globex","owner_id":"u1"}`)
		got := rcv.next(t, secret)
		require.Equal(t, "/crm", got.path)
		require.NotEmpty(t, got.header.Get(webhook.HeaderID))
		checkItems(t, got, "team-1", []string{"Account.Create"}, func(entity gjson.Result) {
			require.Equal(t, account, entity.Get("id").String())
			require.Equal(t, "Globex", entity.Get("name").String())
		})
		require.Equal(t, hookID, gjson.GetBytes(got.body, "0.webhook.id").String())
		require.False(t, gjson.GetBytes(got.body, "0.webhook.signature").Exists(), "the secret in the payload")

		t.Run("an update fires only when owner_id changes", func(t *testing.T) {
			status, _ := do(t, "PATCH", api+"Accounts/"+account, nil, `{"phone1":"+1 555 0100"}`)
			require.Equal(t, http.StatusOK, status)
			status, _ = do(t, "PATCH", api+"Accounts/"+account, nil, `{"owner_id":"u2"}`)
			require.Equal(t, http.StatusOK, status)
			// The first delivery after the create is the owner's change:
			// the phone's would have come first.
			checkItems(t, rcv.next(t, secret), "team-1", []string{"Account.Update"}, func(entity gjson.Result) {
				require.Equal(t, "u2", entity.Get("owner_id").String())
				require.Equal(t, "+1 555 0100", entity.Get("phone1").String())
			})
		})

		t.Run("a contact comes with its account expanded, unknown relations left out", func(t *testing.T) {
			contact := create(t, api+"Contacts", nil, `{"first_name":"Ada","account_id":"`+account+`"}`)
			checkItems(t, rcv.next(t, secret), "team-1", []string{"Contact.Create"}, func(entity gjson.Result) {
				require.Equal(t, contact, entity.Get("id").String())
				require.Equal(t, account, entity.Get("account.id").String())
				require.Equal(t, "Globex", entity.Get("account.name").String())
				require.Equal(t, "u2", entity.Get("account.owner_id").String())
				require.False(t, entity.Get("tasks").Exists(), "an unknown relation: %s", entity.Raw)
			})
		})
	})

	t.Run("a write with the skip key, or in another space, sends nothing", func(t *testing.T) {
		create(t, api+"Accounts", http.Header{webhook.HeaderSkipKey: {"sync"}}, `{"name":"Skipped"}`)
		create(t, srv.base+"/api/v100/rest/spaces/team-2/entities/Accounts", nil, `{"name":"Elsewhere"}`)
		create(t, api+"Accounts", nil, `{"name":"Sent"}`)
		// The next delivery is the last write's: the others' would have
		// come first.
		checkItems(t, rcv.next(t, secret), "team-1", []string{"Account.Create"}, func(entity gjson.Result) {
			require.Equal(t, "Sent", entity.Get("name").String())
		})
	})
	srv.stop(t) // lets every delivery accepted so far finish
	rcv.none(t)
}

// TestBuiltInReceiver runs the server as a user does, without -receiver,
// and the first printed curl lines: its own receiver prints the account
// it gets, its signature verified.
func TestBuiltInReceiver(t *testing.T) {
	srv := startServer(t)
	var lines []string
	for _, line := range srv.banner {
		if strings.HasPrefix(line, "curl ") {
			lines = append(lines, line)
		}
	}
	require.GreaterOrEqual(t, len(lines), 2, "the banner: %q", srv.banner)
	for _, line := range lines[:2] { // register, create an account
		words, err := shellWords(line)
		require.NoError(t, err, line)
		c, err := parseCurl(words)
		require.NoError(t, err, line)
		status, answer := do(t, c.method, c.url, c.header, c.body)
		require.Equal(t, http.StatusCreated, status, "%s answered %s", line, answer)
	}
	for _, want := range []string{"receiver: POST /hook, webhook-id ", `  Account.Create in "acme": {"id":"` + demoAccount + `"`} {
		select {
		case line := <-srv.output:
			require.True(t, strings.HasPrefix(line, want), "printed %q, want %q...", line, want)
			if strings.HasPrefix(line, "receiver:") {
				require.True(t, strings.HasSuffix(line, ", signature verified"), line)
			}
		case <-time.After(hung):
			t.Fatalf("the receiver printed nothing")
		}
	}
}

// server is the example running in the test, through run.
type server struct {
	base   string      // where its API listens
	banner []string    // the lines it printed at start
	output chan string // the lines it printed after them
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// startServer runs the example on a free port, with args, until stop or
// the end of the test.
func startServer(t *testing.T, args ...string) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{cancel: cancel, done: make(chan error, 1), output: make(chan string, 1000)}
	stdout, w := io.Pipe()
	var stderr lockedBuffer
	go func() {
		s.done <- run(ctx, append([]string{"-addr", "127.0.0.1:0"}, args...), w, &stderr)
		w.Close()
	}()
	started := make(chan struct{})
	go func() {
		// Reads the banner, then drains the rest until run returns.
		inBanner := true
		lines := bufio.NewScanner(stdout)
		for lines.Scan() {
			if inBanner {
				s.banner = append(s.banner, lines.Text())
				inBanner = !strings.HasPrefix(lines.Text(), "Ctrl-C")
				if !inBanner {
					close(started)
				}
				continue
			}
			select {
			case s.output <- lines.Text():
			default: // a test that does not read them
			}
		}
		if inBanner {
			close(started)
		}
	}()
	t.Cleanup(func() {
		s.stop(t)
		if t.Failed() {
			t.Logf("the server's log:\n%s", stderr.String())
		}
	})
	select {
	case <-started:
	case <-time.After(hung):
		t.Fatal("the server printed no banner")
	}
	require.NotEmpty(t, s.banner, "the server's banner")
	require.True(t, strings.HasPrefix(s.banner[0], "CRM API on http://127.0.0.1:"), s.banner[0])
	s.base = strings.TrimSuffix(strings.Fields(s.banner[0])[3], ";")
	return s
}

// stop ends the server as SIGINT does and checks that it shut down
// cleanly.
func (s *server) stop(t *testing.T) {
	s.once.Do(func() {
		s.cancel()
		select {
		case err := <-s.done:
			require.NoError(t, err, "run")
		case <-time.After(hung):
			t.Fatal("the server did not shut down")
		}
	})
}

// receiver is the test's webhook receiver.
type receiver struct {
	*httptest.Server
	got chan received
}

type received struct {
	path   string
	header http.Header
	body   []byte
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{got: make(chan received, 100)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.got <- received{req.URL.Path, req.Header.Clone(), body}
	}))
	t.Cleanup(r.Close)
	return r
}

// next returns the next request the receiver got, after checking its
// signature with secret.
func (r *receiver) next(t *testing.T, secret string) received {
	t.Helper()
	select {
	case got := <-r.got:
		require.NoError(t, webhook.VerifySignature(secret, got.body, got.header.Get(webhook.HeaderSignature)), "the signature")
		return got
	case <-time.After(hung):
		t.Fatal("the receiver got nothing")
		return received{}
	}
}

// none checks that the receiver got nothing more; call it once the server
// has stopped.
func (r *receiver) none(t *testing.T) {
	t.Helper()
	select {
	case got := <-r.got:
		t.Fatalf("the receiver got %s", got.body)
	default:
	}
}

// checkItems checks that a request carries one item per event, of space,
// and hands each item's entity to check.
func checkItems(t *testing.T, got received, space string, events []string, check func(entity gjson.Result)) {
	t.Helper()
	items := gjson.ParseBytes(got.body).Array()
	require.Len(t, items, len(events), "%s", got.body)
	for i, item := range items {
		require.Equal(t, events[i], item.Get("event").String(), "%s", got.body)
		require.Equal(t, space, item.Get("team_space_id").String(), "%s", got.body)
		check(item.Get("entity"))
	}
}

// do makes a request with a JSON body (if any) and returns its answer.
func do(t *testing.T, method, url string, header http.Header, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, answer
}

// create posts a record and returns its id.
func create(t *testing.T, url string, header http.Header, body string) string {
	t.Helper()
	status, answer := do(t, "POST", url, header, body)
	require.Equal(t, http.StatusCreated, status, "%s", answer)
	return gjson.GetBytes(answer, "data.id").String()
}

// curlCall is what a curl line asks for.
type curlCall struct {
	method, url string
	header      http.Header
	body        string
}

// parseCurl reads the words of a curl line, refusing what the printed
// lines have no reason to use.
func parseCurl(words []string) (curlCall, error) {
	c := curlCall{method: "GET", header: http.Header{}}
	if len(words) == 0 || words[0] != "curl" {
		return c, fmt.Errorf("not a curl line: %q", words)
	}
	for i := 1; i < len(words); i++ {
		flag := words[i]
		if flag == "-sS" {
			continue
		}
		if !strings.HasPrefix(flag, "-") {
			if c.url != "" {
				return c, fmt.Errorf("two URLs: %q and %q", c.url, flag)
			}
			c.url = flag
			continue
		}
		if i++; i == len(words) {
			return c, fmt.Errorf("%s without its value", flag)
		}
		switch arg := words[i]; flag {
		case "-X":
			c.method = arg
		case "-H":
			name, value, ok := strings.Cut(arg, ":")
			if !ok {
				return c, fmt.Errorf("-H %q", arg)
			}
			c.header.Add(name, strings.TrimSpace(value))
		case "-d":
			c.body = arg
		default:
			return c, fmt.Errorf("unexpected %s", flag)
		}
	}
	if c.body != "" && c.header.Get("Content-Type") != "application/json" {
		return c, fmt.Errorf("a body without Content-Type: application/json: %q", c.header)
	}
	return c, nil
}

// shellWords splits a line as a POSIX shell does, for the quoting the
// printed lines use: words in single quotes and backslash escapes. It
// refuses a character that means something to the shell outside quotes.
func shellWords(line string) ([]string, error) {
	var words []string
	var word strings.Builder
	inWord, quoted := false, false
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case quoted:
			if c == '\'' {
				quoted = false
			} else {
				word.WriteByte(c)
			}
		case c == '\'':
			quoted, inWord = true, true
		case c == '\\' && i+1 < len(line):
			i++
			word.WriteByte(line[i])
			inWord = true
		case c == ' ':
			if inWord {
				words = append(words, word.String())
				word.Reset()
				inWord = false
			}
		case strings.IndexByte("\"$`;&|<>(){}*?[]#~!\\\t", c) >= 0:
			return nil, fmt.Errorf("unquoted %q at %d", c, i)
		default:
			word.WriteByte(c)
			inWord = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("unterminated quote")
	}
	if inWord {
		words = append(words, word.String())
	}
	return words, nil
}

// lockedBuffer is a bytes.Buffer that several goroutines write.
type lockedBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
