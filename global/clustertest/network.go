package clustertest

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"

	"github.com/hashicorp/raft"
)

// network joins the nodes of a Cluster. Every endpoint (one node instance)
// is up or down; two up endpoints are linked unless a partition cuts them.
// Links are symmetric.
type network struct {
	mu        sync.Mutex
	endpoints map[string]*endpoint
	cuts      map[[2]string]bool          // both orders of every cut pair
	gossip    map[string]*gossipTransport // gossip address → live transport
	api       map[string]string           // API address → endpoint name
	conns     map[*trackedConn]struct{}   // open connections between endpoints
	nextPort  int                         // for virtual gossip addresses
	dialer    net.Dialer                  // real dials (HTTP on loopback)
}

type endpoint struct {
	name     string
	up       bool
	raft     *raft.InmemTransport
	raftAddr raft.ServerAddress
}

// newNetwork returns an empty network.
func newNetwork() *network {
	return &network{
		endpoints: map[string]*endpoint{},
		cuts:      map[[2]string]bool{},
		gossip:    map[string]*gossipTransport{},
		api:       map[string]string{},
		conns:     map[*trackedConn]struct{}{},
		nextPort:  20000,
	}
}

// newGossipAddr returns a fresh virtual gossip address (nothing listens on
// it: gossip stays in memory).
func (nw *network) newGossipAddr() string {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.nextPort++
	return fmt.Sprintf("127.0.0.1:%d", nw.nextPort)
}

// register declares an endpoint (down until attach) and its API address.
func (nw *network) register(name, apiAddr string, raftAddr raft.ServerAddress) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.endpoints[name] = &endpoint{name: name, raftAddr: raftAddr}
	nw.api[apiAddr] = name
}

// attach brings an endpoint up with fresh transports.
func (nw *network) attach(name string, rt *raft.InmemTransport, gt *gossipTransport) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	ep := nw.endpoints[name]
	ep.raft, ep.up = rt, true
	nw.gossip[gt.addr] = gt
	nw.relinkLocked()
}

// down takes an endpoint off the network at once, as a crash would: every
// link to it is cut and its open connections are closed.
func (nw *network) down(name string) {
	nw.mu.Lock()
	ep := nw.endpoints[name]
	if ep == nil || !ep.up {
		nw.mu.Unlock()
		return
	}
	ep.up = false
	nw.relinkLocked()
	doomed := nw.cutConnsLocked()
	nw.mu.Unlock()
	closeAll(doomed)
}

// setCuts replaces the partition: pairs lists the endpoint pairs to cut.
func (nw *network) setCuts(pairs [][2]string) {
	nw.mu.Lock()
	nw.cuts = map[[2]string]bool{}
	for _, p := range pairs {
		nw.cuts[[2]string{p[0], p[1]}] = true
		nw.cuts[[2]string{p[1], p[0]}] = true
	}
	nw.relinkLocked()
	doomed := nw.cutConnsLocked()
	nw.mu.Unlock()
	closeAll(doomed)
}

// close cuts everything (end of test).
func (nw *network) close() {
	nw.mu.Lock()
	for _, ep := range nw.endpoints {
		ep.up = false
	}
	nw.relinkLocked()
	doomed := nw.cutConnsLocked()
	nw.mu.Unlock()
	closeAll(doomed)
}

// linkedLocked: traffic may flow between a and b. An empty name is a test
// client, bound to its node and never cut from it (only from a down node).
func (nw *network) linkedLocked(a, b string) bool {
	ea, eb := nw.endpoints[a], nw.endpoints[b]
	if a == "" || b == "" {
		other := ea
		if a == "" {
			other = eb
		}
		return other != nil && other.up
	}
	if ea == nil || eb == nil || !ea.up || !eb.up {
		return false
	}
	return a == b || !nw.cuts[[2]string{a, b}]
}

// relinkLocked makes every Raft transport's routing table match the links.
func (nw *network) relinkLocked() {
	for _, a := range nw.endpoints {
		if a.raft == nil {
			continue
		}
		for _, b := range nw.endpoints {
			if a == b || b.raftAddr == a.raftAddr {
				continue
			}
			if b.raft != nil && nw.linkedLocked(a.name, b.name) {
				a.raft.Connect(b.raftAddr, b.raft)
			} else {
				a.raft.Disconnect(b.raftAddr)
			}
		}
	}
}

// cutConnsLocked removes and returns the tracked connections whose link is
// now cut.
func (nw *network) cutConnsLocked() []*trackedConn {
	var doomed []*trackedConn
	for c := range nw.conns {
		if !nw.linkedLocked(c.from, c.to) {
			doomed = append(doomed, c)
			delete(nw.conns, c)
		}
	}
	return doomed
}

func closeAll(conns []*trackedConn) {
	for _, c := range conns {
		_ = c.Conn.Close()
	}
}

// track registers a connection between two endpoints so that a cut closes
// it; if the link was cut meanwhile it is closed at once.
func (nw *network) track(c net.Conn, from, to string) (net.Conn, error) {
	tc := &trackedConn{Conn: c, nw: nw, from: from, to: to}
	nw.mu.Lock()
	if !nw.linkedLocked(from, to) {
		nw.mu.Unlock()
		_ = c.Close()
		return nil, refused(c.RemoteAddr().String())
	}
	nw.conns[tc] = struct{}{}
	nw.mu.Unlock()
	return tc, nil
}

// dialContext returns a dialer for HTTP from the endpoint named from ("" for
// a test client): dials to a node's API are refused when the link is cut.
func (nw *network) dialContext(from string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		nw.mu.Lock()
		to, known := nw.api[addr]
		ok := !known || nw.linkedLocked(from, to)
		nw.mu.Unlock()
		if !ok {
			return nil, refused(addr)
		}
		c, err := nw.dialer.DialContext(ctx, network, addr)
		if err != nil || !known {
			return c, err
		}
		return nw.track(c, from, to)
	}
}

// refused is the error of a dial across a cut: ECONNREFUSED, as the API
// client and the forwarder see it from a real network.
func refused(addr string) error {
	return &net.OpError{Op: "dial", Net: "tcp", Addr: stringAddr(addr), Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
}

type stringAddr string

func (a stringAddr) Network() string { return "tcp" }
func (a stringAddr) String() string  { return string(a) }

// trackedConn is a connection the network may close on a cut.
type trackedConn struct {
	net.Conn
	nw       *network
	from, to string
	once     sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.nw.mu.Lock()
		delete(c.nw.conns, c)
		c.nw.mu.Unlock()
	})
	return c.Conn.Close()
}
