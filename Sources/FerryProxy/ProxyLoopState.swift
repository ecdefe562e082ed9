import FerryConfig
import Logging
import NIOCore

/// Everything the data plane keeps per event loop: backend pools, counters, live connections.
///
/// Only code running on `eventLoop` touches it (that is why it needs no lock); `ProxyServer` reads
/// it through `eventLoop.submit`.
final class ProxyLoopState: @unchecked Sendable {
    let eventLoop: any EventLoop
    /// Replaced as a whole by a reload applied in place (`apply`), between two requests: an
    /// exchange keeps the route and pool it was given.
    private(set) var configuration: FerryConfiguration
    private(set) var router: Router
    /// Bumped by `apply`: a route index taken before it is looked up again by path.
    private(set) var routeVersion = 0
    private(set) var logger: Logger
    let accessLogger: Logger?
    let reusePolicy: HTTPConnectionPool.ReusePolicy
    /// Each backend's servers, pools and balancer.
    private(set) var groups: [String: UpstreamGroup] = [:]
    /// Every server's pool, flat (sweeps, descriptor counts, drain), and those a reload retired
    /// that still hold leased connections.
    private(set) var pools: [HTTPConnectionPool] = []
    var tunnelStats: [String: PoolStats] = [:]
    var routeStats: [RouteStats]
    var connectionsOpen = 0
    var connectionsTotal = 0
    /// HTTP/2 connections accepted, requests (streams) taken on them, streams open now,
    /// WebSockets opened on streams (RFC 8441), and what HTTP/2's limits or protocol errors ended,
    /// by reason (`HTTP2Connection.refusalReason`).
    var http2Connections = 0
    var http2Requests = 0
    var http2StreamsOpen = 0
    var http2Tunnels = 0
    var http2Refused: [String: Int] = [:]
    var requests = 0
    var activeTunnels = 0
    /// Connections closed for a missing, malformed, late or untrusted PROXY protocol header.
    var proxyProtocolRefusals = 0
    /// Backends the master reported as not ready (starting or restarting).
    var unavailableBackends: Set<String> = []
    /// Waiters for a backend to become available again.
    var availabilityWaiters: [String: [EventLoopPromise<Void>]] = [:]
    var connections: [ObjectIdentifier: any ClientConnection] = [:]
    /// Open WebSocket tunnels, closed with 1001 when a drain reaches its deadline.
    var tunnelChannels: [ObjectIdentifier: TunnelChannels] = [:]
    var draining = false
    private var sweepTask: RepeatedTask?

    /// Descriptors this loop may spend on connections: clients, the backend side of tunnels and
    /// pooled backend connections (`ProxyServer.descriptorBudget`).
    let descriptorBudget: Int
    /// Client connections (HTTP or WebSocket) this loop holds at most: `max_connections_per_worker`,
    /// lowered to what the descriptor budget allows, since each may need a backend connection too.
    private(set) var connectionLimit: Int
    /// Per TLS listener with several certificates: which names each serves (421 decisions).
    private var certificateSelectors: [String: CertificateSelector] = [:]

    func certificateSelector(listener: String) -> CertificateSelector? { certificateSelectors[listener] }

    private static func selectors(_ configuration: FerryConfiguration) -> [String: CertificateSelector] {
        var selectors: [String: CertificateSelector] = [:]
        for listener in configuration.listeners {
            guard let selector = listener.tls.map(CertificateSelector.init), !selector.isTrivial else { continue }
            selectors[listener.name] = selector
        }
        return selectors
    }
    /// At capacity: the listeners are not accepting (connections wait in the kernel's backlog).
    private(set) var acceptPaused = false
    private(set) var acceptPauses = 0
    private(set) var acceptErrors = 0
    private var lastCapacityLog: NIODeadline?
    /// Set by `ProxyServer`: pauses (true) or resumes (false) accepting on this loop's listeners.
    var applyAcceptPause: ((Bool) -> Void)?

    /// How often `sweepDeadlines` runs, hence how late a timeout may fire.
    ///
    /// Connections keep their timeouts as plain deadlines that one repeating task per loop checks,
    /// instead of a `scheduleTask` + `cancel` per request and per pooled connection: in `perf` on
    /// the keep-alive benchmark, NIO's scheduled-task heap (insertion, linear removal on cancel,
    /// task copies and their retains) took about a tenth of a worker's CPU.
    static let sweepInterval = TimeAmount.milliseconds(100)

    init(
        eventLoop: any EventLoop, configuration: FerryConfiguration, logger: Logger, accessLogger: Logger?,
        reusePolicy: HTTPConnectionPool.ReusePolicy, descriptorBudget: Int, connectionLimit: Int
    ) {
        self.eventLoop = eventLoop
        self.descriptorBudget = descriptorBudget
        self.connectionLimit = connectionLimit
        self.configuration = configuration
        self.router = Router(routes: configuration.routes)
        self.logger = logger
        self.accessLogger = accessLogger
        self.reusePolicy = reusePolicy
        self.routeStats = configuration.routes.map { RouteStats(path: $0.path, backend: $0.backendName) }
        self.certificateSelectors = Self.selectors(configuration)
        for backend in configuration.backends {
            let group = UpstreamGroup(
                backend: backend, settings: configuration.pool, eventLoop: eventLoop, reusePolicy: reusePolicy)
            groups[backend.name] = group
            pools += group.pools
            tunnelStats[backend.name] = PoolStats(backend: backend.name, protocol: "websocket")
        }
    }

    func group(for backend: String) -> UpstreamGroup? { groups[backend] }

    /// A reload applied in place: new requests route with `new`; backends whose configuration is
    /// unchanged keep their group (pools, balancer, passive health); the others get a new group
    /// and their old pools are retired (idle connections closed now, leased ones after their
    /// exchange). Route counters follow their path. Call on `eventLoop`.
    func apply(_ new: FerryConfiguration, logLevel: Logger.Level, connectionLimit: Int) {
        eventLoop.assertInEventLoop()
        self.connectionLimit = connectionLimit
        certificateSelectors = Self.selectors(new)
        let poolSettingsChanged = new.pool != configuration.pool
        var kept: [String: UpstreamGroup] = [:]
        var retiredPools: [HTTPConnectionPool] = []
        for backend in new.backends {
            if let group = groups[backend.name], group.backend == backend, !poolSettingsChanged {
                kept[backend.name] = group
            } else {
                kept[backend.name] = UpstreamGroup(
                    backend: backend, settings: new.pool, eventLoop: eventLoop, reusePolicy: reusePolicy)
            }
            if tunnelStats[backend.name] == nil {
                tunnelStats[backend.name] = PoolStats(backend: backend.name, protocol: "websocket")
            }
        }
        for (name, group) in groups where kept[name] !== group { retiredPools += group.pools }
        for pool in retiredPools { pool.retire() }
        groups = kept
        // Retired pools stay swept and counted until their last leased connection is back.
        let stillOpen = (pools.filter(\.retired) + retiredPools).filter { $0.openConnections > 0 }
        pools = new.backends.flatMap { kept[$0.name]?.pools ?? [] } + stillOpen
        unavailableBackends = unavailableBackends.filter { name in
            new.backends.contains { $0.name == name || BackendConfiguration.splitInstanceName(name)?.0 == $0.name }
        }
        let previous = Dictionary(routeStats.map { ($0.path, $0) }, uniquingKeysWith: { first, _ in first })
        routeStats = new.routes.map { route in
            var stats = previous[route.path] ?? RouteStats(path: route.path, backend: route.backendName)
            stats.backend = route.backendName
            return stats
        }
        configuration = new
        router = Router(routes: new.routes)
        routeVersion += 1
        logger.logLevel = logLevel
    }

    /// The index in `routeStats` of the route an exchange was given (`index` at `version`): the
    /// same index while no reload intervened, else the route with the same path, if it remains.
    func routeStatsIndex(_ index: Int?, version: Int, path: String?) -> Int? {
        guard let index else { return nil }
        if version == routeVersion { return routeStats.indices.contains(index) ? index : nil }
        guard let path else { return nil }
        return routeStats.firstIndex { $0.path == path }
    }

    /// Starts the repeating sweep; call on `eventLoop`.
    func startSweeping() {
        eventLoop.assertInEventLoop()
        guard sweepTask == nil else { return }
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        sweepTask = eventLoop.scheduleRepeatedTask(initialDelay: Self.sweepInterval, delay: Self.sweepInterval) { _ in
            bound.value.sweepDeadlines(now: .now())
        }
    }

    func stopSweeping() {
        sweepTask?.cancel()
        sweepTask = nil
    }

    /// Fires every deadline that has passed: connections' keep-alive, request-head and response
    /// timeouts, idle pooled connections, quiet WebSocket tunnels.
    func sweepDeadlines(now: NIODeadline) {
        var due: [any ClientConnection] = []
        for connection in connections.values {
            if let deadline = connection.deadline, deadline <= now { due.append(connection) }
        }
        for connection in due { connection.deadlinePassed() }
        for pool in pools { pool.sweep(now: now) }
        if pools.contains(where: { $0.retired && $0.openConnections == 0 }) {
            pools.removeAll { $0.retired && $0.openConnections == 0 }
        }
        for tunnel in tunnelChannels.values { tunnel.idle.sweep(now: now) }
        checkCapacity()
    }

    // MARK: - Capacity

    /// Client connections: HTTP connections and WebSocket tunnels.
    var clientConnections: Int { connectionsOpen + activeTunnels }

    /// Connection descriptors open on this loop: clients, both sides of tunnels, pooled backend
    /// connections (idle or leased).
    var descriptorsInUse: Int {
        var pooled = 0
        for pool in pools { pooled += pool.openConnections }
        return connectionsOpen + 2 * activeTunnels + pooled
    }

    /// Pauses accepting at the connection limit or the descriptor budget (after closing idle pooled
    /// connections, which are the only descriptors that can be given back at once), and resumes once
    /// 1 % of the limit is free again. Runs after every accepted connection and on every sweep.
    func checkCapacity() {
        // Descriptors left once the next connection and its backend connection are open.
        var descriptorsFree = descriptorBudget - 2 - descriptorsInUse
        if acceptPaused {
            let slack = max(1, connectionLimit / 100)
            guard clientConnections + slack <= connectionLimit, descriptorsFree >= slack else { return }
            acceptPaused = false
            applyAcceptPause?(false)
            logger.info(
                "accepting connections again",
                metadata: ["connections": "\(clientConnections)", "limit": "\(connectionLimit)"])
            return
        }
        if descriptorsFree < 0 {
            for pool in pools { pool.closeIdle(reason: .descriptorLimit) }
            descriptorsFree = descriptorBudget - 2 - descriptorsInUse
        }
        let full = clientConnections >= connectionLimit
        guard full || descriptorsFree < 0 else { return }
        acceptPaused = true
        acceptPauses += 1
        applyAcceptPause?(true)
        logRateLimited(
            "\(full ? "connection limit" : "descriptor budget") reached: not accepting new connections until some close (open connections are served; new ones wait in the listen backlog)"
        )
    }

    /// `accept` failed for lack of descriptors (the limit is shared with the rest of the process).
    func acceptFailed(_ error: IOError) {
        acceptErrors += 1
        for pool in pools { pool.closeIdle(reason: .descriptorLimit) }
        logRateLimited("accept failed (\(error)); retrying in 250 ms, open connections are served")
    }

    /// At most one capacity message per 10 s: at the limit, pauses come and go with every close.
    private func logRateLimited(_ message: String) {
        let now = NIODeadline.now()
        if let last = lastCapacityLog, now - last < .seconds(10) { return }
        lastCapacityLog = now
        logger.warning(
            "\(message)",
            metadata: [
                "connections": "\(clientConnections)", "limit": "\(connectionLimit)",
                "descriptors": "\(descriptorsInUse)", "descriptor_budget": "\(descriptorBudget)",
                "pauses": "\(acceptPauses)", "accept_errors": "\(acceptErrors)",
            ])
    }

    func tunnelConnector(to server: ServerConfiguration) -> TunnelConnector {
        TunnelConnector(address: server.address, eventLoop: eventLoop)
    }

    /// Succeeds when `backend` is available, fails after its queue timeout (→ 503).
    func waitUntilAvailable(_ backend: BackendConfiguration) -> EventLoopFuture<Void> {
        guard unavailableBackends.contains(backend.name) else { return eventLoop.makeSucceededVoidFuture() }
        let promise = eventLoop.makePromise(of: Void.self)
        availabilityWaiters[backend.name, default: []].append(promise)
        let timeout = eventLoop.scheduleTask(
            in: .nanoseconds(Int64(backend.queueTimeout.wholeMilliseconds) * 1_000_000)
        ) {
            promise.fail(ProxyServerError.backendUnavailable)
        }
        promise.futureResult.whenComplete { _ in timeout.cancel() }
        return promise.futureResult
    }

    func setAvailable(_ backend: String, _ available: Bool) {
        // An instance (`name/i`) of a backend with several: only when all are down do requests
        // wait for the backend as a whole.
        if let (name, server) = BackendConfiguration.splitInstanceName(backend), let group = groups[name],
            group.backend.instances > 1, server < group.pools.count
        {
            let allDown = group.setDown(server, !available)
            if allDown != unavailableBackends.contains(name) { setAvailable(name, !allDown) }
            return
        }
        if available {
            unavailableBackends.remove(backend)
            let waiters = availabilityWaiters.removeValue(forKey: backend) ?? []
            for waiter in waiters { waiter.succeed() }
        } else {
            unavailableBackends.insert(backend)
            for pool in groups[backend]?.pools ?? [] { pool.closeIdle(reason: .backendClose) }
        }
    }

    func snapshot() -> WorkerStats {
        var pools: [PoolStats] = []
        for name in configuration.backends.map(\.name) {
            guard let group = groups[name] else { continue }
            for (index, pool) in group.pools.enumerated() {
                var stats = pool.snapshot
                if group.pools.count > 1 {
                    stats.active = pool.inFlight
                    stats.tunnels = group.tunnels[index]
                }
                pools.append(stats)
            }
            if let tunnel = tunnelStats[name] { pools.append(tunnel) }
        }
        var stats = WorkerStats(
            connectionsOpen: connectionsOpen, connectionsTotal: connectionsTotal, requests: requests,
            activeTunnels: activeTunnels, routes: routeStats, pools: pools)
        stats.connectionLimit = connectionLimit
        stats.acceptPauses = acceptPauses
        stats.acceptErrors = acceptErrors
        stats.proxyProtocolRefused = proxyProtocolRefusals
        // Every TLS connection starts on the HTTP/1 front end; those that agree on h2 move on.
        stats.protocols.http1Connections = connectionsTotal - http2Connections
        stats.protocols.http1Requests = requests - http2Requests
        stats.protocols.http2Connections = http2Connections
        stats.protocols.http2Requests = http2Requests
        stats.protocols.http2StreamsOpen = http2StreamsOpen
        stats.protocols.http2Tunnels = http2Tunnels
        stats.protocols.http2Refused = http2Refused
        return stats
    }

    private static let statusClasses = ["1xx", "2xx", "3xx", "4xx", "5xx"]

    func recordResponse(route: Int?, status: Int, bytesIn: Int, bytesOut: Int) {
        guard let route, routeStats.indices.contains(route) else { return }
        let klass = Self.statusClasses[max(1, min(5, status / 100)) - 1]
        routeStats[route].responses[klass, default: 0] += 1
        routeStats[route].bytesIn += bytesIn
        routeStats[route].bytesOut += bytesOut
    }
}

enum ProxyServerError: Error {
    case backendUnavailable
}
