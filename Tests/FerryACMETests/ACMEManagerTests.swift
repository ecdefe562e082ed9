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
    func caIssuedLeaf(names: [String], serial: [UInt8] = [0x42, 0x01]) throws -> String {
        let caKey = P256.Signing.PrivateKey()
        let caName = try DistinguishedName { CommonName("Test CA") }
        let leafKey = P256.Signing.PrivateKey()
        let leaf = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(bytes: serial),
            publicKey: Certificate.PublicKey(leafKey.publicKey),
            notValidBefore: start, notValidAfter: start.addingTimeInterval(90 * 86400), issuer: caName,
            subject: try DistinguishedName { CommonName(names[0]) }, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                SubjectAlternativeNames(names.map { .dnsName($0) })
                AuthorityKeyIdentifier(keyIdentifier: [0xAA, 0xBB, 0xCC])
            },
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
        /// Orders attempted so far against the unreachable CA (each one a failure on record).
        var attempts: Int { ((try? ACMEStore(root: root + "/acme").record(id: "https")) ?? nil)?.failures ?? 0 }
    }

    func harness(
        certificate: String?,
        answer: @escaping @Sendable (ScriptedTransport.Request) throws -> ACMEHTTPResponse = { _ in
            throw ACMETransportError(description: "connection refused (test)")
        }
    ) throws -> Harness {
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
        let transport = ScriptedTransport(answer: answer)
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

    /// RFC 9773: a CA that offers renewal information decides the time (here: a window already
    /// open, long before two thirds of the lifetime), and the order says what it replaces.
    @Test func theCAsRenewalWindowDecidesAndTheOrderNamesTheCertificateItReplaces() async throws {
        let window = NIOLockedValueBox<(String, String)>(("2027-01-15T00:00:00Z", "2027-01-16T00:00:00Z"))
        let h = try harness(certificate: try caIssuedLeaf(names: ["a.test", "b.test"])) { request in
            switch (request.method, request.url) {
            case ("GET", "https://ca.test/dir"):
                return ScriptedTransport.json(
                    200,
                    #"{"newNonce":"https://ca.test/nonce","newAccount":"https://ca.test/account","newOrder":"https://ca.test/order","renewalInfo":"https://ca.test/ari/"}"#
                )
            case ("GET", "https://ca.test/ari/qrvM.QgE"):
                let (start, end) = window.withLockedValue { $0 }
                return ACMEHTTPResponse(
                    status: 200, headers: [("Retry-After", "21600")],
                    body: Data(#"{"suggestedWindow":{"start":"\#(start)","end":"\#(end)"}}"#.utf8))
            case ("HEAD", _): return ScriptedTransport.json(200, "", nonce: "n")
            case ("POST", "https://ca.test/account"):
                return ScriptedTransport.json(201, "{}", nonce: "n", location: "https://ca.test/acct/1")
            case ("POST", "https://ca.test/order"):
                return ScriptedTransport.json(
                    403, #"{"type":"urn:ietf:params:acme:error:unauthorized","detail":"test stops here"}"#, nonce: "n")
            default: return ScriptedTransport.json(404, "{}")
            }
        }
        defer { try? FileManager.default.removeItem(atPath: h.root) }
        // 2027-01-01: before the window; the two-thirds rule would say 2027-03-02 or so.
        let formatter = ISO8601DateFormatter()
        h.clock.withLockedValue { $0 = formatter.date(from: "2027-01-01T00:00:00Z")! }
        await h.check()
        let windowStart = formatter.date(from: "2027-01-15T00:00:00Z")!
        let expected = windowStart.addingTimeInterval(86400 * ACMESchedule.jitter(id: "https"))
        #expect(h.state?.nextAttempt == expected)
        #expect(!h.transport.received.contains { $0.url == "https://ca.test/order" })
        // Asked once, not on every check (Retry-After: 6 h).
        await h.check()
        #expect(h.transport.received.filter { $0.url.hasPrefix("https://ca.test/ari/") }.count == 1)
        // In the window: the order, naming the certificate it replaces.
        h.clock.withLockedValue { $0 = expected.addingTimeInterval(1) }
        await h.check()
        let order = try #require(h.transport.received.first { $0.url == "https://ca.test/order" })
        let jws = try #require(try JSONSerialization.jsonObject(with: order.body ?? Data()) as? [String: String])
        let payload = try #require(Base64URL.decode(jws["payload"] ?? ""))
        #expect(String(decoding: payload, as: UTF8.self).contains(#""replaces":"qrvM.QgE""#))
        #expect(h.state?.lastError?.contains("test stops here") == true)
    }

    /// A stop cancels the order in flight: not a failure, nothing recorded, no backoff.
    @Test func anOrderCancelledByAStopIsNotAFailure() async throws {
        let h = try harness(certificate: nil) { _ in throw CancellationError() }
        defer { try? FileManager.default.removeItem(atPath: h.root) }
        await h.check()
        #expect(try ACMEStore(root: h.root + "/acme").record(id: "https") == nil)
        #expect(h.state?.state == "ordering")
    }
}
