package webhook

import (
	"net/netip"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// refusedAddrTests are addresses the zero AddressPolicy refuses, with what
// the error says about each. transport_test.go sends to them as well.
var refusedAddrTests = []struct {
	addr string
	why  string
}{
	{"127.0.0.1", "127.0.0.1 is loopback (127.0.0.0/8)"},
	{"127.255.255.254", "is loopback (127.0.0.0/8)"},
	{"::1", "::1 is loopback (::1/128)"},
	{"10.0.0.7", "10.0.0.7 is private (10.0.0.0/8)"},
	{"172.16.0.1", "is private (172.16.0.0/12)"},
	{"172.31.255.255", "is private (172.16.0.0/12)"},
	{"192.168.1.1", "is private (192.168.0.0/16)"},
	{"fc00::1", "is private (fc00::/7)"},
	{"fd12:3456::1", "is private (fc00::/7)"},
	{"169.254.169.254", "169.254.169.254 is link-local, which includes the cloud metadata service 169.254.169.254 (169.254.0.0/16)"},
	{"169.254.0.1", "is link-local"},
	{"fe80::1", "is link-local (fe80::/10)"},
	{"fe80::1%eth0", "fe80::1 is link-local (fe80::/10)"},
	{"100.64.0.1", "is carrier-grade NAT (100.64.0.0/10)"},
	{"100.127.255.255", "is carrier-grade NAT (100.64.0.0/10)"},
	{"0.0.0.0", "is unspecified (0.0.0.0/8)"},
	{"0.1.2.3", "is unspecified (0.0.0.0/8)"},
	{"::", ":: is unspecified (::/128)"},
	{"224.0.0.1", "is multicast (224.0.0.0/4)"},
	{"239.255.255.250", "is multicast (224.0.0.0/4)"},
	{"ff02::1", "is multicast (ff00::/8)"},
	{"ff0e::1", "is multicast (ff00::/8)"},
	{"255.255.255.255", "is broadcast (255.255.255.255/32)"},
	{"240.0.0.1", "is reserved (240.0.0.0/4)"},
	{"192.0.0.9", "is reserved for IETF protocol assignments (192.0.0.0/24)"},
	{"192.0.2.1", "is reserved for documentation (192.0.2.0/24)"},
	{"198.18.0.1", "is reserved for benchmarking (198.18.0.0/15)"},
	{"198.19.255.255", "is reserved for benchmarking (198.18.0.0/15)"},
	{"198.51.100.1", "is reserved for documentation (198.51.100.0/24)"},
	{"203.0.113.1", "is reserved for documentation (203.0.113.0/24)"},
	{"2001:db8::1", "is reserved for documentation (2001:db8::/32)"},
	{"3fff::1", "is reserved for documentation (3fff::/20)"},
	{"100::1", "is reserved for discard (100::/64)"},
	{"2001:2::1", "is reserved for benchmarking (2001:2::/48)"},
	{"2001:1::1", "is reserved for IETF protocol assignments (2001::/23)"},
	// Teredo: server 65.54.227.120, client 192.0.2.45 obfuscated.
	{"2001:0:4136:e378:8000:63bf:3fff:fdd2", "is Teredo (2001::/32)"},
	{"fec0::1", "is outside global unicast 2000::/3 (8000::/1)"},
	{"::a00:7", "is outside global unicast 2000::/3 (::/3)"}, // IPv4-compatible ::10.0.0.7
	{"::ffff:10.0.0.7", "::ffff:10.0.0.7 embeds 10.0.0.7, which is private (10.0.0.0/8)"},
	{"::ffff:127.0.0.1", "embeds 127.0.0.1, which is loopback"},
	{"::ffff:169.254.169.254", "embeds 169.254.169.254, which is link-local"},
	{"64:ff9b::a00:7", "64:ff9b::a00:7 embeds 10.0.0.7, which is private"},
	{"64:ff9b::7f00:1", "embeds 127.0.0.1, which is loopback"},
	{"64:ff9b:1::a9fe:a9fe", "embeds 169.254.169.254, which is link-local"},
	{"2002:a00:7::1", "2002:a00:7::1 embeds 10.0.0.7, which is private"},
	{"2002:7f00:1::", "embeds 127.0.0.1, which is loopback"},
	{"2002:a9fe:a9fe::1", "embeds 169.254.169.254, which is link-local"},
}

// publicAddrs are addresses the zero AddressPolicy allows, many of them
// just outside a refused range.
var publicAddrs = []string{
	"8.8.8.8", "1.1.1.1", "2606:4700::1111", "2a00:1450:4001::1",
	"100.63.255.255", "100.128.0.0", "172.15.255.255", "172.32.0.0", "192.0.1.1", "192.0.3.1",
	"198.17.255.255", "198.20.0.0", "223.255.255.255", "9.255.255.255", "11.0.0.0",
	"2001:200::1", "2001:db9::1", "1.0.0.0",
	"::ffff:8.8.8.8", "64:ff9b::808:808", "64:ff9b:1::808:808", "2002:808:808::1",
}

func TestAddressPolicyRefusesWhatIsNotPublic(t *testing.T) {
	for _, tt := range refusedAddrTests {
		t.Run(tt.addr, func(t *testing.T) {
			err := AddressPolicy{}.CheckAddr(netip.MustParseAddr(tt.addr))
			require.ErrorIs(t, err, ErrRefusedAddress)
			require.ErrorContains(t, err, tt.why)
		})
	}
	t.Run("the invalid address", func(t *testing.T) {
		require.ErrorIs(t, AddressPolicy{}.CheckAddr(netip.Addr{}), ErrRefusedAddress)
	})
	t.Run("the message names the address and the reason", func(t *testing.T) {
		err := AddressPolicy{}.CheckAddr(netip.MustParseAddr("10.0.0.7"))
		require.EqualError(t, err, "webhook: refused address: 10.0.0.7 is private (10.0.0.0/8)")
	})
}

func TestAddressPolicyAllowsPublicAddresses(t *testing.T) {
	for _, addr := range publicAddrs {
		t.Run(addr, func(t *testing.T) {
			require.NoError(t, AddressPolicy{}.CheckAddr(netip.MustParseAddr(addr)))
		})
	}
}

func TestAddressPolicyAllowedPrefixes(t *testing.T) {
	p := AddressPolicy{AllowedPrefixes: []netip.Prefix{
		netip.MustParsePrefix("127.0.0.1/32"),
		netip.MustParsePrefix("fe80::/10"),
	}}
	for _, addr := range []string{"127.0.0.1", "::ffff:127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::", "fe80::1", "fe80::1%eth0"} {
		t.Run(addr+" is let through", func(t *testing.T) {
			require.NoError(t, p.CheckAddr(netip.MustParseAddr(addr)))
		})
	}
	for _, addr := range []string{"127.0.0.2", "::1", "::ffff:127.0.0.2", "10.0.0.7"} {
		t.Run(addr+" is still refused", func(t *testing.T) {
			require.ErrorIs(t, p.CheckAddr(netip.MustParseAddr(addr)), ErrRefusedAddress)
		})
	}
	t.Run("a URL of an allowed literal passes, localhost does not", func(t *testing.T) {
		require.NoError(t, p.CheckURL("http://127.0.0.1:8080/hooks"))
		require.ErrorIs(t, p.CheckURL("http://localhost:8080/hooks"), ErrRefusedAddress)
	})
}

func TestAddressPolicyAllowPrivateNetworksAllowsEverything(t *testing.T) {
	p := AddressPolicy{AllowPrivateNetworks: true}
	for _, tt := range refusedAddrTests {
		assert.NoError(t, p.CheckAddr(netip.MustParseAddr(tt.addr)), tt.addr)
	}
	assert.NoError(t, p.CheckAddr(netip.Addr{}))
	assert.NoError(t, p.CheckURL("http://localhost/hooks"))
	assert.NoError(t, p.CheckURL("http://10.0.0.7/hooks"))
}

func TestAddressPolicyCheckURL(t *testing.T) {
	refused := []struct{ url, why string }{
		{"http://10.0.0.7/hooks", "10.0.0.7 is private"},
		{"https://10.0.0.7:8443/hooks?x=1", "10.0.0.7 is private"},
		{"http://169.254.169.254/latest/meta-data/", "cloud metadata"},
		{"http://[::1]:8080/", "::1 is loopback"},
		{"http://[fe80::1%25eth0]:8080/", "fe80::1 is link-local"},
		{"http://[::ffff:127.0.0.1]/", "embeds 127.0.0.1"},
		{"http://user:pass@192.168.0.1/", "192.168.0.1 is private"},
		{"https://localhost/hooks", "localhost is localhost"},
		{"http://localhost:8080", "localhost is localhost"},
		{"http://LOCALHOST./", "LOCALHOST. is localhost"},
		{"http://api.localhost:8080/", "api.localhost is localhost"},
		{"http://Foo.LocalHost./", "is localhost"},
	}
	for _, tt := range refused {
		t.Run(tt.url+" is refused", func(t *testing.T) {
			err := AddressPolicy{}.CheckURL(tt.url)
			require.ErrorIs(t, err, ErrRefusedAddress)
			require.ErrorContains(t, err, tt.why)
		})
	}
	for _, u := range []string{
		"https://example.com/hooks", "http://8.8.8.8/", "http://[2606:4700::1111]:443/",
		"http://localhost.example.com/", "http://notlocalhost/", "http://localhost-api.example/",
		// Names are checked when dialling, by what they resolve to.
		"http://internal.corp.example/",
	} {
		t.Run(u+" is allowed", func(t *testing.T) {
			require.NoError(t, AddressPolicy{}.CheckURL(u))
		})
	}
	t.Run("a URL that does not parse is an error, not a refusal", func(t *testing.T) {
		err := AddressPolicy{}.CheckURL("http://[::1")
		require.Error(t, err)
		require.NotErrorIs(t, err, ErrRefusedAddress)
	})
}

// FuzzAddressPolicyCheckURL checks CheckURL against netip's own
// predicates: an IP literal it allows is none of the kinds they name.
func FuzzAddressPolicyCheckURL(f *testing.F) {
	for _, tt := range refusedAddrTests {
		f.Add((&url.URL{Scheme: "http", Host: netip.AddrPortFrom(netip.MustParseAddr(tt.addr), 80).String(), Path: "/"}).String())
	}
	for _, addr := range publicAddrs {
		f.Add("https://" + netip.AddrPortFrom(netip.MustParseAddr(addr), 443).String() + "/hooks")
	}
	f.Add("http://localhost./")
	f.Add("https://example.com/hooks")
	f.Fuzz(func(t *testing.T, raw string) {
		err := AddressPolicy{}.CheckURL(raw)
		require.NoError(t, AddressPolicy{AllowPrivateNetworks: true}.CheckURL(raw), "the guard off allows everything")
		if err != nil {
			return
		}
		u, perr := url.Parse(raw)
		require.NoError(t, perr)
		ip, perr := netip.ParseAddr(u.Hostname())
		if perr != nil {
			return
		}
		for _, a := range []netip.Addr{ip, ip.Unmap()} {
			require.False(t, a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
				a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified(), "%s allowed", a)
		}
	})
}
