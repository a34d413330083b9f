// Command xdsapp is a proxyless gRPC application for Meshfed's multi-process
// tests: the real grpc-go xDS client and xDS-enabled server, driven only by
// the bootstrap file GRPC_XDS_BOOTSTRAP names (see xds/bootstrap.GRPC) and by
// what the zone's xDS server (xds/server) sends.
//
// Where it sits in the data flow (DESIGN.md §8): xds/generate → xds/server →
// ADS → grpc-go in this process. A test starts `xdsapp server` processes as
// backends and `xdsapp client` processes as callers, and reads what the
// client printed to see who answered. It serves grpc-go's standard interop
// TestService (google.golang.org/grpc/interop/grpc_testing), so no protos of
// its own.
//
//	xdsapp server --port P --id ID [--zone Z]
//	    An xds.GRPCServer on 127.0.0.1:P. It asks the xDS server for the
//	    Listener "grpc/server?xds.resource.listening_address=127.0.0.1:P"
//	    and serves only while it has one. UnaryCall answers ServerId=ID and
//	    Hostname=Z when the request sets fill_server_id. Serving-mode
//	    changes are logged on stderr; "SERVING" is printed on stdout each
//	    time the server starts serving. SIGTERM or SIGINT: graceful stop,
//	    exit 0.
//
//	xdsapp client --target xds:///S [--interval 50ms] [--count N] [--timeout 2s]
//	    Calls UnaryCall every interval (N times; 0 = until killed), each
//	    bounded by timeout, and prints one JSON line per call on stdout:
//	    {"seq":n,"time":"RFC3339Nano","server":"ID","zone":"Z","caller":"C","error":"..."},
//	    where caller is the client's SPIFFE id as the server saw it (its
//	    TLS client certificate), or "plaintext".
//	    SIGTERM or SIGINT: exit 0.
//
// Both use xDS credentials with an insecure fallback, so they follow the
// security the xDS resources configure (plaintext until mTLS is generated).
// Bad flags: a message on stderr and exit code 2.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/xds" // also registers the xds:/// resolver
)

// exitUsage is the exit code for bad flags.
const exitUsage = 2

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	usage := func() {
		fmt.Fprint(stderr, `usage:
  xdsapp server --port P --id ID [--zone Z]
  xdsapp client --target xds:///SERVICE [--interval 50ms] [--count N] [--timeout 2s]
The xDS bootstrap is read from the file $GRPC_XDS_BOOTSTRAP names.
`)
	}
	if len(args) == 0 {
		usage()
		return exitUsage
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	var err error
	switch args[0] {
	case "server":
		var cfg serverConfig
		if cfg, err = parseServer(args[1:], stderr); err == nil {
			err = runServer(ctx, cfg, stdout, logger)
		}
	case "client":
		var cfg clientConfig
		if cfg, err = parseClient(args[1:], stderr); err == nil {
			err = runClient(ctx, cfg, stdout, logger)
		}
	case "-h", "--help", "help":
		usage()
		return 0
	default:
		fmt.Fprintf(stderr, "xdsapp: unknown command %q\n", args[0])
		usage()
		return exitUsage
	}
	var ue usageError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "xdsapp %s: %v\n", args[0], err)
		return exitUsage
	case err != nil:
		fmt.Fprintf(stderr, "xdsapp %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// usageError marks bad flags.
type usageError struct{ error }

type serverConfig struct {
	port uint64
	id   string
	zone string
}

func parseServer(args []string, stderr io.Writer) (serverConfig, error) {
	var c serverConfig
	fs := flag.NewFlagSet("xdsapp server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Uint64Var(&c.port, "port", 0, "port to listen on at 127.0.0.1 (required)")
	fs.StringVar(&c.id, "id", "", "server id UnaryCall answers with (required)")
	fs.StringVar(&c.zone, "zone", "", "zone UnaryCall answers with (as the hostname)")
	if err := fs.Parse(args); err != nil {
		return c, usageError{err}
	}
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	if c.port == 0 || c.port > 65535 {
		errs = append(errs, errors.New("--port: must be between 1 and 65535"))
	}
	if strings.TrimSpace(c.id) == "" {
		errs = append(errs, errors.New("--id: must not be empty"))
	}
	if err := errors.Join(errs...); err != nil {
		return c, usageError{err}
	}
	return c, nil
}

type clientConfig struct {
	target   string
	interval time.Duration
	count    int
	timeout  time.Duration
}

func parseClient(args []string, stderr io.Writer) (clientConfig, error) {
	var c clientConfig
	fs := flag.NewFlagSet("xdsapp client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.target, "target", "", "target to call, xds:///SERVICE (required)")
	fs.DurationVar(&c.interval, "interval", 50*time.Millisecond, "time between calls")
	fs.IntVar(&c.count, "count", 0, "number of calls; 0 calls until killed")
	fs.DurationVar(&c.timeout, "timeout", 2*time.Second, "deadline of each call")
	if err := fs.Parse(args); err != nil {
		return c, usageError{err}
	}
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	if svc, ok := strings.CutPrefix(c.target, "xds:///"); !ok || svc == "" {
		errs = append(errs, fmt.Errorf("--target: %q must be xds:///SERVICE", c.target))
	}
	if c.interval <= 0 {
		errs = append(errs, errors.New("--interval: must be positive"))
	}
	if c.count < 0 {
		errs = append(errs, errors.New("--count: must not be negative"))
	}
	if c.timeout <= 0 {
		errs = append(errs, errors.New("--timeout: must be positive"))
	}
	if err := errors.Join(errs...); err != nil {
		return c, usageError{err}
	}
	return c, nil
}

// testService answers UnaryCall with the server's identity.
type testService struct {
	testgrpc.UnimplementedTestServiceServer
	id, zone string
}

func (s *testService) UnaryCall(ctx context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	resp := &testgrpc.SimpleResponse{Username: callerOf(ctx)}
	if req.GetFillServerId() {
		resp.ServerId, resp.Hostname = s.id, s.zone
	}
	return resp, nil
}

// callerOf returns the caller's identity as the server saw it: the first
// URI of its TLS client certificate (its SPIFFE id), or "plaintext".
func callerOf(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return "plaintext"
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 || len(info.State.PeerCertificates[0].URIs) == 0 {
		return "plaintext"
	}
	return info.State.PeerCertificates[0].URIs[0].String()
}

func (s *testService) EmptyCall(context.Context, *testgrpc.Empty) (*testgrpc.Empty, error) {
	return &testgrpc.Empty{}, nil
}

func runServer(ctx context.Context, cfg serverConfig, stdout io.Writer, logger *slog.Logger) error {
	creds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		return fmt.Errorf("server credentials: %w", err)
	}
	onMode := func(addr net.Addr, args xds.ServingModeChangeArgs) {
		if args.Err != nil {
			logger.Warn("serving mode changed", "addr", addr.String(), "mode", args.Mode.String(), "error", args.Err)
		} else {
			logger.Info("serving mode changed", "addr", addr.String(), "mode", args.Mode.String())
		}
		if args.Mode == connectivity.ServingModeServing {
			fmt.Fprintln(stdout, "SERVING")
		}
	}
	gs, err := xds.NewGRPCServer(grpc.Creds(creds), xds.ServingModeCallback(onMode))
	if err != nil {
		return fmt.Errorf("xds server (is GRPC_XDS_BOOTSTRAP set?): %w", err)
	}
	testgrpc.RegisterTestServiceServer(gs, &testService{id: cfg.id, zone: cfg.zone})
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.FormatUint(cfg.port, 10)))
	if err != nil {
		gs.Stop()
		return fmt.Errorf("--port: %w", err)
	}
	logger.Info("xds server started", "addr", ln.Addr().String(), "id", cfg.id, "zone", cfg.zone)
	served := make(chan error, 1)
	go func() { served <- gs.Serve(ln) }()
	select {
	case err := <-served:
		gs.Stop()
		if err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		return nil
	case <-ctx.Done():
	}
	logger.Info("stopping")
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		logger.Warn("graceful stop timed out; stopping")
		gs.Stop()
	}
	<-served
	return nil
}

// callResult is one line of the client's output.
type callResult struct {
	Seq    int    `json:"seq"`
	Time   string `json:"time"`
	Server string `json:"server"`
	Zone   string `json:"zone"`
	// Caller is how the server saw the client: its SPIFFE id over mTLS,
	// "plaintext" otherwise.
	Caller string `json:"caller"`
	Error  string `json:"error"`
}

func runClient(ctx context.Context, cfg clientConfig, stdout io.Writer, logger *slog.Logger) error {
	creds, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		return fmt.Errorf("client credentials: %w", err)
	}
	conn, err := grpc.NewClient(cfg.target, grpc.WithTransportCredentials(creds))
	if err != nil {
		return fmt.Errorf("--target: %w", err)
	}
	defer conn.Close()
	client := testgrpc.NewTestServiceClient(conn)
	logger.Info("xds client started", "target", cfg.target, "interval", cfg.interval, "count", cfg.count)

	ticker := time.NewTicker(cfg.interval)
	defer ticker.Stop()
	for seq := 1; cfg.count == 0 || seq <= cfg.count; seq++ {
		if seq > 1 {
			select {
			case <-ctx.Done():
				return nil
			case <-ticker.C:
			}
		}
		callCtx, cancel := context.WithTimeout(ctx, cfg.timeout)
		start := time.Now()
		resp, err := client.UnaryCall(callCtx, &testgrpc.SimpleRequest{FillServerId: true})
		cancel()
		if ctx.Err() != nil {
			return nil // stopped during the call: not a result
		}
		r := callResult{Seq: seq, Time: start.UTC().Format(time.RFC3339Nano), Server: resp.GetServerId(), Zone: resp.GetHostname(), Caller: resp.GetUsername()}
		if err != nil {
			r.Error = err.Error()
		}
		line, err := json.Marshal(r)
		if err != nil {
			return err
		}
		// One write per line: a reader never sees half a result.
		if _, err := stdout.Write(append(line, '\n')); err != nil {
			return fmt.Errorf("stdout: %w", err)
		}
	}
	return nil
}
