import FerryConfig
import NIOCore
import NIOHTTP1
import NIOPosix

/// Receives what happens on a leased upstream HTTP connection during one exchange.
protocol UpstreamExchangeDelegate: AnyObject {
    /// The response head. Returns true when the body should come with the backend's chunked
    /// framing as it is (the client gets chunks too), false for its payload bytes only.
    func upstream(receivedHead head: UpstreamResponseHead) -> Bool
    /// Body bytes: framed as the backend sent them, or payload only (see `receivedHead`).
    func upstream(receivedBody body: ByteBuffer)
    /// The response's end was read (the connection goes back to the pool at the end of the burst).
    func upstreamResponseEnded()
    /// The end of one read burst from the backend: a good moment to flush to the client.
    func upstreamReadComplete()
    /// The response ended and the connection has been returned to the pool (or closed): the next
    /// request, even a pipelined one arriving right now, may lease it.
    func upstreamExchangeFinished()
    /// The exchange failed (connection error, EOF before the response ended, timeout).
    func upstream(failed error: any Error, responseStarted: Bool)
    func upstream(writabilityChanged writable: Bool)
}

/// A backend connection that speaks HTTP/1.1 and lives in an `HTTPConnectionPool`.
///
/// Confined to its event loop like its pool. It has no way to become a tunnel: WebSocket upgrades never use this type (see `TunnelConnector`),
/// and a 101 seen here closes the connection (`PoolCloseReason.upgraded`).
final class UpstreamConnection: @unchecked Sendable {
    let channel: any Channel
    let handler: UpstreamHTTPHandler
    /// Requests this connection has carried, the current one included.
    var requestsServed = 0
    /// When it entered the pool (the loop's sweep retires it after `PoolSettings.idleTimeout`).
    var idleSince: NIODeadline?
    /// Reads paused because the client is slow (response backpressure).
    private(set) var readsPaused = false

    func setReads(paused: Bool) {
        guard paused != readsPaused else { return }
        readsPaused = paused
        channel.setOption(.autoRead, value: !paused).whenComplete { _ in }
    }

    init(channel: any Channel, handler: UpstreamHTTPHandler) {
        self.channel = channel
        self.handler = handler
    }
}

/// Keep-alive connections to one backend for one event loop: no locks, because everything that
/// touches it runs on that loop (hence `@unchecked Sendable`: it is confined, not shared).
///
/// The pool holds only idle connections: `lease` takes one out (or opens a new one), and the
/// connection's handler gives it back only when its exchange ended cleanly (`ExchangeOutcome`).
/// The release happens at the end of the read burst that completed the response, so bytes that
/// arrived behind the response in the same read are seen before the connection can be reused.
final class HTTPConnectionPool: @unchecked Sendable {
    /// `unconditionalForTesting` models the seed's proxy, to prove the hazard test can fail: it
    /// hands out a connection whether or not its last exchange is over (even one still carrying
    /// another request), so responses go to the wrong requests.
    enum ReusePolicy {
        case strict
        case unconditionalForTesting
    }

    let backend: BackendConfiguration
    /// The server of `backend` this pool connects to.
    let server: ServerConfiguration
    let settings: PoolSettings
    let eventLoop: any EventLoop
    let reusePolicy: ReusePolicy
    private var idle: [UpstreamConnection] = []
    /// Only kept for `unconditionalForTesting`: the most recently leased connection.
    private var lastLeased: UpstreamConnection?
    private(set) var stats: PoolStats

    /// - Parameter label: the server's name in the pool's stats (nil for a backend's only server).
    init(
        backend: BackendConfiguration, server: ServerConfiguration, label: String?, settings: PoolSettings,
        eventLoop: any EventLoop, reusePolicy: ReusePolicy
    ) {
        self.backend = backend
        self.server = server
        self.settings = settings
        self.eventLoop = eventLoop
        self.reusePolicy = reusePolicy
        self.stats = PoolStats(backend: backend.name, server: label, protocol: "http")
    }

    var idleCount: Int { idle.count }
    /// Connections of this pool that are open, idle or leased (each holds a descriptor).
    var openConnections = 0
    /// Connections being opened.
    private(set) var connecting = 0
    /// Exchanges this pool carries now: leased connections and those being opened for one.
    var inFlight: Int { openConnections - idle.count + connecting }

    /// An idle connection if one is usable, else a new one. `reused` tells the caller whether a
    /// failure may be retried on a fresh connection.
    func lease(connectTimeout: Duration) -> EventLoopFuture<(UpstreamConnection, reused: Bool)> {
        eventLoop.assertInEventLoop()
        if let connection = leaseIdle() {
            return eventLoop.makeSucceededFuture((connection, true))
        }
        if reusePolicy == .unconditionalForTesting, let busy = lastLeased, busy.channel.isActive {
            stats.reused += 1
            busy.handler.beginExchange(requestsServed: busy.requestsServed + 1)
            return eventLoop.makeSucceededFuture((busy, true))
        }
        let pool = self
        return connect(connectTimeout: connectTimeout).map { connection in
            connection.requestsServed = 1
            connection.handler.beginExchange(requestsServed: 1)
            if pool.reusePolicy == .unconditionalForTesting { pool.lastLeased = connection }
            return (connection, false)
        }
    }

    /// The most recently parked idle connection that is still open, leased; nil when there is none.
    /// The common case of `lease`, without a future (callers on the hot path use it first).
    func leaseIdle() -> UpstreamConnection? {
        eventLoop.assertInEventLoop()
        while let connection = idle.popLast() {
            connection.idleSince = nil
            guard connection.channel.isActive else { continue }
            stats.reused += 1
            connection.requestsServed += 1
            connection.handler.beginExchange(requestsServed: connection.requestsServed)
            return connection
        }
        return nil
    }

    /// A new connection, never an idle one (used for the retry after a failure on a reused one).
    func connect(connectTimeout: Duration) -> EventLoopFuture<UpstreamConnection> {
        let pool = self
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(.nanoseconds(Int64(connectTimeout.wholeMilliseconds) * 1_000_000))
            .channelOption(.recvAllocator, value: ProxyServer.receiveAllocator)
            .channelOption(.allowRemoteHalfClosure, value: false)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // One handler: requests are written as bytes, responses read as bytes (its
                    // head parsed in place, its body relayed while its framing is tracked).
                    try channel.pipeline.syncOperations.addHandler(UpstreamHTTPHandler(pool: pool))
                }
            }
        connecting += 1
        let connected = server.address.connect(bootstrap)
        connected.whenComplete { _ in pool.connecting -= 1 }
        return connected.flatMapThrowing { channel in
            let handler = try channel.pipeline.syncOperations.handler(type: UpstreamHTTPHandler.self)
            pool.stats.opened += 1
            let connection = UpstreamConnection(channel: channel, handler: handler)
            handler.connection = connection
            return connection
        }
    }

    /// Called by the connection's handler once its exchange is over.
    func finished(_ connection: UpstreamConnection, outcome: ExchangeOutcome) {
        eventLoop.assertInEventLoop()
        var reason = outcome.closeReason(maxRequestsPerConnection: settings.maxRequestsPerConnection)
        if reusePolicy == .unconditionalForTesting && connection.channel.isActive { reason = nil }
        if reason == nil && retired { reason = .reconfigured }
        if reason == nil && idle.count >= settings.maxIdlePerBackend { reason = .poolFull }
        if reason == nil && !connection.channel.isActive { reason = .backendClose }
        if let reason {
            close(connection, reason: reason)
            return
        }
        park(connection)
    }

    private func park(_ connection: UpstreamConnection) {
        connection.handler.becomeIdle()
        // Backpressure may have paused reads while the client was slow; an idle connection must
        // read, or it would miss the EOF/stray bytes that retire it, and its next response.
        connection.setReads(paused: false)
        connection.idleSince = .now()
        idle.append(connection)
    }

    /// Called by the loop's sweep: retires connections idle for `idleTimeout`. `idle` is in
    /// parking order (leases take the newest), so the expired ones are at its front.
    func sweep(now: NIODeadline) {
        let timeout = TimeAmount.milliseconds(settings.idleTimeout.wholeMilliseconds)
        var expired = 0
        while expired < idle.count, let since = idle[expired].idleSince, now - since >= timeout {
            expired += 1
        }
        guard expired > 0 else { return }
        let retired = idle.prefix(expired)
        idle.removeFirst(expired)
        for connection in retired { close(connection, reason: .idleTimeout) }
    }

    /// An idle connection saw data, EOF or its idle timer: it leaves the pool and is closed.
    func discard(_ connection: UpstreamConnection, reason: PoolCloseReason) {
        guard let index = idle.firstIndex(where: { $0 === connection }) else { return }
        idle.remove(at: index)
        connection.idleSince = nil
        close(connection, reason: reason)
    }

    func close(_ connection: UpstreamConnection, reason: PoolCloseReason) {
        stats.closed[reason.rawValue, default: 0] += 1
        connection.handler.retire()
        connection.channel.close(promise: nil)
    }

    func recordRetry() { stats.retries += 1 }

    /// A reload applied in place replaced this pool: idle connections close now, leased ones when
    /// their exchange ends; nothing new is leased from it (its group is gone from the loop).
    private(set) var retired = false

    func retire() {
        retired = true
        closeIdle(reason: .reconfigured)
    }

    /// Closes every idle connection (drain, shutdown).
    func closeIdle(reason: PoolCloseReason) {
        let connections = idle
        idle.removeAll()
        for connection in connections {
            connection.idleSince = nil
            close(connection, reason: reason)
        }
    }

    var snapshot: PoolStats {
        var copy = stats
        copy.idle = idle.count
        return copy
    }
}
