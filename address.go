package webhook

import (
	"fmt"
	"net/netip"
	"net/url"
	"strings"
)

// AddressPolicy decides which IP addresses webhook requests may go to. The
// zero value is the safe default: it refuses every address that is not
// public unicast, so that a registration cannot make the service POST to
// itself, its intranet or its cloud's metadata service (server-side request
// forgery). An AddressPolicy is a plain value; its methods are safe for
// simultaneous use as long as nobody modifies it.
//
// Refused are the ranges of IANA's IPv4 and IPv6 special-purpose address
// registries that are not globally reachable, and multicast: loopback
// (127.0.0.0/8, ::1), private (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16,
// fc00::/7), link-local (169.254.0.0/16, where cloud metadata services
// listen, and fe80::/10), carrier-grade NAT (100.64.0.0/10), unspecified
// (0.0.0.0/8, ::), multicast (224.0.0.0/4, ff00::/8), broadcast, and the
// reserved, documentation, benchmarking and discard ranges. IPv6 outside
// 2000::/3, the only block IANA allocates for global unicast, is refused as
// a whole, which catches the deprecated site-local and IPv4-compatible
// forms without listing them.
//
// An IPv4 address hidden in an IPv6 one reaches the IPv4 host, so it is
// unwrapped and checked too: IPv4-mapped (::ffff:a.b.c.d), NAT64
// (64:ff9b::/96 and the local-use 64:ff9b:1::/48, the last 32 bits) and
// 6to4 (2002::/16, bits 16 to 48). Teredo (2001::/32) is refused outright
// rather than unwrapped: its IPv4 client address is obfuscated and reached
// through relays beyond the guard's sight, the protocol is retired in
// practice, and no receiver needs it. The rest of 2001::/23 (IETF protocol
// assignments) is refused as well; its few globally reachable members are
// anycast and AS112 services, never webhook receivers. Likewise all of
// 192.0.0.0/24 is refused, its two anycast addresses included.
type AddressPolicy struct {
	// AllowPrivateNetworks turns the guard off: every address is allowed
	// (intranet deployments).
	AllowPrivateNetworks bool
	// AllowedPrefixes are allowed even though the guard would refuse them
	// (tests allow 127.0.0.1/32). They are matched against the address as
	// given, without its zone, and against the IPv4 address it embeds, if
	// any. They admit addresses, never the name localhost.
	AllowedPrefixes []netip.Prefix
}

// addressRange is a refused range and why it is refused, as an error
// message says it: "<address> is <reason> (<prefix>)".
type addressRange struct {
	prefix netip.Prefix
	reason string
}

func refuse(prefix, reason string) addressRange {
	return addressRange{prefix: netip.MustParsePrefix(prefix), reason: reason}
}

// refusedRanges is read only. The first range that contains an address
// names the reason, so a range nested in a larger one comes first.
var refusedRanges = []addressRange{
	refuse("0.0.0.0/8", "unspecified"),
	refuse("10.0.0.0/8", "private"),
	refuse("100.64.0.0/10", "carrier-grade NAT"),
	refuse("127.0.0.0/8", "loopback"),
	refuse("169.254.0.0/16", "link-local, which includes the cloud metadata service 169.254.169.254"),
	refuse("172.16.0.0/12", "private"),
	refuse("192.0.0.0/24", "reserved for IETF protocol assignments"),
	refuse("192.0.2.0/24", "reserved for documentation"),
	refuse("192.168.0.0/16", "private"),
	refuse("198.18.0.0/15", "reserved for benchmarking"),
	refuse("198.51.100.0/24", "reserved for documentation"),
	refuse("203.0.113.0/24", "reserved for documentation"),
	refuse("224.0.0.0/4", "multicast"),
	refuse("255.255.255.255/32", "broadcast"),
	refuse("240.0.0.0/4", "reserved"),

	refuse("::/128", "unspecified"),
	refuse("::1/128", "loopback"),
	refuse("100::/64", "reserved for discard"),
	refuse("2001::/32", "Teredo"),
	refuse("2001:2::/48", "reserved for benchmarking"),
	refuse("2001::/23", "reserved for IETF protocol assignments"),
	refuse("2001:db8::/32", "reserved for documentation"),
	refuse("3fff::/20", "reserved for documentation"),
	refuse("fc00::/7", "private"),
	refuse("fe80::/10", "link-local"),
	refuse("ff00::/8", "multicast"),
	// The complement of 2000::/3, where IANA allocates global unicast.
	refuse("::/3", "outside global unicast 2000::/3"),
	refuse("4000::/2", "outside global unicast 2000::/3"),
	refuse("8000::/1", "outside global unicast 2000::/3"),
}

// CheckAddr returns nil if requests may go to ip, and otherwise an error
// wrapping ErrRefusedAddress that names the address and the reason:
// "webhook: refused address: 10.0.0.7 is private (10.0.0.0/8)". The zone of
// an IPv6 address plays no part.
func (p AddressPolicy) CheckAddr(ip netip.Addr) error {
	if p.AllowPrivateNetworks {
		return nil
	}
	if !ip.IsValid() {
		return fmt.Errorf("%w: no address", ErrRefusedAddress)
	}
	// Prefix.Contains never matches an address with a zone.
	ip = ip.WithZone("")
	v4, embedded := embeddedIPv4(ip)
	if p.allowed(ip) || (embedded && p.allowed(v4)) {
		return nil
	}
	if embedded {
		if r, ok := refusedRange(v4); ok {
			return fmt.Errorf("%w: %s embeds %s, which is %s (%s)", ErrRefusedAddress, ip, v4, r.reason, r.prefix)
		}
		// The wrapper only carries the IPv4 address there, so it is as
		// public as the address it carries.
		return nil
	}
	if r, ok := refusedRange(ip); ok {
		return fmt.Errorf("%w: %s is %s (%s)", ErrRefusedAddress, ip, r.reason, r.prefix)
	}
	return nil
}

// CheckURL returns nil if requests may go to rawURL as far as its host
// tells: the host localhost (and any name under .localhost, which RFC 6761
// reserves for loopback) is refused, an IP literal is checked with
// CheckAddr, and any other name is allowed here, since only its resolved
// addresses can tell and an HTTPTransport checks those when it dials. A
// refusal wraps ErrRefusedAddress; a URL that does not parse is reported as
// url.Parse reports it.
func (p AddressPolicy) CheckURL(rawURL string) error {
	if p.AllowPrivateNetworks {
		return nil
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	return p.checkHost(u.Hostname())
}

// checkHost is CheckURL for a URL already parsed.
func (p AddressPolicy) checkHost(host string) error {
	if p.AllowPrivateNetworks {
		return nil
	}
	name := strings.TrimSuffix(strings.ToLower(host), ".")
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		return fmt.Errorf("%w: %s is localhost; to reach this machine on purpose, write its address and allow it (AddressPolicy.AllowedPrefixes)", ErrRefusedAddress, host)
	}
	// Spellings that net/url accepts and netip does not ("0x7f.1") are
	// names here; the dial-time check sees what they resolve to.
	if ip, err := netip.ParseAddr(host); err == nil {
		return p.CheckAddr(ip)
	}
	return nil
}

func (p AddressPolicy) allowed(ip netip.Addr) bool {
	for _, prefix := range p.AllowedPrefixes {
		if prefix.Contains(ip) {
			return true
		}
	}
	return false
}

// embeddedIPv4 returns the IPv4 address that an IPv4-mapped, NAT64 or 6to4
// address carries.
func embeddedIPv4(ip netip.Addr) (netip.Addr, bool) {
	if ip.Is4() {
		return netip.Addr{}, false
	}
	if ip.Is4In6() {
		return ip.Unmap(), true
	}
	b := ip.As16()
	switch {
	case nat64.Contains(ip), nat64Local.Contains(ip):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case sixToFour.Contains(ip):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return netip.Addr{}, false
}

var (
	nat64      = netip.MustParsePrefix("64:ff9b::/96")   // RFC 6052
	nat64Local = netip.MustParsePrefix("64:ff9b:1::/48") // RFC 8215
	sixToFour  = netip.MustParsePrefix("2002::/16")      // RFC 3056
)

func refusedRange(ip netip.Addr) (addressRange, bool) {
	for _, r := range refusedRanges {
		if r.prefix.Contains(ip) {
			return r, true
		}
	}
	return addressRange{}, false
}
