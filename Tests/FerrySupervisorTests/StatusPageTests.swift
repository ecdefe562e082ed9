import FerryConfig
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import Testing

@testable import FerrySupervisor

@Suite struct StatusPageTests {
    static let digest = "1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0"  // "s3cret"

    static func head(authorization: String? = nil) -> HTTPRequestHead {
        var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/status.json")
        if let authorization { head.headers.add(name: "Authorization", value: authorization) }
        return head
    }

    static func basic(_ text: String) -> String { "Basic " + Data(text.utf8).base64EncodedString() }

    @Test func loopbackIsLetInOthersNeedTheUserAndPassword() throws {
        let open = AdminSettings(listen: .inet(host: "0.0.0.0", port: 9090))
        let guarded = AdminSettings(
            listen: .inet(host: "0.0.0.0", port: 9090), user: "ops", passwordSHA256: Self.digest)
        let loopback = try SocketAddress(ipAddress: "127.0.0.1", port: 5000)
        let loopback6 = try SocketAddress(ipAddress: "::1", port: 5000)
        let remote = try SocketAddress(ipAddress: "10.1.2.3", port: 5000)
        #expect(AdminHandler.authorize(Self.head(), peer: loopback, admin: open) == nil)
        #expect(AdminHandler.authorize(Self.head(), peer: loopback6, admin: guarded) == nil)
        #expect(AdminHandler.authorize(Self.head(), peer: remote, admin: open)?.status == .forbidden)
        #expect(
            AdminHandler.authorize(Self.head(authorization: Self.basic("ops:s3cret")), peer: remote, admin: open)?
                .status == .forbidden, "credentials mean nothing when none are configured")
        #expect(AdminHandler.authorize(Self.head(), peer: remote, admin: guarded)?.status == .unauthorized)
        for wrong in ["ops:wrong", "other:s3cret", "ops", "ops:s3cret2", ":s3cret"] {
            #expect(
                AdminHandler.authorize(Self.head(authorization: Self.basic(wrong)), peer: remote, admin: guarded)?
                    .status == .unauthorized, "\(wrong)")
        }
        #expect(
            AdminHandler.authorize(Self.head(authorization: "Bearer x"), peer: remote, admin: guarded)?.status
                == .unauthorized)
        #expect(
            AdminHandler.authorize(Self.head(authorization: Self.basic("ops:s3cret")), peer: remote, admin: guarded)
                == nil)
    }

    @Test func ratesComeFromTwoHeartbeatsAndSumByRoutePath() {
        func stats(_ app: Int, _ app5xx: Int, _ root: Int) -> WorkerStats {
            WorkerStats(
                connectionsOpen: 3, activeTunnels: 1,
                routes: [
                    RouteStats(
                        path: "/app/", backend: "app", requests: app, responses: ["2xx": app - app5xx, "5xx": app5xx]),
                    RouteStats(path: "/", backend: "files", requests: root),
                ])
        }
        let first = WorkerRates(previous: stats(100, 0, 10), current: stats(300, 20, 10), seconds: 2)
        #expect(first.routes.map(\.requests) == [100, 0])
        #expect(first.routes.map(\.errors) == [10, 0])
        // A restarted worker's counters start again: never a negative rate.
        #expect(
            WorkerRates(previous: stats(300, 20, 10), current: stats(5, 0, 1), seconds: 1).routes.allSatisfy {
                $0.requests >= 0 && $0.errors >= 0
            })
        let second = WorkerRates(previous: stats(0, 0, 0), current: stats(50, 0, 4), seconds: 1)
        let sample = StatusHistory.sample(at: 42, workers: [(stats(300, 20, 10), first), (stats(50, 0, 4), second)])
        #expect(sample.requests == 154 && sample.errors == 10)
        #expect(sample.connections == 6 && sample.tunnels == 2)
        #expect(sample.routes.map(\.path) == ["/app/", "/"])
        #expect(sample.routes.map(\.requests) == [150, 4])
    }

    @Test func theHistoryKeepsTenMinutesAndAnswersSince() {
        var history = StatusHistory()
        for second in 0..<700 {
            history.append(
                HistorySample(t: Double(second), requests: 1, errors: 0, connections: 0, tunnels: 0, routes: []))
        }
        #expect(history.samples.count == 600)
        #expect(history.samples.first?.t == 100)
        #expect(history.document(since: 0).samples.count == 600)
        #expect(history.document(since: 697).samples.map(\.t) == [698, 699])
        #expect(history.document(since: 699).samples.isEmpty)
    }

    @Test func theMastersLogLinesAtInfoAndAboveAreKeptForThePage() {
        let events = NIOLockedValueBox<[StatusEvent]>([])
        var logger = Logger(label: "test") { _ in
            EventRecordingLogHandler(inner: SilentLogHandler(), events: events)
        }
        logger.logLevel = .debug
        logger.debug("not kept")
        logger.info("worker ready", metadata: ["pid": "7", "generation": "2"])
        logger.error("backend exited")
        for index in 0..<300 { logger.notice("line \(index)") }
        let kept = events.withLockedValue { $0 }
        #expect(kept.count == EventRecordingLogHandler.capacity)
        #expect(kept.last?.message == "line 299" && kept.last?.level == "notice")
        logger.info("worker ready", metadata: ["pid": "7", "generation": "2"])
        #expect(events.withLockedValue { $0 }.last?.message == "worker ready (generation=2 pid=7)")
    }
}

/// A handler that prints nothing but keeps the level it is given (the no-op one stays at critical).
struct SilentLogHandler: LogHandler {
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {}
}
