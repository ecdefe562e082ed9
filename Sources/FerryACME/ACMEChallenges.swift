public import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The challenge types Ferry answers.
public enum ACMEChallengeKind: String, Sendable, Equatable, CaseIterable, Codable {
    /// RFC 8737: a TLS handshake on the TLS port with ALPN `acme-tls/1`.
    case tlsALPN01 = "tls-alpn-01"
    /// RFC 8555 §8.3: `GET /.well-known/acme-challenge/<token>` on port 80.
    case http01 = "http-01"
}

/// Where the workers find the answers to challenges: files the master writes before it asks the
/// CA to validate and removes afterwards. The workers read them when a validation arrives (rare
/// enough that a file read per request is no cost), so nothing has to be sent to them.
///
///     <directory>/http-01/<token>            the key authorization (served as text/plain)
///     <directory>/tls-alpn-01/<name>.pem     the challenge certificate and its key
public struct ACMEChallengeFiles: Sendable {
    public let directory: String
    /// The workers' user and group, when they are not the master's.
    let owner: (uid_t, gid_t)?

    public init(directory: String, owner: (uid_t, gid_t)?) {
        self.directory = directory
        self.owner = owner
    }

    /// Tokens and names are checked before they become file names: a token is base64url (RFC
    /// 8555 §8.3), a name is a DNS name in lower case.
    public static func isSafeToken(_ token: some StringProtocol) -> Bool {
        !token.isEmpty && token.count <= 256
            && token.utf8.allSatisfy {
                ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) || $0 == 0x2D || $0 == 0x5F
            }
    }

    public static func isSafeName(_ name: some StringProtocol) -> Bool {
        !name.isEmpty && name.count <= 253 && !name.hasPrefix(".")
            && name.utf8.allSatisfy {
                ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x2D || $0 == 0x2E
            }
    }

    public func path(kind: ACMEChallengeKind, name: String, token: String) -> String {
        switch kind {
        case .http01: "\(directory)/http-01/\(token)"
        case .tlsALPN01: "\(directory)/tls-alpn-01/\(name).pem"
        }
    }

    public func publish(kind: ACMEChallengeKind, name: String, token: String, keyAuthorization: String) throws {
        guard Self.isSafeToken(token), Self.isSafeName(name) else {
            throw ACMEError.protocolViolation("unusable challenge token or name: \(token) \(name)")
        }
        let content: String
        switch kind {
        case .http01: content = keyAuthorization
        case .tlsALPN01: content = try ACMECertificates.tlsALPNChallenge(name: name, keyAuthorization: keyAuthorization)
        }
        // Readable by the workers: a key authorization is public by design, and the challenge
        // certificate's key is thrown away after the validation.
        try ACMEStore(root: directory).write(content, to: path(kind: kind, name: name, token: token), owner: owner)
    }

    public func withdraw(kind: ACMEChallengeKind, name: String, token: String) {
        unlink(path(kind: kind, name: name, token: token))
    }
}
