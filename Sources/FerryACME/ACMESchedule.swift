import Crypto
public import Foundation

/// When to order: pure functions of the record, the certificate on disk and the time, so they
/// are tested with a manual clock.
public enum ACMESchedule {
    /// Renewal at two thirds of the lifetime, moved earlier by up to 5 % of the lifetime by a
    /// jitter fixed per certificate (`jitter` in 0...1), so a fleet's certificates issued together
    /// do not all renew in the same second, and a restart does not move the date.
    public static func renewalTime(notBefore: Date, notAfter: Date, jitter: Double) -> Date {
        let lifetime = notAfter.timeIntervalSince(notBefore)
        return notBefore.addingTimeInterval(lifetime * 2 / 3 - lifetime * 0.05 * min(max(jitter, 0), 1))
    }

    /// A stable jitter in 0...1 from the certificate's id.
    public static func jitter(id: String) -> Double {
        Double(Array(SHA256.hash(data: Data(id.utf8)))[0]) / 255
    }

    /// After `failures` failed attempts in a row: `base`, doubling, at most 12 hours.
    public static func retryDelay(failures: Int, base: Duration) -> TimeInterval {
        let seconds = Double(base.components.seconds) + Double(base.components.attoseconds) / 1e18
        return min(seconds * pow(2, Double(max(failures - 1, 0))), 12 * 3600)
    }

    /// What is on disk at the configured paths.
    public enum Current: Sendable, Equatable {
        /// Nothing usable, or a temporary self-signed certificate, or one that does not cover
        /// every configured name: order now.
        case none
        /// A certificate from the CA for every name.
        case issued(notBefore: Date, notAfter: Date)
    }

    /// The next time to start an order. `window`: the CA's suggested renewal window (RFC 9773),
    /// which replaces the two-thirds rule; the time in it is fixed by the jitter.
    public static func nextAttempt(
        current: Current, record: ACMERecord?, id: String, retryBase: Duration,
        window: ACMERenewalInfo.Window? = nil
    ) -> Date {
        var due: Date
        switch current {
        case .none: due = .distantPast
        case .issued(let notBefore, let notAfter):
            if let window, window.end > window.start {
                due = window.start.addingTimeInterval(window.end.timeIntervalSince(window.start) * jitter(id: id))
            } else {
                due = renewalTime(notBefore: notBefore, notAfter: notAfter, jitter: jitter(id: id))
            }
        }
        if let record, record.failures > 0, let last = record.lastAttempt {
            due = max(due, last.addingTimeInterval(retryDelay(failures: record.failures, base: retryBase)))
        }
        return due
    }
}
