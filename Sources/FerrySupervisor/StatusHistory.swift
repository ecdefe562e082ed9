import FerryConfig
import Foundation
import Logging
import NIOConcurrencyHelpers

/// One second of traffic, as the status page and `ferry top` draw it: rates over every worker
/// serving (draining generations included), from the workers' own counters between heartbeats.
public struct HistorySample: Codable, Sendable, Equatable {
    public struct Route: Codable, Sendable, Equatable {
        public var path: String
        public var backend: String?
        /// Per second.
        public var requests: Double
        /// 5xx responses per second.
        public var errors: Double
    }

    /// Unix seconds.
    public var t: Double
    public var requests: Double
    public var errors: Double
    /// Client connections and WebSockets open at that moment, over every worker.
    public var connections: Int
    public var tunnels: Int
    public var routes: [Route]
}

/// `/history.json`: the samples after `since`.
public struct HistoryDocument: Codable, Sendable {
    public var intervalSeconds: Double
    public var capacity: Int
    public var samples: [HistorySample]
}

/// A line of the master's log worth showing on the status page (reloads, restarts, health).
public struct StatusEvent: Codable, Sendable, Equatable {
    public var at: Double
    public var level: String
    public var message: String
}

/// A certificate a listener serves, for the status page, `ferry status` and metrics.
public struct CertificateStatus: Codable, Sendable, Equatable {
    public var listener: String
    public var path: String
    public var names: [String]
    public var issuer: String
    public var notAfter: Double
    public var daysLeft: Double
    /// "file", "self-signed", "acme", or "self-signed (awaiting ACME)".
    public var source: String
    /// For an ACME certificate: the state of its orders.
    public var acme: ACMEStatus?
}

/// An ACME certificate's orders, as `ferry status` shows them.
public struct ACMEStatus: Codable, Sendable, Equatable {
    /// `issued`, `awaiting` (the temporary self-signed certificate serves), `ordering`, `failing`
    /// (renewals fail; the certificate in use keeps serving until it expires).
    public var state: String
    public var directory: String
    public var lastAttempt: Double?
    public var lastError: String?
    public var nextAttempt: Double?
    /// Seconds the last issuance took, order to installed files.
    public var lastIssuanceSeconds: Double?
}

/// What the master remembers for the status page: one sample a second for ten minutes, and the
/// last 200 events. Bounded: 600 samples × (64 bytes + ~80 per route) — about 1 MiB with 20
/// routes — plus 200 short lines.
struct StatusHistory {
    static let capacity = 600
    static let interval = 1.0
    private(set) var samples: [HistorySample] = []

    mutating func append(_ sample: HistorySample) {
        samples.append(sample)
        if samples.count > Self.capacity { samples.removeFirst(samples.count - Self.capacity) }
    }

    func document(since: Double) -> HistoryDocument {
        HistoryDocument(
            intervalSeconds: Self.interval, capacity: Self.capacity, samples: samples.filter { $0.t > since })
    }

    /// The sample of this moment: each worker's rates (from its last two heartbeats) summed by
    /// route path, and its open connections and tunnels.
    static func sample(at time: Double, workers: [(stats: WorkerStats, rates: WorkerRates?)]) -> HistorySample {
        var routes: [String: HistorySample.Route] = [:]
        var order: [String] = []
        var sample = HistorySample(t: time, requests: 0, errors: 0, connections: 0, tunnels: 0, routes: [])
        for (stats, rates) in workers {
            sample.connections += stats.connectionsOpen
            sample.tunnels += stats.activeTunnels
            for route in rates?.routes ?? [] {
                if routes[route.path] == nil {
                    order.append(route.path)
                    routes[route.path] = HistorySample.Route(
                        path: route.path, backend: route.backend, requests: 0, errors: 0)
                }
                routes[route.path]?.requests += route.requests
                routes[route.path]?.errors += route.errors
                sample.requests += route.requests
                sample.errors += route.errors
            }
        }
        sample.routes = order.compactMap { routes[$0] }
        return sample
    }
}

/// A worker's request and 5xx rates per route between two of its heartbeats.
struct WorkerRates {
    var routes: [HistorySample.Route]

    init(previous: WorkerStats, current: WorkerStats, seconds: Double) {
        let span = max(seconds, 0.001)
        routes = current.routes.map { route in
            let before = previous.routes.first { $0.path == route.path }
            let requests = max(0, route.requests - (before?.requests ?? 0))
            let errors = max(0, (route.responses["5xx"] ?? 0) - (before?.responses["5xx"] ?? 0))
            return HistorySample.Route(
                path: route.path, backend: route.backend, requests: Double(requests) / span,
                errors: Double(errors) / span)
        }
    }
}

/// The master's log handler: every line goes to the real handler, and lines at `info` and above
/// are also kept (the last 200) for the status page.
struct EventRecordingLogHandler: LogHandler {
    static let capacity = 200

    var inner: any LogHandler
    let events: NIOLockedValueBox<[StatusEvent]>

    var logLevel: Logger.Level {
        get { inner.logLevel }
        set { inner.logLevel = newValue }
    }

    var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue }
    }

    var metadataProvider: Logger.MetadataProvider? {
        get { inner.metadataProvider }
        set { inner.metadataProvider = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) {
        inner.log(event: event)
        guard event.level >= .info else { return }
        let details = (event.metadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        let text = details.isEmpty ? "\(event.message)" : "\(event.message) (\(details.joined(separator: " ")))"
        let entry = StatusEvent(at: Date().timeIntervalSince1970, level: event.level.rawValue, message: text)
        events.withLockedValue { events in
            events.append(entry)
            if events.count > Self.capacity { events.removeFirst(events.count - Self.capacity) }
        }
    }
}
