package server

import (
	"log/slog"

	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
)

// sent is the last response of one type on one stream.
type sent struct {
	nonce   string
	version string
}

// answer is what a request says about the last response of its type.
type answer int

const (
	answerNone answer = iota // no nonce, or a stale one: a (re)subscription
	answerACK
	answerNACK
)

// classify tells an ACK from a NACK. Only a request carrying the nonce of
// the stream's last response of that type answers it (go-control-plane
// ignores the others). A state-of-the-world ACK also carries that
// response's version; a request with the nonce but another version only
// changes the subscription. Delta requests carry no version.
func classify(last sent, hasLast bool, nonce, versionInfo string, errorDetail *rpcstatus.Status, delta bool) answer {
	if nonce == "" || !hasLast || nonce != last.nonce {
		return answerNone
	}
	if errorDetail != nil {
		return answerNACK
	}
	if delta || versionInfo == last.version {
		return answerACK
	}
	return answerNone
}

// nackLog remembers, per node and type, the last version whose NACK was
// logged, so that a rejected version is logged once however many streams
// or retries report it.
type nackLog struct {
	last map[string]map[string]string // node id → type_url → version
}

// first reports whether this (node, type, version) NACK is the first one
// seen; the caller holds the server's nack lock.
func (l *nackLog) first(node, typeURL, version string) bool {
	byType := l.last[node]
	if byType == nil {
		byType = make(map[string]string)
		l.last[node] = byType
	}
	if byType[typeURL] == version {
		return false
	}
	byType[typeURL] = version
	return true
}

// onNACK counts a NACK and logs it: at Warn the first time this (node,
// type, version) is rejected, at Debug after that.
func (s *Server) onNACK(st *stream, typeURL string, last sent, detail *rpcstatus.Status) {
	s.metrics.nacks.WithLabelValues(typeURL).Inc()
	s.nackMu.Lock()
	first := s.nacks.first(st.node.ID, typeURL, last.version)
	s.nackMu.Unlock()
	level := slog.LevelDebug
	if first {
		level = slog.LevelWarn
	}
	s.logger.Log(st.ctx, level, "proxy rejected configuration (NACK)",
		"dataplane", st.node.ID, "type_url", typeURL, "version", last.version,
		"error", detail.GetMessage(), "stream", st.id)
}
