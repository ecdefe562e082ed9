import ArgumentParser
import FerryBackends
import Foundation
import Logging
import NIOCore
import NIOPosix

/// `ferry backend websocket|static`: the built-in backends as processes of their own (the master
/// spawns them with `BackendConfiguration.spawnArguments`; they also run standalone).
struct Backend: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a built-in backend: websocket | static.",
        subcommands: [WebSocketBackend.self, StaticBackend.self])
}

struct WebSocketBackend: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "websocket", abstract: "The TTS WebSocket service.")
    @Option(help: "host:port, [v6]:port or unix:/path") var address: String
    @Option(name: .customLong("results-dir")) var resultsDirectory: String
    @Option(name: .customLong("results-max-bytes")) var resultsMaxBytes: Int = 256 << 20
    @Option(name: .customLong("max-message-bytes")) var maxMessageBytes: Int = 64 << 10
    @Option(name: .customLong("messages-per-second")) var messagesPerSecond: Int = 20
    @Option(name: .customLong("idle-timeout-ms")) var idleTimeoutMilliseconds: Int64 = 300_000

    func run() throws {
        let logger = Process.makeLogger(label: "ferry.backend.websocket")
        let address = try BackendListenAddress(parsing: self.address)
        let service = try WebSocketTTSService(
            options: .init(
                resultsDirectory: resultsDirectory, resultsMaxBytes: resultsMaxBytes, maxMessageBytes: maxMessageBytes,
                messagesPerSecond: messagesPerSecond, idleTimeout: .milliseconds(idleTimeoutMilliseconds)),
            logger: logger)
        // The service writes results after dropping privileges: hand it its directories first.
        Privileges.giveOwnership(
            of: [resultsDirectory, "\(resultsDirectory)/wav", "\(resultsDirectory)/mp3"],
            to: ProcessInfo.processInfo.environment["FERRY_DROP_USER"])
        try runService(
            logger: logger, address: address, start: { try await service.start(address: address, group: $0) }
        ) {
            await service.drain()
        }
    }
}

struct StaticBackend: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "static", abstract: "The static file service.")
    @Option(help: "host:port, [v6]:port or unix:/path") var address: String
    @Option var root: String
    @Option(name: .customLong("cache-control")) var cacheControl: String = "public, max-age=3600"
    @Option var index: String?
    @Flag(name: .customLong("demo-page")) var demoPage = false

    func run() throws {
        let logger = Process.makeLogger(label: "ferry.backend.static")
        let address = try BackendListenAddress(parsing: self.address)
        let service = try StaticFileService(
            options: .init(root: root, cacheControl: cacheControl, index: index, demoPage: demoPage), logger: logger)
        try runService(
            logger: logger, address: address, start: { try await service.start(address: address, group: $0) }
        ) {}
    }
}

/// Binds, serves until SIGTERM/SIGINT (then drains) or until the parent dies.
func runService(
    logger: Logger, address: BackendListenAddress,
    start: @escaping @Sendable (any EventLoopGroup) async throws -> any Channel,
    drain: @escaping @Sendable () async -> Void
) throws {
    ParentWatch.exitWhenParentDies()
    if let name = ProcessInfo.processInfo.environment["FERRY_BACKEND_NAME"] {
        ProcessTitle.set("ferry: backend \(name)")
    }
    let signals = SignalWaiter([SIGTERM, SIGINT])
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let result = BlockingTask.run {
        let channel: any Channel
        do {
            channel = try await start(group)
        } catch {
            logger.critical("cannot listen", metadata: ["address": "\(address)", "error": "\(error)"])
            return Int32(1)
        }
        logger.info("listening", metadata: ["address": "\(address)"])
        let environment = ProcessInfo.processInfo.environment
        do {
            try Privileges.drop(user: environment["FERRY_DROP_USER"], group: environment["FERRY_DROP_GROUP"])
        } catch {
            logger.critical("\(error)")
            return Int32(1)
        }
        let signal = await signals.next()
        logger.info("stopping", metadata: ["signal": "\(signal)"])
        try? await channel.close()
        await drain()
        return Int32(0)
    }
    try? group.syncShutdownGracefully()
    if result != 0 { throw ExitCode(result) }
}
