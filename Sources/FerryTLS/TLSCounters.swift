import NIOConcurrencyHelpers

/// TLS failures of one worker, by reason (`handshake_failed`, `handshake_timeout`, …).
///
/// Touched only when something goes wrong, so a lock costs nothing on the hot path; the worker
/// reads a snapshot for its heartbeat.
public final class TLSCounters: Sendable {
    private let counts = NIOLockedValueBox<[String: Int]>([:])
    private let handshakes = NIOLockedValueBox<(full: Int, resumed: Int)>((0, 0))

    /// The reason recorded for a connect-and-close without a byte (port probes, TCP health checks):
    /// kept in the counts, but not a TLS error.
    public static let closedBeforeClientHello = "closed_before_client_hello"

    public init() {}

    public func record(failure reason: String) {
        counts.withLockedValue { $0[reason, default: 0] += 1 }
    }

    func recordHandshake(resumed: Bool) {
        handshakes.withLockedValue { resumed ? ($0.resumed += 1) : ($0.full += 1) }
    }

    public var failures: [String: Int] { counts.withLockedValue { $0 } }
    public var completedHandshakes: (full: Int, resumed: Int) { handshakes.withLockedValue { $0 } }
}
