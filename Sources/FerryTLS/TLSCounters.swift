import NIOConcurrencyHelpers

/// TLS failures of one worker, by reason (`handshake_failed`, `handshake_timeout`, …).
///
/// Touched only when something goes wrong, so a lock costs nothing on the hot path; the worker
/// reads a snapshot for its heartbeat.
public final class TLSCounters: Sendable {
    private let counts = NIOLockedValueBox<[String: Int]>([:])
    private let handshakes = NIOLockedValueBox<(full: Int, resumed: Int)>((0, 0))
    private let released = NIOLockedValueBox<Int>(0)

    /// What a closed connection is counted as having given back to the heap: the `SSL` object and
    /// its cipher state (12.4 KB measured with heaptrack) and the channels' and handlers' share
    /// (~9 KB), rounded. An estimate for deciding when to trim the heap, not an accounting.
    public static let closedConnectionFootprint = 20 * 1024

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

    /// Heap given back by this worker's connections (BIO buffers trimmed after a burst, connections
    /// closed); once per connection or burst, so the lock is off the hot path.
    func recordReleased(bytes: Int) {
        released.withLockedValue { $0 += bytes }
    }

    /// Heap released since the last call (the worker's `HeapTrimmer` takes it once a second).
    public func takeReleasedBytes() -> Int {
        released.withLockedValue { value in
            defer { value = 0 }
            return value
        }
    }

    public var failures: [String: Int] { counts.withLockedValue { $0 } }
    public var completedHandshakes: (full: Int, resumed: Int) { handshakes.withLockedValue { $0 } }
}
