package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/meshfed/meshfed/api"
)

// GlobalStatus returns the global cluster as the answering node sees it
// (GET /global/status): every member's gossip state, its place in the Raft
// configuration and, for members that answered, their own Raft view. It
// needs the admin token. During an election it is retried like any call.
func (c *Client) GlobalStatus(ctx context.Context) (*api.GlobalStatus, error) {
	resp, err := c.do(ctx, request{method: http.MethodGet, segments: []string{"global", "status"}})
	if err != nil {
		return nil, err
	}
	var st api.GlobalStatus
	if err := json.Unmarshal(resp.body, &st); err != nil {
		return nil, fmt.Errorf("GET /global/status: decoding the answer: %w", err)
	}
	return &st, nil
}
