import Foundation
import Testing

@testable import FerryACME

/// The schedule with a manual clock: dates in, dates out.
@Suite struct ACMEScheduleTests {
    let start = Date(timeIntervalSince1970: 1_800_000_000)
    let day = 86400.0

    @Test func renewalIsAtTwoThirdsOfTheLifetimeMovedEarlierByTheJitter() {
        let end = start.addingTimeInterval(90 * day)
        #expect(
            ACMESchedule.renewalTime(notBefore: start, notAfter: end, jitter: 0) == start.addingTimeInterval(60 * day))
        // At most 5 % of the lifetime earlier (4.5 days of 90).
        #expect(
            ACMESchedule.renewalTime(notBefore: start, notAfter: end, jitter: 1) == start.addingTimeInterval(55.5 * day)
        )
        #expect(
            ACMESchedule.renewalTime(notBefore: start, notAfter: end, jitter: 7) == start.addingTimeInterval(55.5 * day)
        )
    }

    @Test func theJitterIsStablePerCertificateAndSpreadsAcrossThem() {
        #expect(ACMESchedule.jitter(id: "https") == ACMESchedule.jitter(id: "https"))
        let jitters = Set((0..<50).map { ACMESchedule.jitter(id: "listener-\($0)") })
        #expect(jitters.count > 30 && jitters.allSatisfy { (0...1).contains($0) })
    }

    @Test func failuresBackOffByDoublingUpToTwelveHours() {
        let base = Duration.seconds(60)
        #expect(ACMESchedule.retryDelay(failures: 1, base: base) == 60)
        #expect(ACMESchedule.retryDelay(failures: 2, base: base) == 120)
        #expect(ACMESchedule.retryDelay(failures: 5, base: base) == 960)
        #expect(ACMESchedule.retryDelay(failures: 30, base: base) == 12 * 3600)
        #expect(ACMESchedule.retryDelay(failures: 1, base: .milliseconds(1500)) == 1.5)
    }

    @Test func nextAttempt() {
        let issued = ACMESchedule.Current.issued(notBefore: start, notAfter: start.addingTimeInterval(90 * day))
        let renewal = ACMESchedule.renewalTime(
            notBefore: start, notAfter: start.addingTimeInterval(90 * day), jitter: ACMESchedule.jitter(id: "https"))
        // Nothing from a CA yet: now.
        #expect(
            ACMESchedule.nextAttempt(current: .none, record: nil, id: "https", retryBase: .seconds(60)) == .distantPast)
        // Issued and healthy: the renewal time.
        var record = ACMERecord(names: ["a.test"], directory: "https://ca.test/dir")
        #expect(
            ACMESchedule.nextAttempt(current: issued, record: record, id: "https", retryBase: .seconds(60)) == renewal)
        // Failing before the first certificate: after the backoff from the last attempt.
        record.failures = 3
        record.lastAttempt = start
        #expect(
            ACMESchedule.nextAttempt(current: .none, record: record, id: "https", retryBase: .seconds(60))
                == start.addingTimeInterval(240))
        // Failing renewals: the later of the renewal time and the backoff.
        record.lastAttempt = renewal.addingTimeInterval(10)
        #expect(
            ACMESchedule.nextAttempt(current: issued, record: record, id: "https", retryBase: .seconds(60))
                == renewal.addingTimeInterval(250))
    }

    @Test func aRenewalWindowReplacesTheTwoThirdsRule() {
        let issued = ACMESchedule.Current.issued(notBefore: start, notAfter: start.addingTimeInterval(90 * day))
        let window = ACMERenewalInfo.Window(
            start: start.addingTimeInterval(10 * day), end: start.addingTimeInterval(11 * day))
        let due = ACMESchedule.nextAttempt(
            current: issued, record: nil, id: "https", retryBase: .seconds(60), window: window)
        #expect(due == window.start.addingTimeInterval(day * ACMESchedule.jitter(id: "https")))
        // Without a certificate from the CA the window does not matter: now.
        #expect(
            ACMESchedule.nextAttempt(current: .none, record: nil, id: "https", retryBase: .seconds(60), window: window)
                == .distantPast)
    }
}
