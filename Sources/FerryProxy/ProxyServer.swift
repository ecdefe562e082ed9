public import FerryConfig
import Foundation
public import Logging
import NIOConcurrencyHelpers
public import NIOCore
import NIOHTTP1
import NIOPosix

#if canImport(Glibc)
    import Glibc
#endif

/// A listener the data plane serves.
public struct ProxyListener: Sendable {
    public enum Socket: Sendable {
        /// Bind here (tests).
        case bind(host: String, port: Int)
        /// A socket of this worker alone (one SO_REUSEPORT socket per worker slot): adopted with
        /// `ServerBootstrap.withBoundSocket`.
        case adopt(fd: CInt)
        /// A socket shared with other worker processes (systemd's): a dedicated thread accepts with
        /// blocking `accept` and hands each connection to an event loop, because several processes
        /// accepting on one fd trip a SwiftNIO debug assertion.
        case acceptorThread(fd: CInt)
    }

    /// What a completed TLS handshake tells the proxy.
    public struct Negotiated: Sendable {
        /// The SNI name, nil when the client sent none.
        public var serverName: String?
        /// The protocol agreed in ALPN (`h2`, `http/1.1`), nil when the client offered none.
        public var alpn: String?

        public init(serverName: String?, alpn: String? = nil) {
            self.serverName = serverName
            self.alpn = alpn
        }
    }

    /// Reads the TLS layer's handshake-completed event: nil for any other event. (FerryProxy does
    /// not import FerryTLS.)
    public typealias HandshakeReader = @Sendable (Any) -> Negotiated?

    public var configuration: ListenerConfiguration
    public var socket: Socket
    /// Runs first for every accepted connection, before the HTTP handlers (the wiring adds TLS here).
    public var prepareChannel: (@Sendable (any Channel) throws -> Void)?
    public var readHandshake: HandshakeReader?

    public init(
        configuration: ListenerConfiguration, socket: Socket,
        prepareChannel: (@Sendable (any Channel) throws -> Void)? = nil,
        readHandshake: HandshakeReader? = nil
    ) {
        self.configuration = configuration
        self.socket = socket
        self.prepareChannel = prepareChannel
        self.readHandshake = readHandshake
    }
}

/// The worker's data plane: listeners, per-loop pools, stats, drain.
public final class ProxyServer: Sendable {
    /// Every channel keeps its last receive buffer for reuse; starting small (and growing on full
    /// reads) keeps idle connections — thousands of idle WebSockets — cheap.
    static let receiveAllocator = AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 512, maximum: 65536)

    public enum ReuseMode: Sendable {
        /// The real rules (`ExchangeOutcome`).
        case strict
        /// Returns every connection to the pool: only for the test that proves the hazard test can fail.
        case unconditionalForTesting
    }

    private let configuration: FerryConfiguration
    private let group: any EventLoopGroup
    private let logger: Logger
    private let states: [ObjectIdentifier: ProxyLoopState]
    private let loops: [any EventLoop]
    private let serverChannels = NIOLockedValueBox<[any Channel]>([])
    private let drainBegun = NIOLockedValueBox(false)

    /// Every connection has been told to drain (`drain` went past its first step).
    public var isDraining: Bool { drainBegun.withLockedValue { $0 } }
    private let acceptors = NIOLockedValueBox<[Acceptor]>([])
    /// Read by the acceptor threads before each `accept`: true while a loop is at capacity.
    private let acceptPaused = NIOLockedValueBox(false)

    /// Descriptors kept out of the connection budget: standard streams, the control channel,
    /// listeners, log files, each loop's epoll/eventfd/timerfd, files OpenSSL and the resolver open.
    static let reservedDescriptors = 64

    /// The open-files limit (RLIMIT_NOFILE, soft) minus what the process needs besides connections,
    /// per event loop. `ferry worker` raises its soft limit to the hard one first.
    static func descriptorBudget(loops: Int) -> Int {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        let total = limit.rlim_cur == rlim_t.max ? 1 << 20 : Int(min(limit.rlim_cur, 1 << 30))
        return max(16, (total - reservedDescriptors - 8 * loops) / max(1, loops))
    }

    public init(
        configuration: FerryConfiguration, group: any EventLoopGroup, logger: Logger, reuseMode: ReuseMode = .strict
    ) {
        self.configuration = configuration
        self.group = group
        self.logger = logger
        var loops: [any EventLoop] = []
        for loop in group.makeIterator() { loops.append(loop) }
        self.loops = loops
        var accessLogger = Logger(label: "ferry.access")
        accessLogger.logLevel = .info
        // Always there: a reload applied in place may turn the access log on.
        let access: Logger? = accessLogger
        let budget = Self.descriptorBudget(loops: loops.count)
        let configured = max(1, configuration.limits.maxConnectionsPerWorker / max(1, loops.count))
        let limit = min(configured, budget / 2)
        if limit < configured {
            // A warning when the operator asked for more; the default only adapts to the machine.
            let isDefault = configuration.limits.maxConnectionsPerWorker == LimitSettings().maxConnectionsPerWorker
            logger.log(
                level: isDefault ? .info : .warning,
                "max_connections_per_worker lowered to what the open-files limit (RLIMIT_NOFILE) allows: each connection may need a backend descriptor too",
                metadata: [
                    "configured": "\(configuration.limits.maxConnectionsPerWorker)",
                    "effective": "\(limit * loops.count)",
                    "descriptor_budget": "\(budget * loops.count)",
                ])
        }
        var states: [ObjectIdentifier: ProxyLoopState] = [:]
        for loop in loops {
            states[ObjectIdentifier(loop)] = ProxyLoopState(
                eventLoop: loop, configuration: configuration, logger: logger, accessLogger: access,
                reusePolicy: reuseMode == .strict ? .strict : .unconditionalForTesting, descriptorBudget: budget,
                connectionLimit: limit)
        }
        self.states = states
    }

    /// A reload applied in place: every loop switches to `new` between two requests (see
    /// `ProxyLoopState.apply`); returns once all have. Listeners are not touched: a configuration
    /// whose listeners differ needs new workers (the master decides).
    public func apply(_ new: FerryConfiguration, logLevel: Logger.Level) async {
        let budget = Self.descriptorBudget(loops: loops.count)
        let limit = min(max(1, new.limits.maxConnectionsPerWorker / max(1, loops.count)), budget / 2)
        for loop in loops {
            let state = state(for: loop)
            try? await loop.submit { state.apply(new, logLevel: logLevel, connectionLimit: limit) }.get()
        }
    }

    private func state(for loop: any EventLoop) -> ProxyLoopState {
        states[ObjectIdentifier(loop)]!
    }

    /// Starts every listener; returns the bound addresses of the `bind` and `adopt` listeners, in order.
    ///
    /// With `acceptImmediately` false the listeners are set up but accept nothing until
    /// `startAccepting()`: a worker of a new generation shares its sockets with the old
    /// generation's worker and waits until that one has stopped accepting.
    public func start(listeners: [ProxyListener], acceptImmediately: Bool = true) async throws -> [SocketAddress] {
        let paused = acceptPaused
        let serverChannels = self.serverChannels
        for loop in loops {
            let state = state(for: loop)
            try await loop.submit {
                state.startSweeping()
                // Pausing applies to this loop's listening channels (their gates) and to the
                // acceptor threads. Ferry runs one loop per worker, so the budget is the worker's.
                state.applyAcceptPause = { pause in
                    paused.withLockedValue { $0 = pause }
                    for channel in serverChannels.withLockedValue({ $0 }) where channel.eventLoop === loop {
                        if let gate = try? channel.pipeline.syncOperations.handler(type: AcceptGate.self) {
                            gate.setPaused(pause)
                        }
                    }
                }
            }.get()
        }
        var addresses: [SocketAddress] = []
        for listener in listeners {
            let initializer = childInitializer(listener)
            switch listener.socket {
            case .bind(let host, let port):
                let channel = try await serverBootstrap(initializer, held: !acceptImmediately).bind(
                    host: host, port: port
                ).get()
                serverChannels.withLockedValue { $0.append(channel) }
                if let address = channel.localAddress { addresses.append(address) }
            case .adopt(let fd):
                let channel = try await serverBootstrap(initializer, held: !acceptImmediately).withBoundSocket(fd).get()
                // NIO's adoption calls listen(fd, 128), shrinking the master's configured backlog
                // (found by the 100k scale run: accept queues overflowed); listen again restores it.
                _ = listen(fd, CInt(listener.configuration.backlog))
                serverChannels.withLockedValue { $0.append(channel) }
                if let address = channel.localAddress { addresses.append(address) }
            case .acceptorThread(let fd):
                let acceptor = Acceptor(
                    fd: fd, loops: loops, initializer: initializer, paused: acceptPaused, logger: logger)
                if acceptImmediately { acceptor.start() }
                acceptors.withLockedValue { $0.append(acceptor) }
            }
        }
        return addresses
    }

    /// Lets listeners started with `acceptImmediately: false` accept.
    public func startAccepting() {
        for channel in serverChannels.withLockedValue({ $0 }) {
            channel.eventLoop.execute {
                try? channel.pipeline.syncOperations.handler(type: AcceptGate.self).release()
            }
        }
        for acceptor in acceptors.withLockedValue({ $0 }) { acceptor.start() }
    }

    private func serverBootstrap(
        _ initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>, held: Bool
    ) -> ServerBootstrap {
        let states = self.states
        return ServerBootstrap(group: group)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let state = states[ObjectIdentifier(channel.eventLoop)]!
                    let gate = AcceptGate(held: held, onExhausted: { state.acceptFailed($0) })
                    try channel.pipeline.syncOperations.addHandler(gate)
                    gate.setPaused(state.acceptPaused)
                }
            }
            .serverChannelOption(.backlog, value: 511)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelOption(.maxMessagesPerRead, value: 4)
            .childChannelOption(.recvAllocator, value: ProxyServer.receiveAllocator)
            .childChannelInitializer(initializer)
    }

    private func childInitializer(_ listener: ProxyListener) -> @Sendable (any Channel) -> EventLoopFuture<Void> {
        let states = self.states
        let tls = listener.configuration.tls != nil
        let prepare = listener.prepareChannel
        let listenerName = listener.configuration.name
        let listenerHandshakeReader = listener.readHandshake
        let proxyProtocol = listener.configuration.proxyProtocol ? listener.configuration : nil
        let redirectToHTTPSPort = listener.configuration.redirectToHTTPSPort
        return { channel in
            channel.eventLoop.makeCompletedFuture {
                let loop = states[ObjectIdentifier(channel.eventLoop)]!
                // Past the descriptor budget (an accept burst beyond the pause): refuse rather than
                // fail somewhere worse (no descriptor left for the backend connection).
                if loop.draining
                    || loop.descriptorsInUse + 2 > loop.descriptorBudget + ProxyServer.reservedDescriptors / 2
                {
                    channel.close(promise: nil)
                    return
                }
                defer { loop.checkCapacity() }
                // The listener's certificates as the loop's configuration has them now (a reload
                // applied in place may have changed them).
                let certificates = loop.certificateSelector(listener: listenerName)
                // The SNI name (the 421 rule) and ALPN (h2, which a reload in place may turn on).
                let readHandshake = tls ? listenerHandshakeReader : nil
                if let proxyProtocol {
                    // First, before TLS: the header comes before the ClientHello.
                    let logger = loop.logger
                    let peer = channel.remoteAddress?.description ?? "?"
                    try channel.pipeline.syncOperations.addHandler(
                        ProxyProtocolHandler(
                            trusted: proxyProtocol.proxyProtocolFrom,
                            timeout: .milliseconds(proxyProtocol.proxyProtocolTimeout.wholeMilliseconds),
                            refused: { reason in
                                loop.proxyProtocolRefusals += 1
                                logger.info(
                                    "connection refused: PROXY protocol",
                                    metadata: ["peer": "\(peer)", "reason": "\(reason)"])
                            }))
                }
                try prepare?(channel)
                try channel.pipeline.syncOperations.addHandler(
                    HTTP1FrontEnd(
                        loop: loop, tls: tls, certificates: certificates, readHandshake: readHandshake,
                        redirectToHTTPSPort: redirectToHTTPSPort))
            }
        }
    }

    /// Counters of all loops, summed.
    public func stats() async -> WorkerStats {
        var total = WorkerStats()
        for loop in loops {
            let state = state(for: loop)
            guard let snapshot = try? await loop.submit({ state.snapshot() }).get() else { continue }
            total.add(snapshot)
        }
        return total
    }

    /// The master reports a backend starting/restarting (false) or ready (true).
    public func setBackendAvailable(_ backend: String, _ available: Bool) {
        for loop in loops {
            let state = state(for: loop)
            loop.execute { state.setAvailable(backend, available) }
        }
    }

    /// The master's active health check: an unhealthy server takes no new requests or tunnels (its
    /// open tunnels are left alone).
    public func setServerHealthy(_ backend: String, server: Int, healthy: Bool) {
        for loop in loops {
            let state = state(for: loop)
            loop.execute { state.group(for: backend)?.setHealthy(server, healthy) }
        }
    }

    /// `ferry server drain --deadline`: the server's WebSockets still open get 1001 and close.
    public func closeTunnels(_ backend: String, server: Int) {
        for loop in loops {
            let state = state(for: loop)
            loop.execute {
                for tunnel in state.tunnelChannels.values where tunnel.backend == backend && tunnel.server == server {
                    TunnelCloser.closeGoingAway(tunnel)
                }
            }
        }
    }

    /// `ferry server drain|enable`: a draining server takes no new requests or tunnels.
    public func setServerDraining(_ backend: String, server: Int, draining: Bool) {
        for loop in loops {
            let state = state(for: loop)
            loop.execute { state.group(for: backend)?.setDraining(server, draining) }
        }
    }

    /// Stops accepting, closes idle keep-alive connections, lets in-flight requests finish, and at
    /// `gracefulTimeout` closes whatever is left (WebSocket tunnels get close code 1001 first).
    public func drain(gracefulTimeout: Duration) async {
        await stopAccepting()
        for loop in loops {
            let state = state(for: loop)
            try? await loop.submit {
                state.draining = true
                for connection in state.connections.values { connection.drain() }
                for pool in state.pools { pool.closeIdle(reason: .draining) }
            }.get()
        }
        drainBegun.withLockedValue { $0 = true }
        let deadline = ContinuousClock.now + gracefulTimeout
        while ContinuousClock.now < deadline {
            if await openConnections() == 0 { return }
            try? await Task.sleep(for: .milliseconds(50))
        }
        for loop in loops {
            let state = state(for: loop)
            try? await loop.submit {
                for connection in state.connections.values { connection.forceClose() }
                for tunnel in state.tunnelChannels.values { TunnelCloser.closeGoingAway(tunnel) }
            }.get()
        }
        let after = ContinuousClock.now + .seconds(2)
        while ContinuousClock.now < after, await openConnections() > 0 {
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    private func openConnections() async -> Int {
        var total = 0
        for loop in loops {
            let state = state(for: loop)
            total += (try? await loop.submit { state.connectionsOpen + state.activeTunnels }.get()) ?? 0
        }
        return total
    }

    /// Stops accepting; once this returns no further connection is accepted by this worker.
    public func stopAccepting() async {
        let channels = serverChannels.withLockedValue { channels in
            defer { channels.removeAll() }
            return channels
        }
        for channel in channels { try? await channel.close() }
        let acceptors = self.acceptors.withLockedValue { acceptors in
            defer { acceptors.removeAll() }
            return acceptors
        }
        for acceptor in acceptors { acceptor.stop() }
    }

    public func shutdown() async {
        await stopAccepting()
        for loop in loops {
            let state = state(for: loop)
            try? await loop.submit {
                for connection in state.connections.values { connection.forceClose() }
                for tunnel in state.tunnelChannels.values { tunnel.close(promise: nil) }
                for pool in state.pools { pool.closeIdle(reason: .draining) }
                state.stopSweeping()
            }.get()
        }
    }
}

/// Accepts on a socket shared with other processes from a dedicated thread (non-blocking
/// `accept` after `poll`), handing each connection to an event loop in turn.
final class Acceptor: @unchecked Sendable {
    let fd: CInt
    let loops: [any EventLoop]
    let initializer: @Sendable (any Channel) -> EventLoopFuture<Void>
    let paused: NIOLockedValueBox<Bool>
    let logger: Logger
    private let lifecycle = NIOLockedValueBox((started: false, stopped: false))
    /// Written by `stop()` to wake the thread from `poll`.
    private var wake: [CInt] = [-1, -1]
    private let exited = DispatchSemaphore(value: 0)

    init(
        fd: CInt, loops: [any EventLoop], initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>,
        paused: NIOLockedValueBox<Bool>, logger: Logger
    ) {
        self.fd = fd
        self.loops = loops
        self.initializer = initializer
        self.paused = paused
        self.logger = logger
        if pipe(&wake) == 0 {
            for end in wake {
                _ = fcntl(end, F_SETFD, FD_CLOEXEC)
                _ = fcntl(end, F_SETFL, O_NONBLOCK)
            }
        }
    }

    deinit {
        for end in wake where end >= 0 { close(end) }
    }

    /// Starts the thread (once; never after `stop()`).
    func start() {
        let first = lifecycle.withLockedValue { state in
            defer { state.started = true }
            return !state.started && !state.stopped
        }
        guard first else { return }
        let thread = Thread { [self] in
            self.run()
            self.exited.signal()
        }
        thread.name = "ferry-acceptor"
        thread.start()
    }

    /// Returns once the thread has stopped: no connection is accepted after this, and the one it
    /// may have been handing over is registered with its loop. The socket itself is left alone:
    /// other processes (the next worker generation) keep accepting on it, so neither close() nor
    /// shutdown() may touch it.
    func stop() {
        let running = lifecycle.withLockedValue { state in
            defer { state.stopped = true }
            return state.started && !state.stopped
        }
        guard running else { return }
        var byte: UInt8 = 1
        _ = write(wake[1], &byte, 1)
        exited.wait()
    }

    private var stopped: Bool { lifecycle.withLockedValue { $0.stopped } }

    /// Waits up to `milliseconds` for the listening socket to become readable (or only for a stop,
    /// when `listening` is false); false when stopped.
    private func wait(milliseconds: CInt, listening: Bool) -> Bool {
        // A tuple on the stack, not an array: this runs before every accept.
        var fds = (
            pollfd(fd: wake[0], events: Int16(POLLIN), revents: 0), pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        )
        _ = withUnsafeMutableBytes(of: &fds) { raw in
            poll(raw.baseAddress!.assumingMemoryBound(to: pollfd.self), listening ? 2 : 1, milliseconds)
        }
        return !stopped
    }

    private func run() {
        var next = 0
        // Non-blocking, with poll(): several processes wait on this socket and only one wins each
        // connection; the others see EAGAIN and go back to polling.
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var lastExhaustionLog: ContinuousClock.Instant?
        while !stopped {
            if paused.withLockedValue({ $0 }) {
                // At capacity: leave connections in the backlog (other workers may take them).
                guard wait(milliseconds: 20, listening: false) else { return }
                continue
            }
            guard wait(milliseconds: 250, listening: true) else { return }
            let client = accept(fd, nil, nil)
            if client < 0 {
                if errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED { continue }
                if AcceptGate.isExhaustion(errno) {
                    // Out of descriptors: keep serving what is open, retry accepting shortly.
                    let now = ContinuousClock.now
                    if lastExhaustionLog.map({ now - $0 > .seconds(10) }) ?? true {
                        lastExhaustionLog = now
                        logger.error("accept failed: out of file descriptors; retrying in 250 ms")
                    }
                    guard wait(milliseconds: 250, listening: false) else { return }
                    continue
                }
                logger.error("accept failed", metadata: ["errno": "\(errno)"])
                guard wait(milliseconds: 10, listening: false) else { return }
                continue
            }
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            _ = fcntl(client, F_SETFL, fcntl(client, F_GETFL) | O_NONBLOCK)
            let loop = loops[next % loops.count]
            next += 1
            var one: CInt = 1
            setsockopt(client, CInt(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<CInt>.size))
            let initializer = self.initializer
            let registered = ClientBootstrap(group: loop)
                .channelOption(.allowRemoteHalfClosure, value: true)
                .channelOption(.recvAllocator, value: ProxyServer.receiveAllocator)
                .channelInitializer(initializer)
                .withConnectedSocket(client)
            registered.whenFailure { _ in close(client) }
            // Wait until the loop has counted this connection (and paused accepting if it reached
            // the limit) before accepting the next: otherwise this thread outruns the loop and
            // overshoots the connection limit (70 accepted for a limit of 44 under prlimit).
            _ = try? registered.wait()
        }
    }
}

/// Sends WebSocket close frames with code 1001 ("going away") both ways, each between two frames
/// of its direction, then closes both channels shortly after.
enum TunnelCloser {
    /// Server-to-client close frame: FIN + close opcode, 2-byte payload 1001, unmasked.
    static let toClient: [UInt8] = [0x88, 0x02, 0x03, 0xE9]
    /// Client-to-server frames must be masked (RFC 6455 §5.3); a zero mask keeps the payload readable.
    static let toBackend: [UInt8] = [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE9]

    static func closeGoingAway(_ tunnel: TunnelChannels) {
        // The close for the client travels in the backend→client direction, read by the upstream glue.
        tunnel.upstreamGlue.injectAtBoundary(ByteBuffer(bytes: toClient))
        tunnel.clientGlue.injectAtBoundary(ByteBuffer(bytes: toBackend))
        let client = tunnel.client
        let upstream = tunnel.upstream
        client.eventLoop.scheduleTask(in: .seconds(1)) {
            client.close(promise: nil)
            upstream.close(promise: nil)
        }
    }
}

struct TunnelChannels {
    /// The backend and the index of its server this tunnel goes to (`ferry server drain --deadline`).
    let backend: String
    let server: Int
    let client: any Channel
    let upstream: any Channel
    let clientGlue: GlueHandler
    let upstreamGlue: GlueHandler
    let idle: TunnelIdleTimer

    func close(promise: EventLoopPromise<Void>?) {
        client.close(promise: nil)
        upstream.close(promise: promise)
    }
}
