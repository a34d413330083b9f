package syncserver

// HasSession reports whether the server has a live session of zone.
func (s *Server) HasSession(zone string) bool { return s.pick(zone, "") != nil }
