package ca

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"strings"
	"testing"
	"time"
)

func TestRootIssueAndVerify(t *testing.T) {
	for _, o := range []KeyOptions{{}, {RSABits: 2048}} {
		root, err := NewRoot("meshfed sync CA", time.Hour, o)
		if err != nil {
			t.Fatal(err)
		}
		a, err := Parse(root)
		if err != nil {
			t.Fatal(err)
		}
		srv, err := a.IssueServer([]string{"127.0.0.1", "global-1.local"}, 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := ParseCertificate(srv.CertPEM)
		if err != nil {
			t.Fatal(err)
		}
		if !cert.NotAfter.Equal(a.Cert.NotAfter) {
			t.Errorf("server certificate outlives its CA: %s > %s", cert.NotAfter, a.Cert.NotAfter)
		}
		pool, _ := CertPool(root.CertPEM)
		for _, host := range []string{"127.0.0.1", "global-1.local"} {
			if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: host}); err != nil {
				t.Errorf("verify for %s: %v", host, err)
			}
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "other.local"}); err == nil {
			t.Error("verified for a host it was not issued for")
		}
	}
}

func TestParseRefusesBadCAs(t *testing.T) {
	root, _ := NewRoot("a", time.Hour, KeyOptions{})
	other, _ := NewRoot("b", time.Hour, KeyOptions{})
	a, _ := Parse(root)
	leaf, _ := a.IssueServer([]string{"x"}, time.Hour)
	cases := map[string]struct {
		p    KeyPair
		want string
	}{
		"key of another CA": {KeyPair{CertPEM: root.CertPEM, KeyPEM: other.KeyPEM}, "does not match"},
		"not a CA":          {leaf, "not a CA"},
		"not PEM":           {KeyPair{CertPEM: []byte("x"), KeyPEM: root.KeyPEM}, "no PEM"},
	}
	for name, c := range cases {
		if _, err := Parse(c.p); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want %q", name, err, c.want)
		}
	}
	if _, err := NewRoot("x", time.Hour, KeyOptions{RSABits: 1024}); err == nil {
		t.Error("1024-bit RSA accepted")
	}
}

// TestTLSHandshake proves the pieces work together in a real handshake.
func TestTLSHandshake(t *testing.T) {
	root, _ := NewRoot("sync", time.Hour, KeyOptions{})
	a, _ := Parse(root)
	srv, _ := a.IssueServer([]string{"127.0.0.1"}, time.Hour)
	pair, err := tls.X509KeyPair(srv.CertPEM, srv.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				_, _ = c.Write([]byte("ok")) // runs the handshake first
				c.Close()
			}()
		}
	}()
	pool, _ := CertPool(root.CertPEM)
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(conn)
	conn.Close()
	if string(b) != "ok" {
		t.Fatalf("read %q", b)
	}
	otherRoot, _ := NewRoot("other", time.Hour, KeyOptions{})
	otherPool, _ := CertPool(otherRoot.CertPEM)
	if c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: otherPool}); err == nil {
		c.Close()
		t.Fatal("handshake succeeded with the wrong CA")
	}
}
