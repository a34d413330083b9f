// Package api is Meshfed's resource model: the one definition of every
// resource type (Mesh, Dataplane, policies, ...) shared by the HTTP API, the
// global Raft store, the global⇄zone sync stream and xDS generation.
//
// Where it sits in the data flow: meshctl and HTTP clients send resources in
// Kuma's universal format (YAML or JSON); the codec here decodes them into a
// Resource, the type's Spec applies its defaults and validates itself, and only
// then does a store (global/ or zone/) accept it. Reads go the other way
// through the same codec.
//
// A Resource held by a store is immutable: writers build a new one. This is
// what lets stores hand out pointers to concurrent readers without copying.
//
// The registry (registry.go) is the single table of types: adding a type means
// adding its Spec definition and one Descriptor entry, nothing else.
//
// This package imports nothing else from the repository.
package api
