import Crypto
import Foundation

/// One order from start to certificate (RFC 8555 §7.4): new order, each authorization answered
/// with the first challenge type of `challenges` the server offers, finalize with a CSR for a
/// new P-256 key, download the chain. Challenge files are removed whatever happens.
public struct ACMEIssuance: Sendable {
    public var names: [String]
    public var challenges: [ACMEChallengeKind]
    public var files: ACMEChallengeFiles
    /// The whole order must finish within this (polling is bounded by it).
    public var deadline: Duration = .seconds(120)
    public var pollInterval: Duration = .milliseconds(250)
    /// RFC 9773 §5: the certificate this order renews (its ARI id), when the CA offers ARI.
    public var replaces: String?

    public init(names: [String], challenges: [ACMEChallengeKind], files: ACMEChallengeFiles) {
        self.names = names
        self.challenges = challenges
        self.files = files
    }

    public struct Issued: Sendable {
        public var chainPEM: String
        public var keyPEM: String
    }

    public func run(_ client: ACMEClient) async throws -> Issued {
        let clock = ContinuousClock()
        let end = clock.now.advanced(by: deadline)
        let (orderURL, created) = try await client.newOrder(names: names, replaces: replaces)
        var order = created
        var published: [(ACMEChallengeKind, String, String)] = []
        defer { for (kind, name, token) in published { files.withdraw(kind: kind, name: name, token: token) } }

        for authorizationURL in order.authorizations {
            var authorization = try await client.fetch(ACMEAuthorization.self, at: authorizationURL)
            if authorization.status == "valid" { continue }
            guard authorization.status == "pending" else {
                throw ACMEError.invalid(
                    "authorization for \(authorization.identifier.value) is \(authorization.status)")
            }
            let name = authorization.identifier.value
            guard
                let (kind, challenge) = challenges.lazy.compactMap({ kind in
                    authorization.challenges.first { $0.type == kind.rawValue }.map { (kind, $0) }
                }).first, let token = challenge.token
            else {
                let offered = authorization.challenges.map(\.type).joined(separator: ", ")
                throw ACMEError.invalid("\(name): the CA offers \(offered), none of the configured challenges")
            }
            try files.publish(
                kind: kind, name: name, token: token, keyAuthorization: client.key.keyAuthorization(token: token))
            published.append((kind, name, token))
            try await client.respond(toChallenge: challenge.url)
            while authorization.status == "pending" || authorization.status == "processing" {
                try await pause(until: end, clock: clock, waitingFor: "the validation of \(name)")
                authorization = try await client.fetch(ACMEAuthorization.self, at: authorizationURL)
            }
            guard authorization.status == "valid" else {
                let failed = authorization.challenges.first { $0.type == kind.rawValue }
                let reason = failed?.error?.description ?? "authorization \(authorization.status)"
                throw ACMEError.invalid("\(kind.rawValue) for \(name) failed: \(reason)")
            }
        }

        while order.status == "pending" {
            try await pause(until: end, clock: clock, waitingFor: "the order to become ready")
            order = try await client.fetch(ACMEOrder.self, at: orderURL)
        }
        // Only an order this run finalizes has a certificate for a key Ferry holds.
        guard order.status == "ready" else {
            throw ACMEError.invalid("order is \(order.status)\(order.error.map { ": \($0)" } ?? "")")
        }
        let key = P256.Signing.PrivateKey()
        order = try await client.finalize(order.finalize, csrDER: try ACMECertificates.csr(names: names, key: key))
        while order.status == "processing" {
            try await pause(until: end, clock: clock, waitingFor: "the certificate")
            order = try await client.fetch(ACMEOrder.self, at: orderURL)
        }
        guard order.status == "valid", let certificateURL = order.certificate else {
            throw ACMEError.invalid("order is \(order.status)\(order.error.map { ": \($0)" } ?? "")")
        }
        let chain = try await client.downloadCertificate(certificateURL)
        return Issued(chainPEM: chain, keyPEM: key.pemRepresentation + "\n")
    }

    private func pause(until end: ContinuousClock.Instant, clock: ContinuousClock, waitingFor what: String) async throws
    {
        guard clock.now < end else { throw ACMEError.timedOut("gave up waiting for \(what) after \(deadline)") }
        try await Task.sleep(for: pollInterval)
    }
}
