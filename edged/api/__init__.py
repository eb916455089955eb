"""The network API: WebSocket over TLS 1.3, JSON-RPC 2.0, pairing, scopes, events."""
