package server

import (
	"context"
	"errors"
	"fmt"
	"strings"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// Node is one ADS stream's proxy, as the Registrar sees it.
type Node struct {
	// ID is the xDS node id, "<mesh>.<name>"; the resources of the stream
	// are those set with SetResources(ID, ...).
	ID   string
	Mesh string
	Name string
	// Metadata is the node's metadata (a proxy presents its Dataplane
	// definition there). It may be nil. Do not modify it. Only Connect sees
	// it: the server drops it once the stream is accepted.
	Metadata *structpb.Struct
	// UserAgent is the node's user_agent_name, and its version after a
	// slash when it sent one ("envoy/1.34.1", "gRPC Go/1.85.0").
	UserAgent string
	// Kind is "grpc" for proxyless gRPC applications, "envoy" otherwise.
	Kind string
	// StreamID identifies the stream among all the streams of this server
	// (state of the world and delta alike).
	StreamID int64
	// Delta is true for a DeltaAggregatedResources stream.
	Delta bool
}

// Registrar is told about the proxies that connect: the zone registers
// their Dataplanes (DESIGN.md §7).
type Registrar interface {
	// Connect is called on a stream's first request, before any response.
	// A non-nil error ends that stream (and only that one); its message is
	// sent to the proxy. Wrap ErrInvalidNode when the proxy's own input is
	// wrong (InvalidArgument) and ErrUnavailable when the proxy should
	// simply retry later (Unavailable); any other error is reported as
	// FailedPrecondition. ctx ends with the stream.
	Connect(ctx context.Context, n Node) error
	// Disconnect is called when a stream that Connect accepted ends: once
	// per stream, so a node with several streams is disconnected several
	// times.
	Disconnect(n Node)
}

// Observer, when the Registrar implements it too, is told what happens on
// each accepted stream (for insights): responses sent, ACKs and NACKs. It
// is called on the stream's goroutine and must not block.
type Observer interface {
	Responded(n Node, typeURL string)
	Acked(n Node, typeURL string)
	Nacked(n Node, typeURL, message string)
}

var (
	// ErrInvalidNode marks a refusal caused by what the proxy sent (its
	// node id or metadata): the stream ends with InvalidArgument.
	ErrInvalidNode = errors.New("invalid node")
	// ErrUnavailable marks a refusal the proxy should retry (the zone is
	// not ready): the stream ends with Unavailable.
	ErrUnavailable = errors.New("unavailable")
)

// statusFor is the one place that chooses the gRPC code of an error that
// ends an ADS stream.
func statusFor(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.FailedPrecondition
	switch {
	case errors.Is(err, ErrInvalidNode):
		code = codes.InvalidArgument
	case errors.Is(err, ErrUnavailable):
		code = codes.Unavailable
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	return status.Error(code, err.Error())
}

// ParseNodeID splits a node id "<mesh>.<name>" at its first dot (a mesh
// name is a DNS label, without dots; the name may hold dots). Its errors
// wrap ErrInvalidNode and name the field node.id.
func ParseNodeID(id string) (mesh, name string, err error) {
	if id == "" {
		return "", "", fmt.Errorf("%w: node.id: must be set to \"<mesh>.<name>\"", ErrInvalidNode)
	}
	mesh, name, ok := strings.Cut(id, ".")
	switch {
	case !ok:
		return "", "", fmt.Errorf("%w: node.id: %q must be \"<mesh>.<name>\" (no dot found)", ErrInvalidNode, id)
	case mesh == "":
		return "", "", fmt.Errorf("%w: node.id: %q has an empty mesh (expected \"<mesh>.<name>\")", ErrInvalidNode, id)
	case name == "":
		return "", "", fmt.Errorf("%w: node.id: %q has an empty name (expected \"<mesh>.<name>\")", ErrInvalidNode, id)
	}
	return mesh, name, nil
}

// newNode describes a stream's node from the node its first request
// carries.
func newNode(n *core.Node, streamID int64, delta bool) (Node, error) {
	if n == nil {
		return Node{}, fmt.Errorf("%w: node: the first request of a stream must carry the node", ErrInvalidNode)
	}
	mesh, name, err := ParseNodeID(n.GetId())
	if err != nil {
		return Node{}, err
	}
	ua := n.GetUserAgentName()
	if v := n.GetUserAgentVersion(); v != "" {
		ua += "/" + v
	}
	return Node{
		ID:        n.GetId(),
		Mesh:      mesh,
		Name:      name,
		Metadata:  n.GetMetadata(),
		UserAgent: ua,
		Kind:      kindOf(n.GetUserAgentName()),
		StreamID:  streamID,
		Delta:     delta,
	}, nil
}

// kindOf tells proxyless gRPC applications ("gRPC Go", "grpc-java", ...)
// from Envoy.
func kindOf(userAgentName string) string {
	if strings.Contains(strings.ToLower(userAgentName), "grpc") {
		return "grpc"
	}
	return "envoy"
}
