public import FerryConfig

/// What happened on one upstream HTTP exchange, and therefore whether its connection may serve
/// another request.
///
/// This is where Ferry keeps the promise the seed's proxy broke: a connection goes back to the pool
/// **only** after a complete, cleanly framed exchange. Every other outcome closes it and names why,
/// and the reason is counted in the pool's stats.
public struct ExchangeOutcome: Sendable, Equatable {
    /// The whole request, body included, was written to the backend.
    public var requestFullySent = false
    /// The response's `.end` was decoded according to its framing (length, chunked, no-body status).
    public var responseComplete = false
    /// The response was delimited by connection close (no length, not chunked): it cannot be reused.
    public var responseDelimitedByClose = false
    /// The backend said `Connection: close` (or HTTP/1.0 without keep-alive).
    public var backendKeepAlive = true
    public var status: Int?
    /// Bytes (or a further response) arrived after the response ended.
    public var unexpectedData = false
    public var failed = false
    public var timedOut = false
    /// The connection has served this many requests, this one included.
    public var requestsServed = 1

    public init() {}

    /// nil: the connection may be reused; otherwise why it must be closed.
    public func closeReason(maxRequestsPerConnection: Int) -> PoolCloseReason? {
        if failed || timedOut { return .error }
        if status == 101 { return .upgraded }
        if unexpectedData { return .unexpectedData }
        if !requestFullySent || !responseComplete || responseDelimitedByClose { return .notReusableFraming }
        if !backendKeepAlive { return .backendClose }
        if requestsServed >= maxRequestsPerConnection { return .maxRequests }
        return nil
    }
}
