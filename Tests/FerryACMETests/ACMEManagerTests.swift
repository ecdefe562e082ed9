import Crypto
import Foundation
import Logging
import NIOConcurrencyHelpers
import SwiftASN1
import Testing
import X509

@testable import FerryACME

/// The manager driven by a manual clock against a CA that cannot be reached: when it orders,
/// what it records, how it backs off, what status says.
@Suite struct ACMEManagerTests {
    let start = Date(timeIntervalSince1970: 1_800_000_000)

    /// A leaf for `names` signed by a throwaway CA, valid 90 days from `start`, as PEM.
    func caIssuedLeaf(names: [String]) throws -> String {
        let caKey = P256.Signing.PrivateKey()
        let caName = try DistinguishedName { CommonName("Test CA") }
        let leafKey = P256.Signing.PrivateKey()
        let leaf = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: Certificate.PublicKey(leafKey.publicKey),
            notValidBefore: start, notValidAfter: start.addingTimeInterval(90 * 86400), issuer: caName,
            subject: try DistinguishedName { CommonName(names[0]) }, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions { SubjectAlternativeNames(names.map { .dnsName($0) }) },
            issuerPrivateKey: Certificate.PrivateKey(caKey))
        return try leaf.serializeAsPEM().pemString + "\n"
    }

    struct Harness {
        let root: String
        let clock: NIOLockedValueBox<Date>
        let transport: ScriptedTransport
        let manager: ACMEManager
        let spec: ACMECertificateSpec

        func check() async {
            var clients: [String: ACMEClient] = [:]
            var transports: [any ACMETransport] = []
            await manager.check(spec, clients: &clients, transports: &transports)
        }

        var state: ACMECertificateState? { manager.status.first }
        var attempts: Int { transport.received.count }
    }

    func harness(certificate: String?) throws -> Harness {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent(
            "ferry-acme-manager-\(UUID().uuidString.prefix(8))"
        ).path
        try FileManager.default.createDirectory(atPath: root + "/certs", withIntermediateDirectories: true)
        if let certificate {
            try certificate.write(toFile: root + "/certs/fullchain.pem", atomically: true, encoding: .utf8)
        }
        let spec = ACMECertificateSpec(
            id: "https", names: ["a.test", "b.test"], directoryURL: "https://ca.test/dir", contact: [],
            termsAgreed: true, challenges: [.tlsALPN01], trustRoots: nil,
            certificatePath: root + "/certs/fullchain.pem",
            keyPath: root + "/certs/key.pem", retryBase: .seconds(60))
        let clock = NIOLockedValueBox(start)
        let transport = ScriptedTransport { _ in throw ACMETransportError(description: "connection refused (test)") }
        let manager = ACMEManager(
            stateDirectory: root, challengeDirectory: root + "/challenges", specs: [spec], owner: nil,
            logger: Logger(label: "test"), now: { clock.withLockedValue { $0 } }, makeTransport: { _ in transport })
        return Harness(root: root, clock: clock, transport: transport, manager: manager, spec: spec)
    }

    @Test func aValidCertificateWaitsForItsRenewalTimeThenFailuresBackOff() async throws {
        let h = try harness(certificate: try caIssuedLeaf(names: ["a.test", "b.test"]))
        defer { try? FileManager.default.removeItem(atPath: h.root) }
        let renewal = ACMESchedule.renewalTime(
            notBefore: start, notAfter: start.addingTimeInterval(90 * 86400), jitter: ACMESchedule.jitter(id: "https"))

        h.clock.withLockedValue { $0 = start.addingTimeInterval(86400) }
        await h.check()
        #expect(h.attempts == 0)
        #expect(h.state?.state == "issued" && h.state?.nextAttempt == renewal)

        // Due: the order fails (the CA is unreachable); the certificate keeps serving.
        h.clock.withLockedValue { $0 = renewal.addingTimeInterval(1) }
        await h.check()
        #expect(h.attempts == 1)
        #expect(h.state?.state == "failing")
        #expect(h.state?.lastError?.contains("connection refused (test)") == true)
        #expect(h.state?.nextAttempt == renewal.addingTimeInterval(61))
        let record = try ACMEStore(root: h.root + "/acme").record(id: "https")
        // (state.json keeps whole seconds, ISO 8601)
        #expect(record?.failures == 1)
        #expect(abs(record?.lastAttempt?.timeIntervalSince(renewal.addingTimeInterval(1)) ?? 9) < 1)

        // Before the backoff ends: nothing; after: a second attempt, and the next wait doubles.
        h.clock.withLockedValue { $0 = renewal.addingTimeInterval(30) }
        await h.check()
        #expect(h.attempts == 1)
        h.clock.withLockedValue { $0 = renewal.addingTimeInterval(62) }
        await h.check()
        #expect(h.attempts == 2)
        #expect(h.state?.nextAttempt == renewal.addingTimeInterval(62 + 120))
    }

    @Test func withoutACertificateFromTheCAItOrdersAtOnceAndSaysItIsAwaiting() async throws {
        // A self-signed stand-in, or a CA certificate missing a configured name: order now.
        let standIn = try ACMECertificates.tlsALPNChallenge(name: "a.test", keyAuthorization: "x", now: start)
        for certificate in [nil, standIn, try caIssuedLeaf(names: ["a.test"])] {
            let h = try harness(certificate: certificate)
            defer { try? FileManager.default.removeItem(atPath: h.root) }
            await h.check()
            #expect(h.attempts == 1)
            let label = certificate == nil || certificate == standIn ? "awaiting" : "failing"
            #expect(h.state?.state == label)
        }
    }

    @Test func aCorruptRecordIsReportedAndNotOverwritten() async throws {
        let h = try harness(certificate: nil)
        defer { try? FileManager.default.removeItem(atPath: h.root) }
        let path = h.root + "/acme/certificates/https/state.json"
        try FileManager.default.createDirectory(
            atPath: h.root + "/acme/certificates/https", withIntermediateDirectories: true)
        try "[1, 2".write(toFile: path, atomically: true, encoding: .utf8)
        await h.check()
        #expect(h.attempts == 0)
        #expect(h.state?.lastError?.contains("state.json: not a certificate record") == true)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "[1, 2")
    }
}
