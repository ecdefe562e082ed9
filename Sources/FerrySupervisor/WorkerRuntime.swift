import CSystemd
public import FerryConfig
import Foundation
public import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOExtras
import NIOPosix

#if canImport(Glibc)
    import Glibc
    import CoreFoundation  // its copy of the C structs is the one in scope once FerryACME is linked
#endif

/// The worker's data plane as the runtime sees it (FerryProxy + FerryTLS, wired by the executable;
/// FerrySupervisor imports neither).
public protocol WorkerDataPlane: Sendable {
    /// Everything a worker does before it needs its listeners: TLS contexts (certificates loaded),
    /// the proxy and its event loop, privileges dropped. Throws when the worker cannot boot (bad
    /// certificate…): the master then stops respawning it. A standby worker stops here.
    ///
    /// `ticketKeys`: this host's own session ticket key; `fileTicketKeys`: listener name → the
    /// keys of its `ticket_keys` file (first encrypts), which take precedence.
    func prepare(configuration: FerryConfiguration, ticketKeys: [UInt8], fileTicketKeys: [String: [[UInt8]]])
        async throws
    /// A reload applied in place (same listeners): new requests and handshakes use
    /// `configuration`; what runs keeps what it started with. Throws (and changes nothing) when a
    /// certificate cannot be loaded.
    func reconfigure(configuration: FerryConfiguration, fileTicketKeys: [String: [[UInt8]]]) async throws
    /// A listener's `ticket_keys` file changed: the next handshakes use `keys`.
    func replaceTicketKeys(listener: String, keys: [[UInt8]]) throws
    /// Adopts the inherited listener fds of `slot` (one per `[[listen]]`, in order) without
    /// accepting yet.
    func serve(listenerFDs: [CInt], shared: [Bool], slot: Int, generation: Int) async throws
    /// Starts accepting: the master says so once no other process accepts on these sockets.
    func startAccepting()
    /// Stops accepting; returns once no further connection can be accepted.
    func stopAccepting() async
    func stats() async -> WorkerStats
    func setBackendAvailable(_ backend: String, _ available: Bool)
    /// The master's active health check on server `server` of `backend`.
    func setServerHealthy(_ backend: String, server: Int, healthy: Bool)
    func setServerDraining(_ backend: String, server: Int, draining: Bool)
    func closeServerTunnels(_ backend: String, server: Int)
    func drain(gracefulTimeout: Duration) async
    func shutdown() async
}

/// A worker process's side of its control channel (fd 3): configuration in, heartbeats out, drain
/// on command, and exit when the master is gone (EOF), since PR_SET_PDEATHSIG only fires when the
/// master's spawning thread exits.
public enum WorkerRuntime {
    /// Signals a worker turns into a request to the master instead of exiting (the worker blocks
    /// them before its threads start; see `ferry worker`).
    public static let stopSignals: [Int32] = [SIGTERM, SIGINT]

    public static let controlFD: CInt = 3
    public static let firstListenerFD: CInt = 4

    /// Runs until drained or the master disappears; returns the exit code.
    public static func run(dataPlane: some WorkerDataPlane, logger: Logger) async -> Int32 {
        // The control channel's loop lives as long as the process.
        let group = MultiThreadedEventLoopGroup.singleton
        let (stream, continuation) = AsyncStream.makeStream(of: MasterToWorker?.self)
        let channel: any Channel
        do {
            channel = try await NIOPipeBootstrap(group: group)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineBasedFrameDecoder()))
                        try channel.pipeline.syncOperations.addHandler(
                            LineHandler(
                                onLine: { line in
                                    if let message = JSONLine.decode(MasterToWorker.self, from: line) {
                                        continuation.yield(message)
                                    }
                                },
                                onClose: {
                                    continuation.yield(nil)
                                    continuation.finish()
                                }))
                    }
                }
                .takingOwnershipOfDescriptor(inputOutput: controlFD).get()
        } catch {
            logger.critical("worker: no control channel on fd 3 (workers are started by `ferry serve`)")
            return 2
        }
        func send(_ message: WorkerToMaster) {
            channel.writeAndFlush(ByteBuffer(string: JSONLine.encode(message)), promise: nil)
        }

        var heartbeat: Task<Void, Never>?
        var drainTask: Task<Void, Never>?
        var logRotation: (any DispatchSourceSignal)?
        defer { logRotation?.cancel() }
        // SIGTERM/SIGINT sent to the worker itself: ask the master (it drains this worker, after
        // starting a replacement unless it is stopping too) rather than dying with requests in flight.
        let stopSources = stopSignals.map { number in
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { send(.stopRequested(signal: number)) }
            source.resume()
            return source
        }
        defer { for source in stopSources { source.cancel() } }
        let drained = NIOLockedValueBox(false)
        var layout = WorkerLayout.fromEnvironment()
        var generation = 0
        var listenerCount = 0
        /// Adopts `slot`'s listeners and closes the other slots' (a standby holds every slot's).
        func serve(slot: Int) async throws {
            let listeners = layout.listenerFDs(slot: slot, count: listenerCount)
            for fd in layout.otherSlotsFDs(keeping: slot, count: listenerCount) { close(fd) }
            let shared = (ProcessInfo.processInfo.environment["FERRY_LISTENERS_SHARED"] ?? "")
                .split(separator: ",").map { $0 == "1" }
            try await dataPlane.serve(
                listenerFDs: listeners, shared: shared.count == listeners.count ? shared : listeners.map { _ in false },
                slot: slot, generation: generation)
        }
        for await message in stream {
            switch message {
            case nil:
                if drained.withLockedValue({ $0 }) {
                    logger.info("worker drained; exiting", metadata: ["pid": "\(getpid())"])
                    heartbeat?.cancel()
                    return 0
                }
                // The master is gone: stop now, nobody is left to report to.
                logger.notice("worker: master is gone; exiting")
                heartbeat?.cancel()
                await dataPlane.shutdown()
                return 0
            case .configure(
                let source, let fileName, let keys, let fileKeys, let configuredGeneration, let heartbeatMilliseconds)?:
                generation = configuredGeneration
                let configuration: FerryConfiguration
                do {
                    configuration = try ConfigurationLoader.load(
                        source: source, fileName: fileName, options: .init(checkFiles: false)
                    ).configuration
                    listenerCount = configuration.listeners.count
                    try await dataPlane.prepare(
                        configuration: configuration, ticketKeys: Array(Data(base64Encoded: keys) ?? Data()),
                        fileTicketKeys: fileKeys.mapValues(decodeTicketKeys))
                    if let slot = layout.slot { try await serve(slot: slot) }
                } catch {
                    logger.critical("worker cannot boot", metadata: ["error": "\(error)"])
                    send(.bootFailed(reason: "\(error)"))
                    try? await channel.close()
                    exit(Master.bootFailureExitCode)
                }
                send(.ready)
                logger.info(
                    layout.slot == nil ? "standby worker ready" : "worker serving",
                    metadata: ["generation": "\(generation)", "pid": "\(getpid())"])
                if let path = configuration.master.logFile {
                    // The master forwards SIGUSR1 (log rotation): reopen the same path.
                    let source = DispatchSource.makeSignalSource(signal: SIGUSR1, queue: .global())
                    source.setEventHandler { _ = LogFile.reopen(path) }
                    source.resume()
                    logRotation = source
                }
                heartbeat = Task {
                    while !Task.isCancelled {
                        try? await Task.sleep(for: .milliseconds(heartbeatMilliseconds))
                        send(.heartbeat(stats: await dataPlane.stats()))
                    }
                }
            case .adopt(let slot)?:
                guard layout.slot == nil, slot >= 0, slot < layout.slots else { continue }
                do {
                    try await serve(slot: slot)
                } catch {
                    logger.critical("standby worker cannot take its slot", metadata: ["error": "\(error)"])
                    send(.bootFailed(reason: "\(error)"))
                    try? await channel.close()
                    exit(Master.bootFailureExitCode)
                }
                layout.slot = slot
                send(.ready)
                logger.info(
                    "standby worker took over a slot",
                    metadata: ["generation": "\(generation)", "slot": "\(slot)", "pid": "\(getpid())"])
            case .accept?:
                dataPlane.startAccepting()
            case .backend(let name, let available)?:
                dataPlane.setBackendAvailable(name, available)
            case .reconfigure(let source, let fileName, let fileKeys, let version)?:
                do {
                    let configuration = try ConfigurationLoader.load(
                        source: source, fileName: fileName, options: .init(checkFiles: false)
                    ).configuration
                    // Test-only fault: a worker started with this variable refuses configurations
                    // that carry the marker (the master must replace it).
                    if ProcessInfo.processInfo.environment["FERRY_TEST_REFUSE_RECONFIGURE"] == "1",
                        source.contains("# ferry-test: refuse")
                    {
                        throw ConfigurationRefused(description: "refused on purpose (FERRY_TEST_REFUSE_RECONFIGURE)")
                    }
                    try await dataPlane.reconfigure(
                        configuration: configuration, fileTicketKeys: fileKeys.mapValues(decodeTicketKeys))
                    send(.reconfigured(version: version))
                    logger.info("configuration applied in place", metadata: ["version": "\(version)"])
                } catch {
                    logger.error(
                        "configuration not applied", metadata: ["version": "\(version)", "error": "\(error)"])
                    send(.reconfigureFailed(version: version, reason: "\(error)"))
                }
            case .ticketKeys(let listener, let keys)?:
                do {
                    try dataPlane.replaceTicketKeys(listener: listener, keys: decodeTicketKeys(keys))
                    logger.info("session ticket keys replaced", metadata: ["listener": "\(listener)"])
                } catch {
                    logger.error(
                        "session ticket keys not replaced", metadata: ["listener": "\(listener)", "error": "\(error)"])
                }
            case .health(let backend, let server, let healthy)?:
                dataPlane.setServerHealthy(backend, server: server, healthy: healthy)
            case .serverDraining(let backend, let server, let draining)?:
                dataPlane.setServerDraining(backend, server: server, draining: draining)
            case .closeServerTunnels(let backend, let server)?:
                dataPlane.closeServerTunnels(backend, server: server)
            case .drain(let gracefulMilliseconds)?:
                guard drainTask == nil else { continue }
                drainTask = Task {
                    // First stop accepting and say so: the next generation's worker for this slot
                    // shares these sockets and starts accepting only then.
                    await dataPlane.stopAccepting()
                    send(.stoppedAccepting)
                    await dataPlane.drain(gracefulTimeout: .milliseconds(gracefulMilliseconds))
                    send(.heartbeat(stats: await dataPlane.stats()))
                    send(.drained)
                    drained.withLockedValue { $0 = true }
                    continuation.yield(nil)
                }
            }
        }
        heartbeat?.cancel()
        return 0
    }
}

/// Which listener fds a worker holds: a slot's worker has one per `[[listen]]` from fd 4 on; a
/// standby (`FERRY_WORKER_STANDBY=1`) has every slot's, slot by slot, until it adopts one.
struct WorkerLayout {
    /// nil for a standby that has not adopted a slot yet.
    var slot: Int?
    /// How many slots' listeners the process holds (1 for a slot's worker).
    var slots: Int
    let standby: Bool

    static func fromEnvironment() -> WorkerLayout {
        let environment = ProcessInfo.processInfo.environment
        if environment["FERRY_WORKER_STANDBY"] == "1" {
            return WorkerLayout(
                slot: nil, slots: Int(environment["FERRY_WORKER_SLOTS"] ?? "") ?? 1, standby: true)
        }
        return WorkerLayout(slot: Int(environment["FERRY_WORKER_SLOT"] ?? "") ?? 0, slots: 1, standby: false)
    }

    func listenerFDs(slot: Int, count: Int) -> [CInt] {
        let first = WorkerRuntime.firstListenerFD + CInt(standby ? slot * count : 0)
        return Array(first..<(first + CInt(count)))
    }

    func otherSlotsFDs(keeping slot: Int, count: Int) -> [CInt] {
        guard standby else { return [] }
        return (0..<slots).filter { $0 != slot }.flatMap { listenerFDs(slot: $0, count: count) }
    }
}

/// The client side of the control socket, for `ferry status|reload|stop`.
public enum ControlClient {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Sends one request and waits for its answer (a reload answers only once it has finished).
    public static func send(
        _ command: String, arguments: [String]? = nil, socketPath: String, timeout: Duration = .seconds(120)
    ) throws
        -> ControlResponse
    {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(socketPath.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw Failure(description: "control socket path too long: \(socketPath)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard connected == 0 else {
            throw Failure(
                description:
                    "cannot reach the master at \(socketPath): \(String(cString: strerror(errno))) (is `ferry serve` running?)"
            )
        }
        var seconds = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &seconds, socklen_t(MemoryLayout<timeval>.size))
        let request = JSONLine.encode(ControlRequest(command: command, arguments: arguments))
        _ = request.withCString { Glibc.send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !received.contains(UInt8(ascii: "\n")) {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count <= 0 { break }
            received.append(contentsOf: buffer[0..<count])
        }
        let line = String(decoding: received, as: UTF8.self)
        guard let response = JSONLine.decode(ControlResponse.self, from: line) else {
            throw Failure(
                description: line.isEmpty
                    ? "the master closed the connection without answering" : "unexpected answer: \(line)")
        }
        return response
    }
}

/// Ticket keys as the master sends them (base64) → bytes; the data plane checks their length.
private func decodeTicketKeys(_ keys: [String]) -> [[UInt8]] {
    keys.map { Array(Data(base64Encoded: $0) ?? Data()) }
}

private struct ConfigurationRefused: Error, CustomStringConvertible {
    var description: String
}
