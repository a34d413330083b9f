package clustertest

import (
	"errors"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// gossipTransport is an in-memory memberlist.Transport on a cluster's network.
// Packets are delivered best-effort (dropped across a cut, to a stopped
// transport or when the receiver is behind), as UDP would be; streams are
// net.Pipe pairs, refused across a cut and closed when one is made.
type gossipTransport struct {
	nw    *network
	owner string // endpoint name
	addr  string // "127.0.0.1:port", virtual
	ip    net.IP
	port  int

	packets chan *memberlist.Packet
	streams chan net.Conn
	done    chan struct{}
	once    sync.Once
}

var _ memberlist.Transport = (*gossipTransport)(nil)

func newGossipTransport(nw *network, owner, addr string) *gossipTransport {
	host, p, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(p)
	return &gossipTransport{
		nw: nw, owner: owner, addr: addr, ip: net.ParseIP(host), port: port,
		packets: make(chan *memberlist.Packet, 512),
		streams: make(chan net.Conn),
		done:    make(chan struct{}),
	}
}

func (t *gossipTransport) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	return t.ip, t.port, nil
}

// peer returns the live transport at addr if this transport may reach it.
func (t *gossipTransport) peer(addr string) *gossipTransport {
	t.nw.mu.Lock()
	defer t.nw.mu.Unlock()
	dest := t.nw.gossip[addr]
	if dest == nil || !t.nw.linkedLocked(t.owner, dest.owner) {
		return nil
	}
	return dest
}

func (t *gossipTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	now := time.Now()
	select {
	case <-t.done:
		return now, nil // shutting down: dropped, quietly
	default:
	}
	dest := t.peer(addr)
	if dest == nil {
		return now, nil // lost on the way, like a UDP datagram
	}
	buf := append([]byte(nil), b...)
	select {
	case dest.packets <- &memberlist.Packet{Buf: buf, From: &net.UDPAddr{IP: t.ip, Port: t.port}, Timestamp: now}:
	case <-dest.done:
	default: // receiver behind: drop
	}
	return now, nil
}

func (t *gossipTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }

func (t *gossipTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	dest := t.peer(addr)
	if dest == nil {
		return nil, refused(addr)
	}
	local, remote := net.Pipe()
	in := &pipeConn{Conn: remote, local: dest.tcpAddr(), remote: t.tcpAddr()}
	out := &pipeConn{Conn: local, local: t.tcpAddr(), remote: dest.tcpAddr()}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case dest.streams <- in:
	case <-dest.done:
		return nil, refused(addr)
	case <-t.done:
		return nil, errors.New("gossip transport is shut down")
	case <-timer.C:
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: stringAddr(addr), Err: errors.New("i/o timeout")}
	}
	c, err := t.nw.track(out, t.owner, dest.owner)
	if err != nil {
		_ = in.Close()
		return nil, err
	}
	return c, nil
}

func (t *gossipTransport) StreamCh() <-chan net.Conn { return t.streams }

func (t *gossipTransport) Shutdown() error {
	t.once.Do(func() {
		close(t.done)
		t.nw.mu.Lock()
		if t.nw.gossip[t.addr] == t {
			delete(t.nw.gossip, t.addr)
		}
		t.nw.mu.Unlock()
	})
	return nil
}

func (t *gossipTransport) tcpAddr() net.Addr { return &net.TCPAddr{IP: t.ip, Port: t.port} }

// pipeConn gives one end of a net.Pipe the gossip addresses of its ends.
type pipeConn struct {
	net.Conn
	local, remote net.Addr
}

func (c *pipeConn) LocalAddr() net.Addr  { return c.local }
func (c *pipeConn) RemoteAddr() net.Addr { return c.remote }
