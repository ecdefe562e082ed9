import ArgumentParser
import CSystemd
import FerryConfig
import FerryProxy
import FerrySupervisor
import FerryTLS
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// `ferry worker`: spawned by the master with its control channel on fd 3 and listeners on 4….
struct Worker: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Proxy worker (spawned by the master).", shouldDisplay: false)

    func run() throws {
        // SIGUSR1 (log rotation, forwarded by the master), SIGTERM and SIGINT (sent to every process
        // of the unit or group, not only to the master) must never take the default action (exit):
        // blocked before any thread starts, they are handled by WorkerRuntime.
        var handled = sigset_t()
        sigemptyset(&handled)
        for number in WorkerRuntime.stopSignals + [SIGUSR1] { sigaddset(&handled, number) }
        pthread_sigmask(SIG_BLOCK, &handled, nil)
        ParentWatch.exitWhenParentDies()
        let environment = ProcessInfo.processInfo.environment
        let generation = environment["FERRY_WORKER_GENERATION"] ?? "?"
        ProcessTitle.set(
            environment["FERRY_WORKER_STANDBY"] == "1"
                ? "ferry: worker g\(generation)/standby"
                : "ferry: worker g\(generation)/s\(environment["FERRY_WORKER_SLOT"] ?? "?")")
        OpenFilesLimit.raiseToHardLimit()
        let logger = Process.makeLogger(label: "ferry.worker")
        let dataPlane = ProxyDataPlane(logger: logger)
        let code = BlockingTask.run { await WorkerRuntime.run(dataPlane: dataPlane, logger: logger) }
        if code != 0 { throw ExitCode(code) }
    }
}

/// FerryProxy with FerryTLS in front of it: the worker's data plane.
final class ProxyDataPlane: WorkerDataPlane, @unchecked Sendable {
    let logger: Logger
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let counters = TLSCounters()
    private let server = NIOLockedValueBox<ProxyServer?>(nil)

    init(logger: Logger) {
        self.logger = logger
    }

    /// Built by `prepare`, started by `serve`, replaced by `reconfigure`.
    private var prepared: (proxy: ProxyServer, configuration: FerryConfiguration, tls: [TLSContext?])?
    /// What each listener's new connections get (a reload applied in place swaps them).
    private var tlsForNewConnections: [NIOLockedValueBox<(context: TLSContext, handshakeTimeout: TimeAmount)>?] = []
    /// This host's own ticket key (listeners without a `ticket_keys` file).
    private var hostTicketKey: [UInt8] = []

    func prepare(configuration: FerryConfiguration, ticketKeys: [UInt8], fileTicketKeys: [String: [[UInt8]]])
        async throws
    {
        var logger = self.logger
        logger.logLevel = Self.logLevel(configuration)
        let proxy = ProxyServer(configuration: configuration, group: group, logger: logger)
        hostTicketKey = ticketKeys
        let contexts = try tlsContexts(configuration, fileTicketKeys: fileTicketKeys)
        prepared = (proxy, configuration, contexts)
        // The key files were read above; the listeners are inherited descriptors: nothing left
        // needs root.
        try Privileges.drop(user: configuration.master.user, group: configuration.master.group)
    }

    private static func handshakeTimeout(_ tls: TLSSettings) -> TimeAmount {
        .milliseconds(tls.handshakeTimeout.wholeMilliseconds)
    }

    private static func logLevel(_ configuration: FerryConfiguration) -> Logger.Level {
        Logger.Level(rawValue: configuration.master.logLevel.rawValue) ?? .info
    }

    /// A server context per TLS listener, certificates read now.
    private func tlsContexts(_ configuration: FerryConfiguration, fileTicketKeys: [String: [[UInt8]]]) throws
        -> [TLSContext?]
    {
        try configuration.listeners.map { listener -> TLSContext? in
            guard let tls = listener.tls else { return nil }
            return try TLSContext.server(
                TLSServerConfiguration(
                    certificates: tls.certificates.map {
                        .init(certificatePath: $0.certificatePath, keyPath: $0.keyPath, serverNames: $0.serverNames)
                    },
                    minimumVersion: tls.minimumVersion == .tls13 ? .tls13 : .tls12, alpn: tls.alpn,
                    ticketKeys: fileTicketKeys[listener.name] ?? (hostTicketKey.count == 80 ? [hostTicketKey] : []),
                    acmeChallengeDirectory: configuration.acmeChallengeDirectory))
        }
    }

    func reconfigure(configuration: FerryConfiguration, fileTicketKeys: [String: [[UInt8]]]) async throws {
        guard let (proxy, current, _) = prepared else { return }
        guard configuration.listeners.map(\.name) == current.listeners.map(\.name),
            zip(configuration.listeners, current.listeners).allSatisfy({ ($0.tls == nil) == ($1.tls == nil) })
        else {
            throw TLSError(code: .contextSetup, message: "listeners differ: this needs new workers")
        }
        // Certificates first: a file that cannot be read leaves everything as it was.
        let contexts = try tlsContexts(configuration, fileTicketKeys: fileTicketKeys)
        for (index, (box, context)) in zip(tlsForNewConnections, contexts).enumerated() {
            if let box, let context, let tls = configuration.listeners[index].tls {
                box.withLockedValue { $0 = (context, Self.handshakeTimeout(tls)) }
            }
        }
        prepared = (proxy, configuration, contexts)
        await proxy.apply(configuration, logLevel: Self.logLevel(configuration))
    }

    func replaceTicketKeys(listener: String, keys: [[UInt8]]) throws {
        guard let (_, configuration, contexts) = prepared,
            let index = configuration.listeners.firstIndex(where: { $0.name == listener }),
            let ticketKeys = contexts[index]?.ticketKeys
        else { return }
        try ticketKeys.replace(with: keys)
    }

    func serve(listenerFDs: [CInt], shared: [Bool], slot: Int, generation: Int) async throws {
        guard let (proxy, configuration, contexts) = prepared else { return }
        ProcessTitle.set("ferry: worker g\(generation)/s\(slot)")
        var listeners: [ProxyListener] = []
        tlsForNewConnections = zip(contexts, configuration.listeners).map { context, listener in
            guard let context, let tls = listener.tls else { return nil }
            return NIOLockedValueBox((context, Self.handshakeTimeout(tls)))
        }
        for (index, listener) in configuration.listeners.enumerated() {
            var prepare: (@Sendable (any Channel) throws -> Void)?
            if let box = tlsForNewConnections[index], listener.tls != nil {
                let counters = self.counters
                prepare = { channel in
                    let (context, timeout) = box.withLockedValue { $0 }
                    try channel.pipeline.syncOperations.addHandler(
                        TLSHandler(context: context, handshakeTimeout: timeout, counters: counters))
                }
            }
            let fd = listenerFDs[index]
            let isShared = shared.indices.contains(index) && shared[index]
            listeners.append(
                ProxyListener(
                    configuration: listener, socket: isShared ? .acceptorThread(fd: fd) : .adopt(fd: fd),
                    prepareChannel: prepare,
                    readHandshake: {
                        ($0 as? TLSHandshakeCompleted).map { .init(serverName: $0.serverName, alpn: $0.alpn) }
                    }))
        }
        _ = try await proxy.start(listeners: listeners, acceptImmediately: false)
        server.withLockedValue { $0 = proxy }
        startHeapTrimming(logger: logger)
    }

    /// Four times a second, gives freed heap back to the kernel if the connections released
    /// enough of it since the last trim (see `HeapTrimmer`; quiet is under 512 KiB released in a
    /// tick, 2 MiB/s). A one-second tick left a burst's memory held for one to two seconds after
    /// it ended (figure g, read 1 s after a burst: 30.5 KiB per connection instead of ~23). On
    /// the event loop: the trim holds the malloc arenas' locks anyway, so the loop could not
    /// allocate meanwhile wherever it ran.
    private func startHeapTrimming(logger: Logger) {
        let counters = self.counters
        let trimmer = NIOLockedValueBox(HeapTrimmer(quietBelow: 512 << 10))
        _ = group.next().scheduleRepeatedTask(initialDelay: .seconds(1), delay: .milliseconds(250)) { _ in
            let released = counters.takeReleasedBytes()
            guard trimmer.withLockedValue({ $0.tick(released: released) }) else { return }
            let before = HeapTrimmer.residentBytes() ?? 0
            let started = ContinuousClock.now
            guard HeapTrimmer.trim() else { return }
            let took = ContinuousClock.now - started
            let after = HeapTrimmer.residentBytes() ?? 0
            logger.debug(
                "gave freed heap back to the kernel",
                metadata: [
                    "rss_before_mib": "\(before >> 20)", "rss_after_mib": "\(after >> 20)",
                    "took_us":
                        "\(took.components.seconds * 1_000_000 + took.components.attoseconds / 1_000_000_000_000)",
                ])
        }
    }

    func stats() async -> WorkerStats {
        guard let proxy = server.withLockedValue({ $0 }) else { return WorkerStats() }
        var stats = await proxy.stats()
        stats.tlsFailures = counters.failures
        return stats
    }

    func setBackendAvailable(_ backend: String, _ available: Bool) {
        server.withLockedValue { $0 }?.setBackendAvailable(backend, available)
    }

    func setServerHealthy(_ backend: String, server index: Int, healthy: Bool) {
        server.withLockedValue { $0 }?.setServerHealthy(backend, server: index, healthy: healthy)
    }

    func closeServerTunnels(_ backend: String, server index: Int) {
        server.withLockedValue { $0 }?.closeTunnels(backend, server: index)
    }

    func setServerDraining(_ backend: String, server index: Int, draining: Bool) {
        server.withLockedValue { $0 }?.setServerDraining(backend, server: index, draining: draining)
    }

    func startAccepting() {
        server.withLockedValue { $0 }?.startAccepting()
    }

    func stopAccepting() async {
        await server.withLockedValue { $0 }?.stopAccepting()
    }

    func drain(gracefulTimeout: Duration) async {
        await server.withLockedValue { $0 }?.drain(gracefulTimeout: gracefulTimeout)
    }

    func shutdown() async {
        await server.withLockedValue { $0 }?.shutdown()
    }
}
